# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_proxy and xdp_stats against a real namespace lab (see lab_topology.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import HERE, LB_NAME, run_module

PIN_ROOT = '/sys/fs/bpf/ebpf_networking'


def services(lab, backends=None):
    return [{'vip': lab.ip('lb'), 'port': 80, 'backends': [lab.ip(b) for b in (backends or lab.backends)]},
            {'vip': lab.ip('lb'), 'port': 5300, 'protocol': 'udp',
             'backends': [{'ip': lab.ip('be1')}, {'ip': lab.ip('be2'), 'weight': 2}]}]


def curl_hosts(lab, client, count, port=80):
    cmd = 'for i in $(seq 1 %d); do curl -s -m 3 http://%s:%d/ || echo FAILED; done' % (count, lab.ip('lb'), port)
    out = lab.node(client).run('sh', '-c', cmd).stdout
    return [line.replace('Hostname: ', '') for line in out.splitlines()]


def udp_names(lab, client, count):
    script = ('import socket,sys\nres=[]\nfor i in range(%d):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n'
              ' s.settimeout(2)\n s.sendto(b"ping",("%s",5300))\n'
              ' try:\n  d,a=s.recvfrom(100); res.append(d.decode().split(":")[0] + "@" + a[0])\n'
              ' except OSError: res.append("TIMEOUT")\n s.close()\nprint("\\n".join(res))') % (count, lab.ip('lb'))
    return lab.node(client).run(sys.executable, '-c', script).stdout.split()


def xdp_prog_on(lab, node):
    return 'prog/xdp' in lab.node(node).run('ip', '-d', 'link', 'show', 'eth0').stdout


def test_deploy_balances_tcp_and_udp_and_is_idempotent(lab, xdp):
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] and result['attach_mode'] == 'native' and result['prog_id']
    assert result['interface']['peer_ifindex'], 'native veth needs the pass program on the peer'
    assert xdp_prog_on(lab, 'lb')

    again = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert again['changed'] is False and again['changes'] == []
    assert again['prog_id'] == result['prog_id']

    answers = curl_hosts(lab, 'cl1', 45)
    assert 'FAILED' not in answers
    assert set(answers) == {'be1', 'be2', 'be3'}

    replies = udp_names(lab, 'cl2', 30)
    assert 'TIMEOUT' not in replies
    assert set(r.split('@')[1] for r in replies) == {lab.ip('lb')}, 'replies must come from the VIP'
    assert set(r.split('@')[0] for r in replies) == {'be1', 'be2'}


def test_a_rerun_on_a_busy_host_changes_nothing(lab, xdp):
    """Hundreds of sleeping processes list their timers in /proc/timer_list before the first jiffies line; HZ
    read from its first 8 KiB fell back to 100 there, so the same arguments compiled other timeouts: a reload on
    every busy re-run, and another program-cache key for the host agent than for the module."""
    sleepers = [subprocess.Popen(['sleep', '120']) for _sleeper in range(300)]
    try:
        time.sleep(0.5)
        again = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
    assert not again.get('failed'), again.get('msg')
    assert again['changed'] is False and again['changes'] == []


def test_xdp_stats_counts_the_traffic(lab, xdp):
    stats = run_module('xdp_stats', {'name': LB_NAME, 'flows': 5})
    assert stats['deployed'] and stats['attached']['mode'] == 'native'
    tcp = [c for c in stats['counters'] if c['service'].endswith(':80/tcp')][0]
    assert tcp['new_flows'] >= 45 and tcp['reply_packets'] > 0
    assert sum(b['new_flows'] for b in tcp['backends']) == tcp['new_flows']
    assert stats['flow_count'] > 0 and len(stats['flow_sample']) == 5
    assert stats['global_counters']['no_neighbour'] == 0
    assert stats['memory']['per_connection_bytes'] > 0
    assert stats['maps']['lb_conntrack']['type'] == 'lru_hash'


