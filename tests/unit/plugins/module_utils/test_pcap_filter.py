# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import pcap_filter as pf

# tcpdump -ddd -y RAW 'udp dst port 9999' (tcpdump 4.99, libpcap 1.10 on Debian 12): IPv6, then IPv4
UDP_9999 = """19
48 0 0 0
84 0 0 240
21 0 4 96
48 0 0 6
21 0 13 17
40 0 0 42
21 10 11 9999
48 0 0 0
84 0 0 240
21 0 8 64
48 0 0 9
21 0 6 17
40 0 0 6
69 4 0 8191
177 0 0 0
72 0 0 2
21 0 1 9999
6 0 0 262144
6 0 0 0
"""


def test_parse_and_translate_a_real_program():
    insns = pf.parse_ddd(UDP_9999)
    assert len(insns) == 19 and insns[0] == (48, 0, 0, 0)
    c = pf.translate(insns)
    assert 'L0: if (pcap_load(pkt, snap, 0u, 1, &tmp)) return 0; A = tmp;' in c       # ldb [0]
    assert 'L1: A = A & 240u;' in c                                                  # and #0xf0
    assert 'L2: if (A == 96u) goto L3; else goto L7;' in c                           # jeq #0x60 (IPv6)
    assert 'L5: if (pcap_load(pkt, snap, 42u, 2, &tmp)) return 0; A = tmp;' in c     # ldh [42]
    assert 'L13: if ((A & 8191u)) goto L18; else goto L14;' in c                     # jset #0x1fff
    assert 'L14: if (pcap_load(pkt, snap, 0u, 1, &tmp)) return 0; X = (tmp & 0xf) << 2;' in c  # ldxb 4*([0]&0xf)
    assert 'L15: if (pcap_load(pkt, snap, X + 2u, 2, &tmp)) return 0; A = tmp;' in c  # ldh [x+2]
    assert 'L17: return 1;' in c and 'L18: return 0;' in c
    assert c.startswith('static __always_inline int pcap_filter_match(')


def test_division_by_zero_rejects():
    c = pf.translate([(0x3c, 0, 0, 0), (0x06, 0, 0, 1)])  # div x; ret #1
    assert 'L0: if (X == 0) return 0; A = A / X;' in c


@pytest.mark.parametrize('insns,message', [([(0x15, 5, 0, 1), (0x06, 0, 0, 0)], 'outside the program'),
                                           ([(0x61, 0, 0, 20)], 'not supported'),
                                           ([(0x02, 0, 0, 16)], 'out of range')])
def test_bad_programs_are_refused(insns, message):
    with pytest.raises(pf.PcapFilterError, match=message):
        pf.translate(insns)


def test_unparsable_output_and_errors_are_named():
    with pytest.raises(pf.PcapFilterError, match='unexpected tcpdump'):
        pf.parse_ddd('2\n1 2 3\n')
    with pytest.raises(pf.PcapFilterError, match='empty'):
        pf.compile_expression('  ')

    def failing(argv, **_kw):
        return subprocess.CompletedProcess(argv, 1, '', 'tcpdump: syntax error in filter expression\n')
    with pytest.raises(pf.PcapFilterError, match='does not compile'):
        pf.compile_expression('udp portt 1', run=failing)

    def missing(argv, **_kw):
        raise OSError(2, 'No such file or directory')
    with pytest.raises(pf.PcapFilterError, match='tcpdump'):
        pf.compile_expression('udp', run=missing)
