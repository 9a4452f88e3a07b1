# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""skb_path_trace on three namespaces in a row (dt-pa -> router dt-pr -> dt-pb): a dropped packet's
path ends at its drop, a forwarded one shows every namespace it crossed. Tracepoints only."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from conftest import read_sources, run_module
from test_skb_drop_trace import fresh_netns, routed_row, sh, udp_sender

PA, PR, PB = 'dt-pa', 'dt-pr', 'dt-pb'
SOURCES = ('skb_path.bpf.c', 'skb_path.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h')


def mac(ns, dev):
    return sh('ip', 'netns', 'exec', ns, 'cat', '/sys/class/net/%s/address' % dev).strip()


@pytest.fixture(scope='module')
def path_lab(require_root):
    """The router drops UDP to port 9999 in FORWARD and forwards the rest; neighbours are static, so no
    packet waits for ARP (a queued skb may be copied, which starts a new path)."""
    with fresh_netns(PA, PR, PB):
        routed_row(PA, PR, PB, '10.208')
        sh('ip', '-n', PA, 'neigh', 'replace', '10.208.1.1', 'lladdr', mac(PR, 'pr-in'), 'dev', 'pa0', 'nud', 'permanent')
        sh('ip', '-n', PR, 'neigh', 'replace', '10.208.2.2', 'lladdr', mac(PB, 'pb0'), 'dev', 'pr-out', 'nud',
           'permanent')
        yield


def path(check_mode=False, **args):
    args.setdefault('bpf_sources', read_sources(SOURCES))
    return run_module('skb_path_trace', args, check_mode=check_mode)


def test_a_dropped_packet_path_ends_at_its_drop(path_lab):
    result = path(namespace=PA, protocol='udp', dport='9999', max_packets=1, duration=8,
                  command=udp_sender(PA, '10.208.2.2', 9999, 1))
    assert not result.get('failed'), result.get('msg')
    assert len(result['packets']) == 1, result
    pkt = result['packets'][0]
    assert (pkt['end'], pkt['reason']) == ('drop', 'NETFILTER_DROP'), pkt
    assert pkt['location'].startswith(('nft_do_chain+', 'ipt_do_table+'))
    steps = pkt['steps']
    assert steps[-1]['step'] == 'skb:kfree_skb' and steps[-1]['netns'] == 'netns:' + PR
    assert steps[0]['netns'] == 'netns:' + PA and steps[0]['ifname'] == 'pa0'
    assert pkt['namespaces'] == ['netns:' + PA, 'netns:' + PR]
    names = [s['step'] for s in steps]
    assert 'net:net_dev_xmit' in names and 'net:netif_receive_skb' in names
    assert [s['t_us'] for s in steps] == sorted(s['t_us'] for s in steps)
    received = [s for s in steps if s['step'] == 'net:netif_receive_skb'][0]
    assert (received['ifname'], received['netns']) == ('pr-in', 'netns:' + PR)
    assert pkt['flow'].startswith('udp 10.208.1.2:') and pkt['flow'].endswith('-> 10.208.2.2:9999')
    assert result['truncated'] is False and result['changed'] is True


def test_a_forwarded_packet_shows_every_namespace(path_lab):
    result = path(src='10.208.1.2', dst='10.208.2.0/24', protocol='udp', dport='9998', max_packets=1, duration=8,
                  command=udp_sender(PA, '10.208.2.2', 9998, 1))
    assert not result.get('failed'), result.get('msg')
    pkt = result['packets'][0]
    assert pkt['namespaces'] == ['netns:' + PA, 'netns:' + PR, 'netns:' + PB], pkt
    xmit_out = [s for s in pkt['steps'] if s['step'] == 'net:net_dev_xmit' and s['ifname'] == 'pr-out']
    assert xmit_out and xmit_out[0]['netns'] == 'netns:' + PR, 'the router sent it on'
    # nobody listens on 9998 in dt-pb: it ends there, with the reason
    assert (pkt['end'], pkt['reason'], pkt['steps'][-1]['netns']) == ('drop', 'NO_SOCKET', 'netns:' + PB)


def test_max_packets_counts_what_it_did_not_follow(path_lab):
    result = path(namespace=PA, protocol='udp', dport='9999', max_packets=2, duration=8,
                  command=udp_sender(PA, '10.208.2.2', 9999, 5))
    assert len(result['packets']) == 2
    assert result['stats']['not_followed'] >= 3


def test_check_mode_compiles_and_runs_nothing(path_lab, tmp_path):
    marker = tmp_path / 'ran'
    broken = dict(read_sources(SOURCES), **{'skb_path.bpf.c': 'not C'})
    result = path(check_mode=True, command=['touch', str(marker)], bpf_sources=broken)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and not marker.exists() and result['packets'] == []


@pytest.mark.parametrize('args,message', [
    ({'max_packets': 0}, 'max_packets 0'),
    ({'namespace': 'dt-no-such'}, 'neither a running container'),
    ({'dport': '0'}, 'out of range'),
    ({'src': 'x'}, 'not an IP address'),
    ({'command': ['dt-no-such-command']}, 'was not found'),
    ({'buffer_pages': 5}, 'power of two'),
    ({'bpf_sources': {}}, 'action plugin'),
])
def test_bad_input_is_named(require_root, args, message):
    result = path(**args)
    assert result.get('failed') and message in result['msg'], result
    assert 'exception' not in result