def test_kept_alive_connections_stay_on_their_backend(lab, xdp):
    out = lab.node('cl1').run(sys.executable, os.path.join(HERE, 'flow_client.py'), '--vip', lab.ip('lb'),
                              '--sports', '42000:12').stdout
    conns = json.loads(out)
    assert all('error' not in c for c in conns), conns
    assert all(c['first'] == c['second'] for c in conns)


def flows_from(lab, client, first_port, count):
    out = lab.node(client).run(sys.executable, os.path.join(HERE, 'flow_client.py'), '--vip', lab.ip('lb'),
                               '--sports', '%d:%d' % (first_port, count), '--rst-close').stdout
    return json.loads(out)


def test_a_reused_client_port_never_reaches_a_removed_backend(lab, xdp):
    """The connection table keeps entries of finished connections; a new SYN on the same 5-tuple must
    pick its backend from the live table, not the old entry."""
    first = flows_from(lab, 'cl2', 44000, 12)
    assert all('error' not in c for c in first), first
    removed = first[0]['first']
    keep = [b for b in lab.backends if b != removed]
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab, backends=keep))
    assert result['changed'] and not result.get('failed'), result.get('msg')
    try:
        again = flows_from(lab, 'cl2', 44000, 12)
        assert all('error' not in c for c in again), again
        assert removed not in set(c['first'] for c in again), 'a new connection went to the removed backend'
        moved = [a['sport'] for a, b in zip(first, again) if a['first'] != b['first']]
        assert all(a['first'] == b['first'] for a, b in zip(first, again) if a['first'] != removed), \
            'flows of the remaining backends should keep them (Maglev); moved: %s' % moved
    finally:
        xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))


def test_check_mode_reports_the_diff_and_changes_nothing(lab, xdp):
    smaller = services(lab, backends=['be1', 'be2'])
    result = xdp(check_mode=True, netns='ebn-lb', interface='eth0', mode='native', services=smaller)
    assert result['changed']
    # the saved desired state the host agent restores would change too (persistent is the default)
    assert [c for c in result['changes'] if not c.startswith('save desired state')] == \
        ['service %s:80/tcp: remove backend %s:80' % (lab.ip('lb'), lab.ip('be3'))], result['changes']
    assert len(result['diff']['before']['services'][0]['backends']) == 3
    assert len(result['diff']['after']['services'][0]['backends']) == 2
    stats = run_module('xdp_stats', {'name': LB_NAME})
    tcp = [s for s in stats['services'] if s['port'] == 80][0]
    assert len(tcp['backends']) == 3


def test_backend_change_updates_maps_in_place(lab, xdp):
    before = run_module('xdp_stats', {'name': LB_NAME})['prog_id']
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab, backends=['be1', 'be2']))
    assert result['changed'] and result['prog_id'] == before, 'a backend change must not reload the program'
    assert set(curl_hosts(lab, 'cl2', 30)) == {'be1', 'be2'}
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert result['changed'] and set(curl_hosts(lab, 'cl2', 45)) == {'be1', 'be2', 'be3'}


def test_two_clients_sharing_source_ports_never_collide(lab, xdp):
    """One backend and only 64 SNAT ports: 24 connections from the same source ports on two clients
    must all get distinct LB ports (collisions resolved by trying further candidates)."""
    svc = [{'vip': lab.ip('lb'), 'port': 80, 'backends': [lab.ip('be3')]}]
    result = xdp(name='collide', netns='ebn-lb', interface='eth0', mode='generic', force=True,
                 snat_port_range=[40000, 40063], services=svc)
    assert not result.get('failed'), result.get('msg')
    procs = [subprocess.Popen(['ip', 'netns', 'exec', 'ebn-' + c, sys.executable, os.path.join(HERE, 'flow_client.py'),
                               '--vip', lab.ip('lb'), '--sports', '43000:12'], stdout=subprocess.PIPE,
                              universal_newlines=True) for c in ('cl1', 'cl2')]
    conns = [c for p in procs for c in json.loads(p.communicate(timeout=60)[0])]
    assert len(conns) == 24
    bad = [c for c in conns if 'error' in c or not c['first'] == c['second'] == 'be3']
    assert not bad, bad
    stats = run_module('xdp_stats', {'name': 'collide', 'flows': 200})
    assert stats['global_counters']['snat_ports_exhausted'] == 0
    lb_ports = set(f['snat'] for f in stats['flow_sample'])
    assert len(lb_ports) == 24, 'every connection needs its own SNAT port'
    absent = run_module('xdp_proxy', {'name': 'collide', 'state': 'absent'})
    assert absent['changed'] and not os.path.exists(PIN_ROOT + '/collide')
    # the other deployment's program was replaced by force: put it back
    again = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert again['changed'] and set(curl_hosts(lab, 'cl1', 30)) == {'be1', 'be2', 'be3'}


