# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.module_utils import drop_trace, inet, path_trace


def step(ts, kind, packet=1, netns=10, ifname=b'eth0', a=0, b=0, location=0, context=3, softirq=4):
    head = path_trace.STEP_HEAD.pack(ts, 0xffff888100000000, location, packet, kind, 0, a, b)
    where = drop_trace.WHERE.pack(netns, 2, ifname, 1, context, 0, softirq)
    flow = drop_trace.FLOW.pack(inet.mapped('10.0.0.1'), inet.mapped('10.0.0.2'), 0x0800, 1000, 53, 17, 4, 0)
    return head + where + flow


def assemble(raws):
    return path_trace.assemble([path_trace.decode_step(r) for r in raws], {12: 'NETFILTER_DROP'},
                               lambda a: 'f+0x%x' % a, lambda ino: 'netns:%d' % ino)


def test_layout_matches_the_c_header():
    assert path_trace.STEP_SIZE == 112  # struct path_step


def test_steps_are_ordered_and_end_at_the_drop():
    packets = assemble([step(3000, 11, netns=20, a=12, location=0x10), step(1000, 4), step(2000, 1, netns=20),
                        step(2500, 7, netns=0, ifname=b'', a=254)])
    assert len(packets) == 1
    pkt = packets[0]
    assert [s['step'] for s in pkt['steps']] == ['net:net_dev_queue', 'net:netif_receive_skb', 'fib:fib_table_lookup',
                                                 'skb:kfree_skb']
    assert [s['t_us'] for s in pkt['steps']] == [0.0, 1.0, 1.5, 2.0]
    assert (pkt['end'], pkt['reason'], pkt['location']) == ('drop', 'NETFILTER_DROP', 'f+0x10')
    assert pkt['namespaces'] == ['netns:10', 'netns:20']
    fib = pkt['steps'][2]
    assert fib['correlated'] is True and fib['table'] == 254 and fib['netns'] == 'netns:20'  # where last seen
    assert pkt['flow'] == 'udp 10.0.0.1:1000 -> 10.0.0.2:53'


def test_each_step_says_who_ran_it():
    pkt = assemble([step(1000, 4, context=1, softirq=0), step(2000, 1, netns=20, context=3, softirq=4)])[0]
    assert [(s['context'], s['softirq']) for s in pkt['steps']] == [('process', None), ('interrupt', 'NET_RX')]


def test_consumed_and_open_paths():
    packets = assemble([step(1, 4, packet=1), step(2, 12, packet=1, location=0x20), step(3, 4, packet=2)])
    assert [(p['packet'], p['end']) for p in packets] == [(1, 'consume'), (2, 'open')]
    assert packets[0]['location'] == 'f+0x20'
