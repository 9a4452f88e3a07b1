# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""sockmap_redirect must never deliver bytes across network namespaces, lose them or reorder them.

Everything here is attached to a cgroup of its own (/sys/fs/cgroup/unified/sk-i11-test) and uses
namespaces named sk-*, so it needs no shared lock. The scenario processes (sock_netns.py) run in
that cgroup.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import HERE, read_sources, run_module

SOURCES = ('sockops.bpf.c', 'sockredir.bpf.c', 'sockmap.h')
NAME = 'sk_ns'
CGROUP = '/sys/fs/cgroup/unified/sk-i11-test'
PORT = 17100
LOOPBACK_NS = ('sk-a', 'sk-b')
# two namespace pairs with the same addresses on their own veths: A1 (10.199.0.1) <-> A2 (10.199.0.2),
# B1 (10.199.0.1) <-> B2 (10.199.0.2)
VETH_PAIRS = (('sk-a1', 'sk-a2', 'skva1', 'skva2'), ('sk-b1', 'sk-b2', 'skvb1', 'skvb2'))


def sockmap(check_mode=False, **args):
    args.setdefault('name', NAME)
    args.setdefault('cgroup', CGROUP)
    if args.get('state', 'present') == 'present':
        args['bpf_sources'] = read_sources(SOURCES)
    return run_module('sockmap_redirect', args, check_mode=check_mode)


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def all_netns():
    return [n for pair in VETH_PAIRS for n in pair[:2]] + list(LOOPBACK_NS)


def teardown_netns():
    for ns in all_netns():
        subprocess.run(['ip', 'netns', 'del', ns], stderr=subprocess.DEVNULL, check=False)


def join_cgroup():
    with open(os.path.join(CGROUP, 'cgroup.procs'), 'w') as f:
        f.write(str(os.getpid()))


def scenario(*args, **kw):
    """Run sock_netns.py in our cgroup; its JSON result."""
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'sock_netns.py')] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          preexec_fn=join_cgroup, timeout=kw.get('timeout', 60), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope='module', autouse=True)
def world(require_root):
    teardown_netns()
    if not os.path.isdir(CGROUP):
        os.mkdir(CGROUP)
    for ns in LOOPBACK_NS:
        sh('ip', 'netns', 'add', ns)
        sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
    for ns1, ns2, v1, v2 in VETH_PAIRS:
        sh('ip', 'netns', 'add', ns1)
        sh('ip', 'netns', 'add', ns2)
        sh('ip', 'link', 'add', v1, 'netns', ns1, 'type', 'veth', 'peer', 'name', v2, 'netns', ns2)
        for ns, dev, addr in ((ns1, v1, '10.199.0.1/24'), (ns2, v2, '10.199.0.2/24')):
            sh('ip', '-n', ns, 'addr', 'add', addr, 'dev', dev)
            sh('ip', '-n', ns, 'link', 'set', dev, 'up')
            sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
    yield
    run_module('sockmap_redirect', {'name': NAME, 'state': 'absent'})
    teardown_netns()
    try:
        os.rmdir(CGROUP)
    except OSError:
        pass


def test_loopback_bytes_never_cross_namespaces():
    """The issue's case: A's client in CLOSE_WAIT, B opens the same 4-tuple on its own loopback."""
    on = sockmap(ports=[PORT])
    assert not on.get('failed'), on.get('msg')
    result = scenario('cross', 'sk-a', 'sk-a', 'sk-b', 'sk-b', '127.0.0.1', '127.0.0.1', PORT)
    assert 'SECRET' not in result['b_server_read'], result
    assert result['b_server_read'] == 'from-b'
    after = sockmap(ports=[PORT])
    assert after['counters']['msgs_redirected'] > 0, 'A and B themselves must still be accelerated'


def test_same_addresses_on_two_veth_pairs_never_cross():
    """Two namespace pairs with identical addresses: the 4-tuple alone is the same in both."""
    before = sockmap(ports=[PORT])['counters']
    result = scenario('cross', 'sk-a2', 'sk-a1', 'sk-b2', 'sk-b1', '10.199.0.2', '10.199.0.2', PORT)
    assert 'SECRET' not in result['b_server_read'], result
    assert result['b_server_read'] == 'from-b'
    after = sockmap(ports=[PORT])['counters']
    assert after['sockets_added'] - before['sockets_added'] == 4, 'both pairs are local: all four ends go in'
    assert after['msgs_redirected'] > before['msgs_redirected'], 'a pair across two namespaces is accelerated'


STRESS_PORT = 17101


def start_stress(tmp_path, connections, size=32 << 10):
    until = str(tmp_path / 'stop')
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, 'sock_netns.py'), 'stress', 'sk-a', '127.0.0.1',
                             str(STRESS_PORT), str(connections), str(size), until],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            preexec_fn=join_cgroup)
    return proc, until