def test_snat_ports_come_back_when_connections_end(lab, xdp):
    """64 SNAT ports and 300 short connections one after another: each closed flow's port is free
    again, so none is refused (before flows had no end, and the 65th connection failed)."""
    result = xdp(name='xareclaim', netns='ebn-lb', interface='eth0', mode='generic', force=True,
                 snat_port_range=[40000, 40063], services=services(lab))
    assert not result.get('failed'), result.get('msg')
    try:
        answers = curl_hosts(lab, 'cl1', 300)
        assert len(answers) == 300 and 'FAILED' not in answers
        stats = run_module('xdp_stats', {'name': 'xareclaim', 'flows': 400})
        tcp = [c for c in stats['counters'] if c['service'].endswith(':80/tcp')][0]
        assert tcp['new_flows'] >= 300 and tcp['refused'] == 0 and stats['refused_flows'] == 0
        assert stats['global_counters']['snat_ports_reclaimed'] > 0
        assert stats['global_counters']['orphan_replies_dropped'] == 0
        states = set(f['state'] for f in stats['flow_sample'])
        assert states <= {'closed', 'closing'}, 'every curl connection has ended: %s' % states
    finally:
        assert run_module('xdp_proxy', {'name': 'xareclaim', 'state': 'absent'})['changed']
        xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))


def test_full_connection_table_evicts_instead_of_failing(lab, xdp):
    """max_flows=64 holds 64 connections; 120 connections in a row must all work, the table stays
    bounded, and no insert fails (LRU eviction)."""
    result = xdp(name='lrutest', netns='ebn-lb', interface='eth0', mode='generic', force=True, max_flows=64,
                 services=services(lab))
    assert not result.get('failed'), result.get('msg')
    assert result['maps']['lb_conntrack']['max_entries'] == 64
    answers = curl_hosts(lab, 'cl1', 120)
    assert len(answers) == 120 and 'FAILED' not in answers
    stats = run_module('xdp_stats', {'name': 'lrutest'})
    assert 0 < stats['flow_count'] <= 64
    assert stats['global_counters']['flow_insert_failed'] == 0
    tcp = [c for c in stats['counters'] if c['service'].endswith(':80/tcp')][0]
    assert tcp['new_flows'] >= 120
    assert run_module('xdp_proxy', {'name': 'lrutest', 'state': 'absent'})['changed']
    again = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert again['changed'] and set(curl_hosts(lab, 'cl1', 30)) == {'be1', 'be2', 'be3'}


