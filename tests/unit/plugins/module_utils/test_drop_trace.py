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


def event(reason=12, comm=b'curl', src='172.30.0.5', dst='172.30.0.11', sport=40000, dport=80, stack=7, family=4):
    return dt.EVENT.pack(123, 0xffffffff81000000, 1, 42, 43, reason, stack, 0x0800, sport, dport, 6, family,
                         inet.mapped(src), inet.mapped(dst), comm)


def test_decode_event():
    ev = dt.decode_event(event(), {12: 'NETFILTER_DROP'})
    assert ev['reason'] == 'NETFILTER_DROP' and ev['comm'] == 'curl' and ev['protocol'] == 'tcp'
    assert (ev['src'], ev['sport'], ev['dst'], ev['dport']) == ('172.30.0.5', 40000, '172.30.0.11', 80)
    assert dt.decode_event(event(reason=99), {})['reason'] == '99'
    v6 = dt.decode_event(event(src='fd00::1', dst='fd00::2'), {})
    assert v6['src'] == 'fd00::1'
    assert 'src' not in dt.decode_event(event(family=0), {})


def test_event_layout_matches_the_c_header():
    assert dt.EVENT.size == 96  # struct drop_event in bpf/skb_drop.h, 8-byte aligned


def test_summary_groups_by_reason_location_and_stack():
    rec = {'reason': 'NETFILTER_DROP', 'location': 'nft_do_chain+0x3e8', 'stack': ['a+0x1', 'b+0x2'], 'comm': 'curl',
           'protocol': 'tcp', 'src': '1.1.1.1', 'sport': 1, 'dst': '2.2.2.2', 'dport': 80}
    other = dict(rec, location='tcp_v4_rcv+0x10', reason='NO_SOCKET', comm='swapper/0')
    summary = dt.summarize([rec, dict(rec, sport=2), other])
    assert [g['count'] for g in summary] == [2, 1]
    assert summary[0]['reason'] == 'NETFILTER_DROP' and summary[0]['processes'] == ['curl']
    assert summary[0]['flows'] == ['tcp 1.1.1.1:1 -> 2.2.2.2:80', 'tcp 1.1.1.1:2 -> 2.2.2.2:80']


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
