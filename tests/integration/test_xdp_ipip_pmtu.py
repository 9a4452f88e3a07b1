# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Path MTU through the LB's ipip tunnel, end to end (issue 13 follow-up).

    pt-cl1 (client, MTU 1500)  --+
    pt-lb  (XDP LB, the VIP)   --+-- bridge br0 in pt-sw, 10.208.0.0/24, MTU 1500 everywhere
    pt-be1 (backend, xdp_decap) --+

The client uploads: its segments are full-size (1500 bytes), 20 too many for the tunnel. The LB must
answer the first with ICMP "fragmentation needed" (MTU 1480) so the client's kernel lowers its path
MTU and the upload completes; without it the connection stalls (no PMTU blackhole detection by default).
Both attach modes; the senders have no TSO (tx checksum offload off), so the LB sees packets, not GSO
aggregates (those are test_xdp_forwarding.py's aggregate case).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sys

import pytest

from conftest import HERE, XDP_SOURCES, read_sources, run_module
from lab_topology import Topology

NAME = 'pt_pmtu'
DECAP = 'pt_decap'
SUBNET = '10.208.0.'
VIP = SUBNET + '50'
PORT = 5001
UPLOAD = os.path.join(HERE, 'tcp_upload.py')


@pytest.fixture(scope='module')
def topo(require_root):
    pytest.importorskip('bcc')
    # native XDP on veth needs the senders' tx checksum offload off (xdp_proxy's mode option)
    lab = Topology(clients=1, backends=1, checksum_offload=False, prefix='pt-', subnet=SUBNET).up()
    try:
        lab.node('lb').run('ip', 'addr', 'add', VIP + '/32', 'dev', 'eth0')
        backend = lab.node('be1')
        backend.hold_vip(VIP)
        backend.spawn(sys.executable, UPLOAD, 'serve', '--port', str(PORT))
        decap = run_module('xdp_decap', {'name': DECAP, 'netns': 'pt-be1', 'interface': 'eth0',
                                         'bpf_sources': read_sources(['xdp_decap.bpf.c'])})
        assert not decap.get('failed'), decap.get('msg')
        yield lab
    finally:
        run_module('xdp_proxy', {'name': NAME, 'state': 'absent'})
        run_module('xdp_decap', {'name': DECAP, 'state': 'absent'})
        lab.down()


def deploy(lab, mode='native'):
    svc = {'vip': VIP, 'port': PORT, 'forwarding': 'ipip', 'tunnel_source': lab.ip('lb'), 'backends': [lab.ip('be1')]}
    return run_module('xdp_proxy', {'name': NAME, 'netns': 'pt-lb', 'interface': 'eth0', 'mode': mode, 'services': [svc],
                                    'bpf_sources': read_sources(XDP_SOURCES)})


@pytest.mark.parametrize('mode', ['native', 'generic'])
def test_a_client_uploading_full_size_segments_learns_the_tunnel_mtu(topo, mode):
    result = deploy(topo, mode)
    assert not result.get('failed'), result.get('msg')
    assert result['attach_mode'] == mode
    client = topo.node('cl1')
    client.run('ip', 'route', 'flush', 'cache')
    assert 'mtu' not in client.run('ip', 'route', 'get', VIP).stdout, 'no path MTU learnt before the upload'
    upload = json.loads(client.run(sys.executable, UPLOAD, 'send', '--host', VIP, '--port', str(PORT),
                                   '--mib', '5', '--timeout', '8').stdout)
    assert 'error' not in upload, upload
    assert upload['server_sha256'] == upload['sent_sha256']
    assert upload['seconds'] < 5, 'the first segment was answered at once, no stall: %s' % upload
    assert 'mtu 1480' in client.run('ip', 'route', 'get', VIP).stdout, 'the client cached the tunnel MTU'
    counters = deploy(topo, mode)['global_counters']
    assert counters['icmp_too_big_sent'] >= 1
    assert counters['encap_too_big_dropped'] == counters['icmp_too_big_sent'], 'every DF packet was answered'