@pytest.mark.parametrize('args,message', [
    ({'netns': 'ebn-lb', 'interface': 'nope0'}, 'interface nope0 does not exist in netns:ebn-lb'),
    ({'netns': 'ebn-missing', 'interface': 'eth0'}, 'network namespace ebn-missing does not exist'),
    ({'container': 'ebn-no-such-container', 'interface': 'eth0'}, 'ebn-no-such-container'),
    ({'netns': 'ebn-be1', 'interface': 'eth0', 'services': [{'vip': '10.203.0.21', 'port': 80, 'backends': []}]},
     'has no backends'),
    ({'netns': 'ebn-be1', 'interface': 'eth0',
      'services': [{'vip': '10.203.0.21', 'port': 70000, 'backends': ['10.203.0.22']}]}, 'out of range'),
    ({'netns': 'ebn-be1', 'interface': 'eth0',
      'services': [{'vip': '10.203.0.300', 'port': 80, 'backends': ['10.203.0.22']}]}, 'not an IPv4 address'),
    ({'netns': 'ebn-be1', 'interface': 'eth0', 'ring_size': 4096}, 'must be a prime'),
    ({'netns': 'ebn-be1', 'interface': 'eth0',
      'services': [{'vip': '0.0.0.0', 'port': 80, 'backends': ['10.203.0.22']}]}, 'vip 0.0.0.0 is unspecified'),
    ({'netns': 'ebn-be1', 'interface': 'eth0',
      'services': [{'vip': '10.203.0.21', 'port': 80, 'backends': ['255.255.255.255']}]}, 'is the broadcast address'),
    ({'netns': 'ebn-be1', 'interface': 'eth0',
      'services': [{'vip': '10.203.0.21', 'port': 80, 'snat_ip': '127.0.0.1', 'backends': ['10.203.0.22']}]},
     'is a loopback address'),
    ({'netns': 'ebn-be1', 'interface': 'eth0', 'timeouts': {'udp': 0}}, 'timeouts.udp 0 is out of range'),
])
def test_bad_input_fails_clearly_and_leaves_nothing(lab, xdp, args, message):
    args.setdefault('services', [{'vip': '10.203.0.21', 'port': 80, 'backends': ['10.203.0.22']}])
    result = xdp(name='busytest', **args)
    assert result.get('failed'), result
    assert message in result['msg']
    assert not os.path.exists(PIN_ROOT + '/busytest') and not os.path.exists(PIN_ROOT + '/_staging_busytest')
    assert not xdp_prog_on(lab, 'be1')


@pytest.mark.parametrize('module', ['xdp_proxy', 'xdp_stats'])
def test_a_bad_name_fails_cleanly(module):
    args = {'name': 'Bad Name'}
    if module == 'xdp_proxy':
        args['state'] = 'absent'
    result = run_module(module, args)
    assert result.get('failed') and "name 'Bad Name' is invalid" in result['msg'], result
    assert 'Traceback' not in result.get('module_stderr', '') and 'exception' not in result


def test_compile_error_shows_the_compiler_and_leaves_nothing(lab, xdp):
    from conftest import read_sources, XDP_SOURCES
    sources = read_sources(XDP_SOURCES)
    sources['xdp_proxy.bpf.c'] = sources['xdp_proxy.bpf.c'].replace('int xdp_lb(struct xdp_md *ctx)\n{',
                                                                    'int xdp_lb(struct xdp_md *ctx)\n{ this_is_not_c;')
    result = xdp(name='brokensrc', netns='ebn-be1', interface='eth0', bpf_sources=sources,
                 services=[{'vip': '10.203.0.21', 'port': 80, 'backends': ['10.203.0.22']}])
    assert result.get('failed')
    assert 'compiling xdp_proxy.bpf.c with bcc failed' in result['msg']
    assert 'this_is_not_c' in result['msg'], 'the compiler message must be shown'
    assert not os.path.exists(PIN_ROOT + '/brokensrc') and not os.path.exists(PIN_ROOT + '/_staging_brokensrc')
    assert not xdp_prog_on(lab, 'be1')


