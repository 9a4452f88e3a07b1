# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import btf as btf_mod
from ansible_collections.ebpf.networking.plugins.module_utils import drop_trace as dt
from ansible_collections.ebpf.networking.plugins.module_utils import inet
from ansible_collections.ebpf.networking.plugins.module_utils import ksym

FORMAT = ('print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, '
          '{ 3, "NO_SOCKET" }, { 12, "NETFILTER_DROP" }, { 130, "MAX" })')


def test_reason_names_come_from_the_format():
    assert dt.reasons_from_format(FORMAT) == {2: 'NOT_SPECIFIED', 3: 'NO_SOCKET', 12: 'NETFILTER_DROP', 130: 'MAX'}


def test_reason_mask_by_name_and_number():
    names = dt.reasons_from_format(FORMAT)
    mask = dt.reason_mask(['NETFILTER_DROP', 'skb_drop_reason_no_socket', '130'], names)
    assert mask == [(1 << 12) | (1 << 3), 0, 1 << 2, 0]
    with pytest.raises(dt.DropTraceError, match='unknown drop reason'):
        dt.reason_mask(['NOT_A_REASON'], names)
    with pytest.raises(dt.DropTraceError, match='only 0-255'):
        dt.reason_mask(['300'], names)


def event(reason=12, comm=b'curl', src='172.30.0.5', dst='172.30.0.11', sport=40000, dport=80, family=4, context=1,
          netns=4026531840, ifname=b'eth0', fragment=0, frames=(0xffffffff81000010, 0xffffffff81000020), stack_bytes=None,
          softirq=0):
    head = dt.EVENT_HEAD.pack(123, 0xffffffff81000000, 9, 0xffff888100000000, 42, 43, reason,
                              16 if stack_bytes is None else stack_bytes, comm)
    where = dt.WHERE.pack(netns, 7, ifname, 1, context, 1, softirq)
    flow = dt.FLOW.pack(inet.mapped(src), inet.mapped(dst), 0x0800, sport, dport, 6 if family else 0, family, fragment)
    stack = struct.pack('=32Q', *(list(frames) + [0] * (32 - len(frames))))
    return head + where + flow + stack


def test_layouts_match_the_c_headers():
    assert dt.FILTER.size == 136   # struct skb_filter, 8-byte aligned
    assert dt.WHERE.size == 28     # struct where
    assert dt.FLOW.size == 44      # struct skb_flow
    assert dt.EVENT_FIXED == 136 and len(event()) == 392  # struct drop_event with 32 frames


def test_decode_event_where_flow_and_stack():
    ev = dt.decode_event(event(), {12: 'NETFILTER_DROP'})
    assert ev['reason'] == 'NETFILTER_DROP' and ev['protocol'] == 'tcp'
    assert (ev['src'], ev['sport'], ev['dst'], ev['dport']) == ('172.30.0.5', 40000, '172.30.0.11', 80)
    assert (ev['netns_inode'], ev['ifindex'], ev['ifname'], ev['interface_from']) == (4026531840, 7, 'eth0', 'device')
    assert ev['context'] == 'process' and ev['process'] == {'pid': 42, 'tid': 43, 'comm': 'curl', 'cgroup_id': 9}
    assert ev['stack_addrs'] == [0xffffffff81000010, 0xffffffff81000020] and ev['stack_error'] is None
    assert dt.decode_event(event(reason=99), {})['reason'] == '99'
    assert dt.decode_event(event(src='fd00::1', dst='fd00::2'), {})['src'] == 'fd00::1'
    assert 'src' not in dt.decode_event(event(family=0), {})


def test_softirq_drops_carry_no_process_and_name_the_softirq():
    ev = dt.decode_event(event(context=3, comm=b'unrelated', softirq=4), {})
    assert ev['context'] == 'interrupt' and ev['process'] is None and ev['softirq'] == 'NET_RX'
    assert dt.decode_event(event(context=3, softirq=2), {})['softirq'] == 'TIMER'
    assert dt.decode_event(event(context=3, softirq=0), {})['softirq'] is None  # a hardirq
    assert dt.decode_event(event(context=3, softirq=12), {})['softirq'] == 'vector 11'
    assert dt.decode_event(event(), {})['softirq'] is None


def test_softirq_names_are_the_running_kernels():
    path = '/sys/kernel/tracing/events/irq/softirq_entry/format'
    try:
        with open(path) as f:
            text = f.read()
    except (IOError, OSError):
        pytest.skip('no tracefs here: %s' % path)
    assert dt.reasons_from_format(text) == dict(enumerate(dt.SOFTIRQS))


