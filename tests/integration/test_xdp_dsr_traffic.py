# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_proxy's dsr and ipip forwarding with real connections (issue 13).

    q13-cl1 (client)     --+
    q13-lb  (XDP LB)     --+-- bridge br0 in q13-sw, 10.213.0.0/24
    q13-be1, q13-be2     --+   (backends: the VIP on loopback, answering the client directly)

The LB holds the VIP on eth0 (it answers ARP for it); the backends hold it on lo with arp_ignore=1 /
arp_announce=2, so they accept packets to it and never answer ARP for it. For ipip the backends
decapsulate with the xdp_decap module (this kernel has no ipip device). The LB must see only the
client's packets: its reply counters stay 0 while every request is answered.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sys

import pytest

from conftest import HERE, XDP_SOURCES, read_sources, run_module
from lab_topology import Topology

NAME = 'q13fwd'
SUBNET = '10.213.0.'
VIP = SUBNET + '50'


@pytest.fixture(scope='module')
def topo(require_root):
    pytest.importorskip('bcc')
    lab = Topology(clients=1, backends=2, checksum_offload=True, prefix='q13-', subnet=SUBNET).up()
    try:
        lab.node('lb').run('ip', 'addr', 'add', VIP + '/32', 'dev', 'eth0')
        for b in lab.backends:
            lab.node(b).hold_vip(VIP)
        lab.start_backends(port=80)
        yield lab
    finally:
        run_module('xdp_proxy', {'name': NAME, 'state': 'absent'})
        for b in lab.backends:
            run_module('xdp_decap', {'name': 'q13decap-' + b, 'state': 'absent'})
        lab.down()


def deploy(lab, forwarding, **extra):
    svc = dict({'vip': VIP, 'port': 80, 'forwarding': forwarding, 'backends': [lab.ip(b) for b in lab.backends]},
               **extra)
    return run_module('xdp_proxy', {'name': NAME, 'netns': 'q13-lb', 'interface': 'eth0', 'services': [svc],
                                    'bpf_sources': read_sources(XDP_SOURCES)})


def connections(lab, first_port, count=24):
    out = lab.node('cl1').run(sys.executable, os.path.join(HERE, 'flow_client.py'), '--vip', VIP,
                              '--sports', '%d:%d' % (first_port, count), '--rst-close').stdout
    return json.loads(out)


def check_direct_return(lab, first_port, forwarding, **extra):
    result = deploy(lab, forwarding, **extra)
    assert not result.get('failed'), result.get('msg')
    conns = connections(lab, first_port)
    errors = [c for c in conns if 'error' in c]
    assert not errors, errors[:3]
    assert set(c['first'] for c in conns) == set(lab.backends), 'both backends answer'
    assert all(c['first'] == c['second'] for c in conns), 'a connection stays on its backend'
    again = deploy(lab, forwarding, **extra)
    assert again['changed'] is False, again['changes']
    stats = again['counters'][0]
    assert stats['new_flows'] >= len(conns) and stats['packets'] > 0
    assert stats['reply_packets'] == 0, 'replies went from the backends to the client directly'


def test_dsr_backends_answer_the_client_directly(topo):
    check_direct_return(topo, 41000, 'dsr')


def decap(lab, backend, **extra):
    args = dict({'name': 'q13decap-' + backend, 'netns': 'q13-' + backend, 'interface': 'eth0',
                 'bpf_sources': read_sources(['xdp_decap.bpf.c'])}, **extra)
    return run_module('xdp_decap', args)


def test_xdp_decap_is_idempotent_and_reports_its_addresses(topo):
    try:
        first = decap(topo, 'be1')
        assert not first.get('failed'), first.get('msg')
        assert first['changed'] and first['addresses'] == [topo.ip('be1')] and first['attach_mode'] == 'generic'
        again = decap(topo, 'be1')
        assert again['changed'] is False and again['changes'] == [] and again['prog_id'] == first['prog_id']
        more = decap(topo, 'be1', addresses=[topo.ip('be1'), SUBNET + '77'])
        assert more['changed'] and more['changes'][0] == 'decapsulate IPIP to %s, %s' % (topo.ip('be1'), SUBNET + '77')
        assert more['changes'][1:] == ['save desired state to %s' % more['persistent_state']], 'for the host agent'
        assert more['prog_id'] == first['prog_id'], 'an address change does not reload'
    finally:
        gone = run_module('xdp_decap', {'name': 'q13decap-be1', 'state': 'absent'})
    assert gone['changed'] and not os.path.exists('/sys/fs/bpf/ebpf_networking/q13decap-be1')
    assert 'prog/xdp' not in topo.node('be1').run('ip', '-d', 'link', 'show', 'eth0').stdout
    assert run_module('xdp_decap', {'name': 'q13decap-be1', 'state': 'absent'})['changed'] is False


def test_ipip_backends_answer_the_client_directly(topo):
    try:
        for b in topo.backends:
            result = decap(topo, b)
            assert not result.get('failed'), result.get('msg')
        check_direct_return(topo, 42000, 'ipip', tunnel_source=topo.ip('lb'))
        for b in topo.backends:
            assert decap(topo, b)['decapsulated'] > 0, 'every backend decapsulated'
    finally:
        for b in topo.backends:
            run_module('xdp_decap', {'name': 'q13decap-' + b, 'state': 'absent'})


def test_dsr_backend_behind_a_gateway_is_refused_and_nothing_changes(topo):
    before = deploy(topo, 'dsr')
    topo.node('lb').run('ip', 'route', 'replace', '10.213.9.0/24', 'via', topo.ip('be1'))
    try:
        result = run_module('xdp_proxy', {
            'name': NAME, 'netns': 'q13-lb', 'interface': 'eth0', 'bpf_sources': read_sources(XDP_SOURCES),
            'services': [{'vip': VIP, 'port': 80, 'forwarding': 'dsr', 'backends': ['10.213.9.7']}]})
    finally:
        topo.node('lb').run('ip', 'route', 'del', '10.213.9.0/24', check=False)
    assert result.get('failed')
    assert 'backend 10.213.9.7 is reached through gateway %s' % topo.ip('be1') in result['msg']
    assert 'use forwarding: ipip' in result['msg']
    assert 'Traceback' not in result.get('module_stderr', '')
    after = deploy(topo, 'dsr')
    assert after['changed'] is False and after['prog_id'] == before['prog_id'], 'the refused run changed nothing'


def test_ipip_tunnel_source_must_be_an_address_of_the_lb(topo):
    result = deploy(topo, 'ipip', tunnel_source='10.213.0.99')
    assert result.get('failed')
    assert 'tunnel_source 10.213.0.99 is not an address of netns:q13-lb' in result['msg']