def test_busy_xdp_slot_is_refused_unless_forced(lab, xdp):
    svc = [{'vip': lab.ip('be1'), 'port': 8080, 'backends': [lab.ip('be2')]}]
    other = xdp(name='other', netns='ebn-be1', interface='eth0', mode='generic', services=svc)
    assert other['changed'] and not other.get('failed')
    busy = xdp(name='busytest', netns='ebn-be1', interface='eth0', mode='generic', services=svc)
    assert busy.get('failed')
    assert 'already has XDP program id %d' % other['prog_id'] in busy['msg'] and 'force: true' in busy['msg']
    assert not os.path.exists(PIN_ROOT + '/busytest')
    forced = xdp(name='busytest', netns='ebn-be1', interface='eth0', mode='generic', force=True, services=svc)
    assert forced['changed'] and forced['prog_id'] != other['prog_id']
    for name in ('busytest', 'other'):
        assert run_module('xdp_proxy', {'name': name, 'state': 'absent'}).get('failed') is not True
    assert not xdp_prog_on(lab, 'be1')


def test_leftovers_of_an_interrupted_run_are_repaired(lab, xdp):
    os.mkdir(PIN_ROOT + '/_staging_' + LB_NAME)
    os.unlink(PIN_ROOT + '/' + LB_NAME + '/map_lb_meta')
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert result['changed'] and not result.get('failed'), result.get('msg')
    assert any('staging' in c for c in result['changes'])
    assert any('damaged pins' in c for c in result['changes'])
    assert not os.path.exists(PIN_ROOT + '/_staging_' + LB_NAME)
    assert set(curl_hosts(lab, 'cl1', 45)) == {'be1', 'be2', 'be3'}
    assert xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))['changed'] is False


def attached_prog_ids(ns):
    links = json.loads(subprocess.run(['ip', '-j', '-n', ns, '-d', 'link', 'show'], stdout=subprocess.PIPE,
                                      universal_newlines=True, check=True).stdout)
    return set(l['xdp']['prog']['id'] for l in links if l.get('xdp', {}).get('prog'))


def test_absent_removes_program_pins_and_attachments(lab, xdp):
    ours = attached_prog_ids('ebn-lb') | attached_prog_ids('ebn-sw')
    assert len(ours) == 2, 'the LB program and the peer pass program: %s' % ours
    check = run_module('xdp_proxy', {'name': LB_NAME, 'state': 'absent'}, check_mode=True)
    assert check['changed'] and os.path.exists(PIN_ROOT + '/' + LB_NAME)
    result = run_module('xdp_proxy', {'name': LB_NAME, 'state': 'absent'})
    assert result['changed']
    assert not os.path.exists(PIN_ROOT + '/' + LB_NAME)
    assert not xdp_prog_on(lab, 'lb')
    switch = subprocess.run(['ip', 'netns', 'exec', 'ebn-sw', 'ip', '-d', 'link'], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout
    assert 'prog/xdp' not in switch, 'the veth peer program must go too'
    progs = subprocess.run(['bpftool', '-j', 'prog', 'show'], stdout=subprocess.PIPE, universal_newlines=True,
                           check=True).stdout
    # by id: the docker lab or another deployment may run programs of the same name
    assert not [p for p in json.loads(progs) if p['id'] in ours], 'our programs must be unloaded'
    assert run_module('xdp_proxy', {'name': LB_NAME, 'state': 'absent'})['changed'] is False


def test_absent_with_damaged_pins_still_finds_and_detaches(lab, xdp):
    deployed = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert deployed['changed'] and xdp_prog_on(lab, 'lb')
    os.unlink(PIN_ROOT + '/' + LB_NAME + '/map_lb_meta')  # the record of where it is attached is gone
    result = run_module('xdp_proxy', {'name': LB_NAME, 'state': 'absent'})
    assert result['changed'] and any(c.startswith('detach program %d' % deployed['prog_id']) for c in result['changes'])
    assert not xdp_prog_on(lab, 'lb') and not os.path.exists(PIN_ROOT + '/' + LB_NAME)


def udp_exchange_script(vip, sport, rounds):
    """Python run in a client namespace: one UDP socket bound to sport, one datagram per line of
    stdin ('go'), printing 'backend@source' for each answer."""
    return ('import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(("0.0.0.0",%d))\n'
            's.settimeout(2)\nfor line in sys.stdin:\n s.sendto(b"x",("%s",5300))\n'
            ' try:\n  d,a=s.recvfrom(100); print(d.decode().split(":")[0]+"@"+a[0], flush=True)\n'
            ' except OSError: print("TIMEOUT", flush=True)\n') % (sport, vip)


def test_a_udp_flow_moves_off_a_removed_backend_on_its_next_packet(lab, xdp):
    deployed = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert not deployed.get('failed'), deployed.get('msg')
    proc = subprocess.Popen(['ip', 'netns', 'exec', 'ebn-cl1', sys.executable, '-c',
                             udp_exchange_script(lab.ip('lb'), 45300, 2)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, universal_newlines=True)
    try:
        proc.stdin.write('go\n')
        proc.stdin.flush()
        first = proc.stdout.readline().strip()
        assert first != 'TIMEOUT' and first.endswith('@' + lab.ip('lb')), first
        used = first.split('@')[0]
        svcs = services(lab)
        svcs[1]['backends'] = [{'ip': lab.ip(b)} for b in ('be1', 'be2', 'be3') if b != used]
        changed = xdp(netns='ebn-lb', interface='eth0', mode='native', services=svcs)
        assert changed['changed'] and changed['prog_id'] == deployed['prog_id']
        proc.stdin.write('go\n')
        proc.stdin.flush()
        second = proc.stdout.readline().strip()
        assert second != 'TIMEOUT' and second.endswith('@' + lab.ip('lb')), second
        assert second.split('@')[0] != used, 'the same socket must now reach another backend'
        stats = run_module('xdp_stats', {'name': LB_NAME})
        assert stats['global_counters']['udp_flows_moved'] >= 1
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))