def test_later_fragments_have_no_ports():
    ev = dt.decode_event(event(fragment=2), {})
    assert ev['fragment'] == 'later' and 'sport' not in ev and 'dport' not in ev
    first = dt.decode_event(event(fragment=1), {})
    assert first['fragment'] == 'first' and first['dport'] == 80


def test_failed_stack_is_reported():
    ev = dt.decode_event(event(stack_bytes=-17), {})
    assert ev['stack_addrs'] == [] and ev['stack_error'] == -17


def test_filter_packs_cidr_ports_and_names():
    raw = dt.pack_filter(reasons=[1 << 12, 0, 0, 0], netns=5, ifindex=3, sport=(1000, 2000), dport=(80, 80),
                         l4proto=17, src=dt.parse_cidr('10.1.0.0/16', 'src'), comm='curl', ifname='eth0')
    f = dt.FILTER.unpack(raw)
    assert f[0] == 1 << 12 and f[5:8] == (0, 5, 3)
    assert f[8:12] == (1000, 2000, 80, 80)
    assert f[12:17] == (17, 96 + 16, 0, 1, 1)
    assert f[17].rstrip(b'\0') == b'curl' and f[18].rstrip(b'\0') == b'eth0'
    assert f[19] == inet.mapped('10.1.0.0')


@pytest.mark.parametrize('text,expected', [('10.0.0.5', (inet.mapped('10.0.0.5'), 128)),
                                           ('10.0.0.9/24', (inet.mapped('10.0.0.0'), 120)),
                                           ('fd00::1/64', (inet.mapped('fd00::'), 64))])
def test_parse_cidr(text, expected):
    assert dt.parse_cidr(text, 'src') == expected


@pytest.mark.parametrize('bad', ['10.0.0.300', '10.0.0.0/33', 'host', ''])
def test_parse_cidr_refuses(bad):
    with pytest.raises(dt.DropTraceError, match='not an IP address or CIDR'):
        dt.parse_cidr(bad, 'src')


@pytest.mark.parametrize('value,expected', [(80, (80, 80)), ('8000-8080', (8000, 8080)), (' 1 - 65535 ', (1, 65535))])
def test_parse_ports(value, expected):
    assert dt.parse_ports(value, 'dport') == expected


@pytest.mark.parametrize('bad,message', [('0', 'out of range'), ('90-80', 'out of range'), ('70000', 'out of range'),
                                         ('http', 'not a port'), ('1,2', 'not a port')])
def test_parse_ports_refuses(bad, message):
    with pytest.raises(dt.DropTraceError, match=message):
        dt.parse_ports(bad, 'dport')


def test_summary_groups_by_reason_and_location_not_stack():
    rec = {'reason': 'NETFILTER_DROP', 'location': 'nft_do_chain+0x3e8', 'stack': ['a+0x1', 'b+0x2'],
           'process': {'comm': 'curl'}, 'context': 'process', 'netns': {'name': 'netns:x'}, 'ifname': 'eth0',
           'ifindex': 2, 'protocol': 'tcp', 'src': '1.1.1.1', 'sport': 1, 'dst': '2.2.2.2', 'dport': 80}
    other_stack = dict(rec, sport=2, stack=['a+0x1', 'c+0x3'])
    softirq = dict(rec, location='tcp_v4_rcv+0x10', reason='NO_SOCKET', process=None, context='interrupt',
                   softirq='NET_RX')
    summary = dt.summarize([rec, other_stack, dict(rec, sport=3), softirq])
    assert [g['count'] for g in summary] == [3, 1]
    top = summary[0]
    assert top['reason'] == 'NETFILTER_DROP' and top['processes'] == ['curl']
    assert top['namespaces'] == ['netns:x'] and top['interfaces'] == ['eth0 (2)']
    assert top['stacks'] == [{'frames': ['a+0x1', 'b+0x2'], 'count': 2}, {'frames': ['a+0x1', 'c+0x3'], 'count': 1}]
    assert top['flows'][:2] == ['tcp 1.1.1.1:1 -> 2.2.2.2:80', 'tcp 1.1.1.1:2 -> 2.2.2.2:80']
    assert summary[1]['processes'] == [] and summary[1]['contexts'] == ['interrupt']
    assert summary[1]['softirqs'] == ['NET_RX'] and top['softirqs'] == []


def test_stack_starts_at_the_dropping_function():
    stack = ['bpf_trace_run4+0xfc', 'sk_skb_reason_drop+0x90', 'nft_do_chain+0x3e8', 'nf_hook_slow+0x43']
    assert dt.from_location(stack, 'nft_do_chain+0x3e8') == stack[2:]
    assert dt.from_location(stack, 'elsewhere+0x1') == stack


