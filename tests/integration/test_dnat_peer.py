# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's netfilter peer (roles/benchmark/files/dnat_peer.sh) in a namespace of its own (q13-dn-PID):
up adds the DNAT + MASQUERADE rules and the sysctls, a second up changes nothing, down removes exactly what
up added and restores the sysctls, also after a partial up; rules of others stay."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import time

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'roles', 'benchmark', 'files', 'dnat_peer.sh')


def sh(*argv, **kw):
    return subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=kw.get('check', True))


@pytest.fixture
def netns_pid(require_root):
    name = 'q13-dn-%d' % os.getpid()
    sh('ip', 'netns', 'add', name)
    proc = None
    try:
        sh('ip', 'netns', 'exec', name, 'ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'q13peer')
        proc = subprocess.Popen(['ip', 'netns', 'exec', name, 'sleep', '120'])
        # wait until the sleep runs inside the namespace
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.path.exists('/proc/%d/ns/net' % proc.pid) and \
                    os.readlink('/proc/%d/ns/net' % proc.pid) != os.readlink('/proc/self/ns/net'):
                break
            time.sleep(0.05)
        yield name, proc.pid
    finally:
        if proc:
            proc.kill()
            proc.wait()
        sh('ip', 'netns', 'del', name, check=False)


def nat_rules(name):
    return sh('ip', 'netns', 'exec', name, 'iptables', '-t', 'nat', '-S').stdout


def sysctls(name):
    keys = ['net.ipv4.ip_forward', 'net.ipv4.conf.all.send_redirects', 'net.ipv4.conf.eth0.send_redirects']
    return [sh('ip', 'netns', 'exec', name, 'sysctl', '-n', k).stdout.strip() for k in keys]


def peer(action, pid, state, *backends, **kw):
    return sh('sh', SCRIPT, action, str(pid), state, '172.30.0.212', '80', '30000-65535', *backends, **kw)


def test_up_twice_then_down_leaves_the_namespace_as_it_was(netns_pid, tmp_path):
    name, pid = netns_pid
    state = str(tmp_path / 'saved')
    sh('ip', 'netns', 'exec', name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0')
    sh('ip', 'netns', 'exec', name, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth0', '-j', 'MASQUERADE')
    before_rules, before_sysctls = nat_rules(name), sysctls(name)

    peer('up', pid, state, '172.30.0.11:80', '172.30.0.12:80', '172.30.0.13:80')
    once = nat_rules(name)
    assert '-A PREROUTING -d 172.30.0.212/32 -p tcp -m tcp --dport 80 -j EBPFNET-BENCH-DNAT' in once
    assert '--ctorigdst 172.30.0.212 -j MASQUERADE --to-ports 30000-65535' in once
    dnat = [line for line in once.splitlines() if line.startswith('-A EBPFNET-BENCH-DNAT')]
    assert len(dnat) == 3, once
    # equal shares: 1/3 of all, then 1/2 of the rest, then the rest
    assert '--probability 0.33333' in dnat[0] and '--probability 0.50000' in dnat[1], dnat
    assert 'statistic' not in dnat[2] and dnat[2].endswith('--to-destination 172.30.0.13:80'), dnat
    assert sysctls(name) == ['1', '0', '0']

    peer('up', pid, state, '172.30.0.11:80', '172.30.0.12:80', '172.30.0.13:80')
    assert nat_rules(name) == once

    peer('down', pid, state)
    assert nat_rules(name) == before_rules
    assert sysctls(name) == before_sysctls
    assert not os.path.exists(state)
    peer('down', pid, state)  # again: nothing left to do, no error
    assert nat_rules(name) == before_rules


def test_down_after_a_partial_up(netns_pid, tmp_path):
    name, pid = netns_pid
    state = str(tmp_path / 'saved')
    before_rules, before_sysctls = nat_rules(name), sysctls(name)
    assert peer('up', pid, state, check=False).returncode == 2  # no backends: refused before any change
    assert nat_rules(name) == before_rules and sysctls(name) == before_sysctls
    sh('ip', 'netns', 'exec', name, 'iptables', '-t', 'nat', '-N', 'EBPFNET-BENCH-DNAT')
    peer('down', pid, state)
    assert nat_rules(name) == before_rules