def test_draining_backend_keeps_its_connections_and_gets_no_new_ones(lab, xdp):
    """weight 0: kept-alive connections on the backend go on; new connections go elsewhere."""
    client = subprocess.Popen(['ip', 'netns', 'exec', 'ebn-cl2', sys.executable, os.path.join(HERE, 'flow_client.py'),
                               '--vip', lab.ip('lb'), '--sports', '46000:12', '--pause-file', '/tmp/xa-drain-go'],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        deadline = time.time() + 20
        while not os.path.exists('/tmp/xa-drain-go.ready') and time.time() < deadline:
            time.sleep(0.1)
        svcs = services(lab)
        svcs[0]['backends'] = [{'ip': lab.ip('be1'), 'weight': 0}, lab.ip('be2'), lab.ip('be3')]
        drained = xdp(netns='ebn-lb', interface='eth0', mode='native', services=svcs)
        assert any('draining' in c for c in drained['changes']), drained['changes']
        assert 'be1' not in set(curl_hosts(lab, 'cl1', 30)), 'a draining backend gets no new flows'
        open('/tmp/xa-drain-go', 'w').close()
        conns = json.loads(client.communicate(timeout=60)[0])
        assert all('error' not in c for c in conns), conns
        assert all(c['first'] == c['second'] for c in conns), 'open connections stay on their backend'
        assert 'be1' in set(c['first'] for c in conns), 'some connection must have been on the drained backend'
        stats = run_module('xdp_stats', {'name': LB_NAME})
        be1 = [b for c in stats['counters'] if c['service'].endswith(':80/tcp') for b in c['backends']
               if b['ip'] == lab.ip('be1')][0]
        assert be1['draining'] and be1['weight'] == 0
    finally:
        client.kill()
        for path in ('/tmp/xa-drain-go', '/tmp/xa-drain-go.ready'):
            if os.path.exists(path):
                os.unlink(path)
        xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))


