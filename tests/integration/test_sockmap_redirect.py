# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""sockmap_redirect on this host's loopback: real transfers, counters, filters, clean removal."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import HERE, read_sources, run_module

SOURCES = ('sockops.bpf.c', 'sockredir.bpf.c', 'sockmap.h')
PIN = '/sys/fs/bpf/ebpf_networking/sockmap_test'


def sockmap(check_mode=False, **args):
    args.setdefault('name', 'sockmap_test')
    if args.get('state', 'present') == 'present':
        args.setdefault('bpf_sources', read_sources(SOURCES))
    return run_module('sockmap_redirect', args, check_mode=check_mode)


def transfer(port, mib=8, host='127.0.0.1'):
    out = subprocess.run([sys.executable, os.path.join(HERE, 'tcp_transfer.py'), '--host', host, '--port', str(port),
                          '--mib', str(mib), '--rr', '100'], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True, timeout=60).stdout
    return json.loads(out)


def loaded_program_ids():
    out = subprocess.run(['bpftool', '-j', 'prog', 'show'], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    return set(p['id'] for p in json.loads(out))


def gone_soon(prog_ids, seconds=3.0):
    """The deployment's programs (prog_ids as the module returned them) are unloaded. The kernel frees
    programs after an RCU grace period: allow it a moment. Only these ids: another deployment of the
    same programs on this host (a lab's sockmap_accel) is not ours to wait for."""
    ours = set(prog_ids.values())
    assert ours, 'no program ids to wait for'
    deadline = time.time() + seconds
    while ours & loaded_program_ids():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope='module', autouse=True)
def cleanup(require_root):
    yield
    run_module('sockmap_redirect', {'name': 'sockmap_test', 'state': 'absent'})


def test_accelerated_transfer_is_intact_and_redirected():
    on = sockmap(ports=[18090])
    assert on['changed'] and not on.get('failed'), on.get('msg')
    assert on['prog_ids']['sock_ops'] and on['prog_ids']['sk_msg']
    before = on['counters']['bytes_redirected']
    result = transfer(18090, mib=8)
    assert result['intact'] and result['echoes_ok'] == result['echoes']
    after = sockmap(ports=[18090])
    assert after['changed'] is False
    assert after['counters']['bytes_redirected'] - before >= 8 << 20, 'the bulk data must take the shortcut'
    assert after['counters']['sockets_added'] >= 2


def test_ipv6_loopback_is_accelerated_too():
    before = sockmap(ports=[18090])['counters']['bytes_redirected']
    assert transfer(18090, mib=2, host='::1')['intact']
    assert sockmap(ports=[18090])['counters']['bytes_redirected'] - before >= 2 << 20


def test_other_ports_are_left_alone():
    before = sockmap(ports=[18090])['counters']
    assert transfer(18091, mib=2)['intact']
    after = sockmap(ports=[18090])['counters']
    assert after['bytes_redirected'] == before['bytes_redirected']


def test_filter_change_is_in_place_and_check_mode_changes_nothing():
    ids = sockmap(ports=[18090])['prog_ids']
    preview = sockmap(check_mode=True, ports=[18091], cidrs=['127.0.0.0/8'])
    assert preview['changed'] and preview['diff']['after'] == {'state': 'present', 'cgroup': '/sys/fs/cgroup/unified',
                                                               'ports': [18091], 'cidrs': ['127.0.0.0/8']}
    assert preview['diff']['before']['ports'] == [18090]
    assert sockmap(ports=[18090])['changed'] is False, 'check mode must not have applied anything'
    moved = sockmap(ports=[18091], cidrs=['127.0.0.0/8'])
    assert moved['changed'] and moved['prog_ids'] == ids, 'a filter change must not reload the programs'
    before = moved['counters']['bytes_redirected']
    assert transfer(18091, mib=2)['intact']
    assert sockmap(ports=[18091], cidrs=['127.0.0.0/8'])['counters']['bytes_redirected'] - before >= 2 << 20


@pytest.mark.parametrize('args,message', [
    ({'ports': [0]}, 'out of range'),
    ({'cidrs': ['300.0.0.0/8']}, 'invalid'),
    ({'cgroup': '/sys/fs/cgroup/unified/ebn-no-such-cgroup'}, 'does not exist'),
    ({'cgroup': '/sys/fs/cgroup/cpu'}, 'not in the cgroup v2 hierarchy'),
    ({'container': 'ebn-no-such-container'}, 'ebn-no-such-container'),
    ({'name': 'Bad Name'}, "name 'Bad Name' is invalid"),
    ({'ports': [], 'cidrs': []}, 'Give ports or cidrs, or scope=all'),
    ({'scope': 'all'}, 'scope=all contradicts'),
    ({'drain_timeout': -1}, 'drain_timeout -1.0 is out of range'),
    ({'drain_timeout': 61}, 'drain_timeout 61.0 is out of range'),
    ({'max_sockets': 0}, 'max_sockets 0 is out of range'),
    ({'bpf_sources': {}}, 'run this module through its action plugin'),
])
def test_bad_input_fails_clearly(args, message):
    args.setdefault('name', 'sockmap_bad')
    args.setdefault('ports', [18090])
    result = sockmap(**args)
    assert result.get('failed') and message in result['msg'], result
    assert 'exception' not in result, 'a bad input must not be a traceback'
    assert not os.path.exists('/sys/fs/bpf/ebpf_networking/sockmap_bad')


def test_absent_removes_everything_and_live_connections_survive():
    on = sockmap(ports=[18090])
    assert os.path.isdir(PIN)
    preview = run_module('sockmap_redirect', {'name': 'sockmap_test', 'state': 'absent'}, check_mode=True)
    assert preview['changed'] and os.path.isdir(PIN), 'check mode must leave the deployment in place'
    assert preview['diff'] == {'before': {'state': 'present', 'cgroup': '/sys/fs/cgroup/unified', 'ports': [18090],
                                          'cidrs': []}, 'after': {'state': 'absent'}}
    result = run_module('sockmap_redirect', {'name': 'sockmap_test', 'state': 'absent'})
    assert result['changed'] and not os.path.exists(PIN)
    assert gone_soon(on['prog_ids']), 'no sock_ops or sk_msg program of ours may stay loaded'
    tree = subprocess.run(['bpftool', 'cgroup', 'tree', '/sys/fs/cgroup/unified'], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout
    assert 'ebn_sockops' not in tree
    assert transfer(18090, mib=2)['intact']
    assert run_module('sockmap_redirect', {'name': 'sockmap_test', 'state': 'absent'})['changed'] is False


def test_absent_after_a_crash_that_lost_the_pins():
    on = sockmap(ports=[18090])
    sock_ops_id = on['prog_ids']['sock_ops']
    # a connection stays open across the crash and the removal: its socket sits in the SOCKHASH
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', 18090))
    listener.listen(1)
    client = socket.create_connection(('127.0.0.1', 18090), timeout=5)
    server, _addr = listener.accept()
    try:
        # a crash that kept the cgroup attachment but lost every pin but the directory
        for entry in os.listdir(PIN):
            os.unlink(os.path.join(PIN, entry))
        result = run_module('sockmap_redirect', {'name': 'sockmap_test', 'state': 'absent'})
        assert result['changed']
        assert any('detach sock_ops program %d' % sock_ops_id in c for c in result['changes'])
        assert not os.path.exists(PIN)
        assert gone_soon(on['prog_ids']), 'the live socket must not keep our programs and map alive'
        client.sendall(b'still works')
        server.settimeout(5)
        assert server.recv(64) == b'still works'
    finally:
        for s in (client, server, listener):
            s.close()