def test_counter_totals_sum_cpus():
    assert dt.counter_totals([[1, 2], [1, 0], [1, 0], [0, 0], [0, 1]]) == {
        'seen': 3, 'matched': 1, 'submitted': 1, 'submit_failed': 0, 'no_stack': 1}


KALLSYMS = """ffffffff81000000 T _stext
ffffffff81f65700 T nft_do_chain
ffffffff81f66000 t nft_do_chain_ipv4
ffffffff81f66100 d some_data
ffffffffc0a00000 t mod_func\t[nf_tables]
"""


def test_kallsyms_lookup_and_format():
    ks = ksym.Kallsyms(text=KALLSYMS)
    assert ks.format(0xffffffff81f657b8) == 'nft_do_chain+0xb8'
    assert ks.format(0xffffffff81f66010) == 'nft_do_chain_ipv4+0x10'
    assert ks.format(0xffffffffc0a00004) == 'mod_func+0x4 [nf_tables]'
    assert ksym.parse_location(ks.format(0xffffffffc0a00004)) == ('mod_func', 4, 'nf_tables')
    assert ks.lookup(0x1000) is None


def test_kallsyms_without_addresses_says_why():
    with pytest.raises(ksym.SymbolError, match='as root'):
        ksym.Kallsyms(text='0000000000000000 T _stext\n')


@pytest.mark.parametrize('text,expected', [('nft_do_chain+0x3e8', ('nft_do_chain', 0x3e8)),
                                           ('ip_local_out+28', ('ip_local_out', 28)),
                                           ('tcp_connect+0x4e6/0x6a0', ('tcp_connect', 0x4e6)),
                                           ('0xffffffff81000000', None), ('garbage', None)])
def test_parse_func_offset(text, expected):
    assert ksym.parse_func_offset(text) == expected


def _btf_blob():
    """A BTF with: int, struct sk_buff { int len; union { struct { short a; short network_header; }; }; void *head; },
    enum skb_drop_reason { SKB_DROP_REASON_X = 5 }."""
    strings = b'\0int\0sk_buff\0len\0a\0network_header\0head\0skb_drop_reason\0SKB_DROP_REASON_X\0short\0'

    def off(name):
        return strings.index(name.encode() + b'\0')
    types = b''
    types += struct.pack('<III', off('int'), 1 << 24, 4) + struct.pack('<I', 32)            # 1 int
    types += struct.pack('<III', off('short'), 1 << 24, 2) + struct.pack('<I', 16)          # 2 short
    types += struct.pack('<III', 0, 4 << 24 | 2, 4)                                          # 3 anon struct
    types += struct.pack('<III', off('a'), 2, 0) + struct.pack('<III', off('network_header'), 2, 16)
    types += struct.pack('<III', 0, 5 << 24 | 1, 4) + struct.pack('<III', 0, 3, 0)           # 4 anon union
    types += struct.pack('<III', 0, 2 << 24, 0)                                              # 5 void *
    types += struct.pack('<III', off('sk_buff'), 4 << 24 | 3, 16)                            # 6 struct sk_buff
    types += struct.pack('<III', off('len'), 1, 0) + struct.pack('<III', 0, 4, 32)
    types += struct.pack('<III', off('head'), 5, 64)
    types += struct.pack('<III', off('skb_drop_reason'), 6 << 24 | 1, 4) + struct.pack('<Ii', off('SKB_DROP_REASON_X'), 5)
    header = struct.pack('<HBBIIIII', 0xeB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_btf_member_offsets_through_anonymous_members():
    b = btf_mod.Btf(_btf_blob())
    assert b.member_offset('sk_buff', 'len') == (0, 4)
    assert b.member_offset('sk_buff', 'network_header') == (6, 2)
    assert b.member_offset('sk_buff', 'head') == (8, 8)
    assert dt.reasons_from_btf(b) == {5: 'X'}
    with pytest.raises(btf_mod.BtfError, match='no member'):
        b.member_offset('sk_buff', 'nope')
    with pytest.raises(btf_mod.BtfError, match='not BTF'):
        btf_mod.Btf(b'\0' * 32)


def test_btf_nested_member_paths():
    b = btf_mod.Btf(_btf_blob())
    assert b.path_offset('sk_buff', 'network_header') == (6, 2)
    with pytest.raises(btf_mod.BtfError, match='no member'):
        b.path_offset('sk_buff', 'len.nope')