def test_a_long_download_keeps_flowing_across_a_reload_that_keeps_the_layout(lab, xdp):
    deployed = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    # 32 s at 2 MB/s: longer than a compile and reload on a busy host (the program cache is empty here once
    # test_host_agent has wiped it, so this reload compiles: 4-15 s)
    size = 64 * 1024 * 1024
    proc = subprocess.Popen(['ip', 'netns', 'exec', 'ebn-cl1', 'curl', '-s', '-o', '/dev/null', '-w', '%{size_download}',
                             '--limit-rate', '2M', '-m', '150', 'http://%s/bytes/%d' % (lab.ip('lb'), size)],
                            stdout=subprocess.PIPE, universal_newlines=True)
    try:
        time.sleep(1.5)
        assert proc.poll() is None, 'the download must still run during the reload'
        reloaded = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab),
                       timeouts={'tcp_closing': 12})
        assert not reloaded.get('failed'), reloaded.get('msg')
        assert reloaded['prog_id'] != deployed['prog_id'], 'a timeout change reloads the program'
        assert any('keeping the flow table' in c for c in reloaded['changes']), reloaded['changes']
        assert proc.poll() is None, 'the download must outlast the reload'
        out = proc.communicate(timeout=150)[0]
        assert proc.returncode == 0 and int(out) == size, 'curl rc %s, %s bytes' % (proc.returncode, out)
    finally:
        if proc.poll() is None:
            proc.kill()
        xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))


def test_a_layout_change_says_how_many_flows_it_resets(lab, xdp):
    xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    curl_hosts(lab, 'cl1', 5)
    check = xdp(check_mode=True, netns='ebn-lb', interface='eth0', mode='native', services=services(lab),
                max_flows=32768)
    assert check['changed']
    resets = [c for c in check['changes'] if 'live flows will be reset' in c]
    assert resets and int(resets[0].split(': ')[1].split()[0]) >= 5, check['changes']
    assert check['diff']['before']['limits']['max_flows'] == 65536
    assert check['diff']['after']['limits']['max_flows'] == 32768


def test_a_backends_port_unreachable_reaches_the_client(lab, xdp):
    """Nothing listens on the backend port: the backend's ICMP error is translated back to the client,
    whose connected UDP socket then reports connection refused (without translation it would time out)."""
    svcs = services(lab) + [{'vip': lab.ip('lb'), 'port': 5301, 'protocol': 'udp',
                             'backends': [{'ip': lab.ip('be2'), 'port': 5399}]}]
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=svcs)
    assert not result.get('failed'), result.get('msg')
    script = ('import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n'
              's.connect(("%s",5301))\ns.send(b"x")\ntry:\n s.recv(100); print("ANSWER")\n'
              'except ConnectionRefusedError: print("REFUSED")\nexcept OSError as e: print("TIMEOUT", e)\n') % lab.ip('lb')
    try:
        out = lab.node('cl1').run(sys.executable, '-c', script).stdout.strip()
        assert out == 'REFUSED', out
        stats = run_module('xdp_stats', {'name': LB_NAME})
        assert stats['global_counters']['icmp_translated'] >= 1
    finally:
        xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))


# ping -s 3000 without the ping binary: an echo request with 3000 bytes of data, fragmented by the kernel
PING_3000 = r"""
import socket, struct
def csum(b):
    s = sum(struct.unpack('!' + 'H' * (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
data = bytes(range(256)) * 11 + bytes(184)
hdr = struct.pack('!BBHHH', 8, 0, 0, 0x4242, 1)
msg = struct.pack('!BBHHH', 8, 0, csum(hdr + data), 0x4242, 1) + data
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
s.sendto(msg, ('VIP', 0))
try:
    while True:
        pkt = s.recv(65535)
        icmp = pkt[(pkt[0] & 15) * 4:]
        if icmp[0] == 0 and icmp[4:6] == b'\x42\x42':
            print('REPLY', len(icmp)); break
except OSError:
    print('TIMEOUT')
"""


