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

import pytest

from conftest import HERE, run_module

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


def test_xdp_stats_counts_the_traffic(lab, xdp):
    stats = run_module('xdp_stats', {'name': 'xdp_lb', 'flows': 5})
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
    assert result['changes'] == ['service %s:80/tcp: remove backend %s:80' % (lab.ip('lb'), lab.ip('be3'))]
    assert len(result['diff']['before']['services'][0]['backends']) == 3
    assert len(result['diff']['after']['services'][0]['backends']) == 2
    stats = run_module('xdp_stats', {'name': 'xdp_lb'})
    tcp = [s for s in stats['services'] if s['port'] == 80][0]
    assert len(tcp['backends']) == 3


def test_backend_change_updates_maps_in_place(lab, xdp):
    before = run_module('xdp_stats', {'name': 'xdp_lb'})['prog_id']
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
    lb_ports = set(f['rewritten_from'] for f in stats['flow_sample'] if f['direction'] == 'forward')
    assert len(lb_ports) == 24, 'every connection needs its own SNAT port'
    absent = run_module('xdp_proxy', {'name': 'collide', 'state': 'absent'})
    assert absent['changed'] and not os.path.exists(PIN_ROOT + '/collide')
    # the other deployment's program was replaced by force: put it back
    again = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert again['changed'] and set(curl_hosts(lab, 'cl1', 30)) == {'be1', 'be2', 'be3'}


def test_full_connection_table_evicts_instead_of_failing(lab, xdp):
    """max_flows=64 holds 32 connections; 120 connections in a row must all work, the table stays
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
])
def test_bad_input_fails_clearly_and_leaves_nothing(lab, xdp, args, message):
    args.setdefault('services', [{'vip': '10.203.0.21', 'port': 80, 'backends': ['10.203.0.22']}])
    result = xdp(name='busytest', **args)
    assert result.get('failed'), result
    assert message in result['msg']
    assert not os.path.exists(PIN_ROOT + '/busytest') and not os.path.exists(PIN_ROOT + '/_staging_busytest')
    assert not xdp_prog_on(lab, 'be1')


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
    os.mkdir(PIN_ROOT + '/_staging_xdp_lb')
    os.unlink(PIN_ROOT + '/xdp_lb/map_lb_meta')
    result = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert result['changed'] and not result.get('failed'), result.get('msg')
    assert any('staging' in c for c in result['changes'])
    assert any('damaged pins' in c for c in result['changes'])
    assert not os.path.exists(PIN_ROOT + '/_staging_xdp_lb')
    assert set(curl_hosts(lab, 'cl1', 45)) == {'be1', 'be2', 'be3'}
    assert xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))['changed'] is False


def attached_prog_ids(ns):
    links = json.loads(subprocess.run(['ip', '-j', '-n', ns, '-d', 'link', 'show'], stdout=subprocess.PIPE,
                                      universal_newlines=True, check=True).stdout)
    return set(l['xdp']['prog']['id'] for l in links if l.get('xdp', {}).get('prog'))


def test_absent_removes_program_pins_and_attachments(lab, xdp):
    ours = attached_prog_ids('ebn-lb') | attached_prog_ids('ebn-sw')
    assert len(ours) == 2, 'the LB program and the peer pass program: %s' % ours
    check = run_module('xdp_proxy', {'name': 'xdp_lb', 'state': 'absent'}, check_mode=True)
    assert check['changed'] and os.path.exists(PIN_ROOT + '/xdp_lb')
    result = run_module('xdp_proxy', {'name': 'xdp_lb', 'state': 'absent'})
    assert result['changed']
    assert not os.path.exists(PIN_ROOT + '/xdp_lb')
    assert not xdp_prog_on(lab, 'lb')
    switch = subprocess.run(['ip', 'netns', 'exec', 'ebn-sw', 'ip', '-d', 'link'], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout
    assert 'prog/xdp' not in switch, 'the veth peer program must go too'
    progs = subprocess.run(['bpftool', '-j', 'prog', 'show'], stdout=subprocess.PIPE, universal_newlines=True,
                           check=True).stdout
    # by id: the docker lab or another deployment may run programs of the same name
    assert not [p for p in json.loads(progs) if p['id'] in ours], 'our programs must be unloaded'
    assert run_module('xdp_proxy', {'name': 'xdp_lb', 'state': 'absent'})['changed'] is False


def test_absent_with_damaged_pins_still_finds_and_detaches(lab, xdp):
    deployed = xdp(netns='ebn-lb', interface='eth0', mode='native', services=services(lab))
    assert deployed['changed'] and xdp_prog_on(lab, 'lb')
    os.unlink(PIN_ROOT + '/xdp_lb/map_lb_meta')  # the record of where it is attached is gone
    result = run_module('xdp_proxy', {'name': 'xdp_lb', 'state': 'absent'})
    assert result['changed'] and any(c.startswith('detach program %d' % deployed['prog_id']) for c in result['changes'])
    assert not xdp_prog_on(lab, 'lb') and not os.path.exists(PIN_ROOT + '/xdp_lb')