def finish_stress(proc, until):
    open(until, 'w').close()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_thousand_connections_in_order_through_filter_change_and_reload(tmp_path):
    """Connections that write at once in both directions: a direction whose first message finds no peer
    goes through TCP for good, others redirect; a filter change and a reload mid-run lose and reorder
    nothing (every direction checked by sha256)."""
    on = sockmap(ports=[STRESS_PORT, STRESS_PORT + 1])
    assert not on.get('failed'), on.get('msg')
    proc, until = start_stress(tmp_path, 1000)
    try:
        time.sleep(1)
        changed = sockmap(ports=[STRESS_PORT, STRESS_PORT + 1, 17199])
        assert changed['changed'] and changed['prog_ids'] == on['prog_ids'], 'a filter change, not a reload'
        reloaded = sockmap(ports=[STRESS_PORT, STRESS_PORT + 1, 17199], max_sockets=32768)
        assert reloaded['changed'] and reloaded['prog_ids'] != on['prog_ids'], 'a reload'
        assert proc.poll() is None, 'the load must outlast the changes, or this proves nothing'
        # the reloaded programs count only batches started after their attach: let the load run until they did
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            seen = sockmap(ports=[STRESS_PORT, STRESS_PORT + 1, 17199], max_sockets=32768)['counters']
            if seen['msgs_redirected'] > 0 and seen['msgs_passed_tcp_direction'] > 0:
                break
            time.sleep(0.5)
    finally:
        result = finish_stress(proc, until)
    assert result['directions'] >= 2000
    assert result['intact'] == result['directions'], result
    after = sockmap(ports=[STRESS_PORT, STRESS_PORT + 1, 17199], max_sockets=32768)['counters']  # the reloaded programs' counts
    print(after)
    assert after['msgs_redirected'] > 0, 'connections after the reload are accelerated'
    assert after['msgs_passed'] > 0 and after['msgs_passed_tcp_direction'] > 0, \
        'some directions wrote before their peer was in the map: the case that used to reorder'


def test_absent_under_load_loses_nothing(tmp_path):
    sockmap(ports=[STRESS_PORT, STRESS_PORT + 1])
    proc, until = start_stress(tmp_path, 300)
    try:
        time.sleep(1.5)
        off = run_module('sockmap_redirect', {'name': NAME, 'state': 'absent', 'drain_timeout': 2})
        assert off['changed'] and off['drained_seconds'] == 2, off
        assert proc.poll() is None, 'the load must outlast the removal, or this proves nothing'
    finally:
        result = finish_stress(proc, until)
    assert result['intact'] == result['directions'], result


def ebn_program_ids():
    out = subprocess.run(['bpftool', '-j', 'prog', 'show'], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    return set(p['id'] for p in json.loads(out) if p.get('name', '').startswith('ebn_'))


def test_check_mode_compiles_and_loads_nothing():
    run_module('sockmap_redirect', {'name': 'sk_check', 'state': 'absent'})
    before = ebn_program_ids()
    preview = sockmap(check_mode=True, name='sk_check', ports=[PORT])
    assert preview['changed'] and not preview.get('failed'), preview
    assert preview['diff'] == {'before': {'state': 'absent'},
                               'after': {'state': 'present', 'cgroup': CGROUP, 'ports': [PORT], 'cidrs': []}}
    assert not os.path.exists('/sys/fs/bpf/ebpf_networking/sk_check')
    assert not ebn_program_ids() - before, 'check mode loaded a program'
    assert run_module('sockmap_redirect', {'name': 'sk_check', 'state': 'absent'})['changed'] is False


def test_scope_all_accelerates_every_local_connection():
    run_module('sockmap_redirect', {'name': NAME, 'state': 'absent'})
    on = sockmap(scope='all')
    assert not on.get('failed') and on['ports'] == [] and on['cidrs'] == [], on
    scenario('cross', 'sk-a', 'sk-a', 'sk-b', 'sk-b', '127.0.0.1', '127.0.0.1', 17102)
    assert sockmap(scope='all')['counters']['msgs_redirected'] > 0
    run_module('sockmap_redirect', {'name': NAME, 'state': 'absent'})


def test_sockets_with_an_ulp_are_never_redirected():
    """MPTCP subflows are TCP sockets with the mptcp ULP (this kernel has no tls ULP to try): the kernel must
    refuse them in the SOCKHASH, and the connection must work untouched."""
    run_module('sockmap_redirect', {'name': NAME, 'state': 'absent'})
    sockmap(ports=[17103])
    result = scenario('mptcp', 'sk-a', '127.0.0.1', 17103, 1 << 20)
    after = sockmap(ports=[17103])['counters']
    print(after)
    assert result['intact'], result
    assert after['msgs_redirected'] == 0 and after['sockets_added'] == 0, after
    assert after['insert_failed_other'] >= 2, 'the refusal is counted'