def test_ping_and_oversized_udp_to_the_vip_behave_as_documented(lab, xdp):
    """ICMP is not balanced: the LB's own stack answers a fragmented ping. A UDP datagram larger than
    the MTU to a service is dropped whole and counted, never split between backend and stack."""
    xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert lab.node('cl1').run(sys.executable, '-c', PING_3000.replace('VIP', lab.ip('lb'))).stdout.strip() == 'REPLY 3008'

    before = run_module('xdp_stats', {'name': LB_NAME})['global_counters']['fragments_dropped']
    script = ('import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n'
              's.sendto(b"x"*4000,("%s",5300))\ntry:\n s.recvfrom(100); print("ANSWER")\n'
              'except OSError: print("NOANSWER")\n') % lab.ip('lb')
    assert lab.node('cl2').run(sys.executable, '-c', script).stdout.strip() == 'NOANSWER'
    after = run_module('xdp_stats', {'name': LB_NAME})['global_counters']['fragments_dropped']
    assert after - before >= 3, 'all three fragments of the 4000-byte datagram are dropped'


def fake_old_version_pins(name):
    """Pins as main's program (layout 1) left them: lb_meta of 192 bytes, lb_conntrack with 40-byte values
    holding three entries, and a pinned XDP program."""
    from bcc import BPF  # pylint: disable=import-outside-toplevel
    from ansible_collections.ebpf.networking.plugins.module_utils import bpf_syscall  # noqa: E501  pylint: disable=import-outside-toplevel
    path = os.path.join(PIN_ROOT, name)
    os.makedirs(path)
    old_sizes = {'lb_services': ('hash', 8, 16, 16), 'lb_backends': ('array', 4, 16, 1024),
                 'lb_maglev': ('array', 4, 4, 64), 'lb_conntrack': ('lru_hash', 16, 40, 64),
                 'lb_svc_stats': ('percpu_array', 4, 48, 16), 'lb_be_stats': ('percpu_array', 4, 48, 1024),
                 'lb_global': ('percpu_array', 4, 8, 6), 'lb_meta': ('array', 4, 192, 1),
                 'lb_addrs': ('hash', 4, 8, 20), 'lb_snat_ports': ('array', 4, 16, 64)}
    for m, (kind, key, value, entries) in old_sizes.items():
        subprocess.run(['bpftool', 'map', 'create', os.path.join(path, 'map_' + m), 'type', kind, 'key', str(key),
                        'value', str(value), 'entries', str(entries), 'name', m], check=True)
    for i in range(3):
        key = ['hex'] + ['%02x' % b for b in bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, i, 0, 80, 6, 0, 0, 0])]
        subprocess.run(['bpftool', 'map', 'update', 'pinned', os.path.join(path, 'map_lb_conntrack'), 'key'] + key +
                       ['value', 'hex'] + ['00'] * 40, check=True)
    prog = BPF(text=b'int xdp_lb(struct xdp_md *ctx) { return XDP_PASS; }')
    bpf_syscall.obj_pin(prog.load_func(b'xdp_lb', BPF.XDP).fd, os.path.join(path, 'prog_xdp_lb'))


def test_pins_of_another_version_are_replaced_and_their_flows_counted(lab, xdp):
    fake_old_version_pins('xaold')
    svc = [{'vip': lab.ip('be1'), 'port': 8080, 'backends': [lab.ip('be2')]}]
    try:
        check = xdp(name='xaold', check_mode=True, netns='ebn-be1', interface='eth0', mode='generic', services=svc)
        assert not check.get('failed'), check.get('msg')
        replaced = [c for c in check['changes'] if 'pins from another version' in c]
        assert replaced and replaced[0].endswith('3 live flows will be reset'), check['changes']
        stats = run_module('xdp_stats', {'name': 'xaold'})
        assert stats.get('failed') and 'damaged' in stats['msg'] and 'Traceback' not in stats.get('module_stderr', '')
        result = xdp(name='xaold', netns='ebn-be1', interface='eth0', mode='generic', services=svc)
        assert result['changed'] and not result.get('failed'), result.get('msg')
        assert run_module('xdp_stats', {'name': 'xaold'})['deployed']
    finally:
        run_module('xdp_proxy', {'name': 'xaold', 'state': 'absent'})
    assert not os.path.exists(os.path.join(PIN_ROOT, 'xaold')) and not xdp_prog_on(lab, 'be1')
