# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incremental updates of bpf/csum.h (mirrored in checksum.py) against full recomputation."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import random
import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import checksum


def ip_header(src, dst, proto=6, length=60):
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, length, random.randint(0, 0xffff), 0x4000, 64, proto, 0, src, dst)
    csum = checksum.internet_checksum(hdr)
    return hdr[:10] + struct.pack('!H', csum) + hdr[12:]


def tcp_segment(src, dst, sport, dport, payload):
    seg = struct.pack('!HHIIBBHHH', sport, dport, random.getrandbits(32), random.getrandbits(32), 0x50, 0x18,
                      65535, 0, 0) + payload
    pseudo = src + dst + struct.pack('!BBH', 0, 6, len(seg))
    csum = checksum.internet_checksum(pseudo + seg)
    return seg[:16] + struct.pack('!H', csum) + seg[18:]


def load16(raw):
    """A 16-bit field as the BPF program loads it on a little-endian host."""
    return struct.unpack('<H', raw)[0]


def load32(raw):
    return struct.unpack('<I', raw)[0]


def store16(value):
    return struct.pack('<H', value)


def rand_ip():
    return struct.pack('!I', random.getrandbits(32))


@pytest.mark.parametrize('seed', range(200))
def test_rewrite_keeps_ip_and_tcp_checksums_valid(seed):
    random.seed(seed)
    src, dst, nsrc, ndst = rand_ip(), rand_ip(), rand_ip(), rand_ip()
    sport, dport, nsport, ndport = [random.randint(1, 65535) for dummy in range(4)]
    payload = bytes(random.getrandbits(8) for dummy in range(random.randint(0, 41)))
    seg = tcp_segment(src, dst, sport, dport, payload)
    ip = ip_header(src, dst, length=20 + len(seg))

    # what xdp_proxy.bpf.c does: L4 first (pseudo-header), then the IP header
    check = load16(seg[16:18])
    check = checksum.csum_replace4(check, load32(src), load32(nsrc))
    check = checksum.csum_replace4(check, load32(dst), load32(ndst))
    check = checksum.csum_replace2(check, load16(seg[0:2]), load16(struct.pack('!H', nsport)))
    check = checksum.csum_replace2(check, load16(seg[2:4]), load16(struct.pack('!H', ndport)))
    new_seg = struct.pack('!HH', nsport, ndport) + seg[4:16] + store16(check) + seg[18:]

    ip_check = load16(ip[10:12])
    ip_check = checksum.csum_replace4(ip_check, load32(src), load32(nsrc))
    ip_check = checksum.csum_replace4(ip_check, load32(dst), load32(ndst))
    new_ip = ip[:10] + store16(ip_check) + nsrc + ndst

    assert checksum.ipv4_header_ok(new_ip)
    assert checksum.l4_checksum_ok(nsrc, ndst, 6, new_seg)


def test_reference_checksum_matches_rfc1071_example():
    # RFC 1071 section 3 example words
    data = bytes.fromhex('0001f203f4f5f6f7')
    assert checksum.internet_checksum(data) == (~0xddf2 & 0xffff)


def test_fold_and_add_carry():
    assert checksum.csum_add(0xffffffff, 1) == 1
    assert checksum.csum_fold(0x0001ffff) == (~0x0001 & 0xffff)


def test_header_with_wrong_checksum_is_detected():
    ip = ip_header(rand_ip(), rand_ip())
    broken = ip[:10] + b'\x00\x00' + ip[12:]
    assert not checksum.ipv4_header_ok(broken)


@pytest.mark.parametrize('seed', range(300))
def test_one_pass_rewrite_with_ttl_keeps_ip_and_tcp_checksums_valid(seed):
    """lb_rewrite's one-pass form: the address change summed once, applied to the IP and TCP checksums,
    with the ports (TCP) and the TTL decrement (IP) added to each."""
    random.seed(seed)
    src, dst, nsrc, ndst = rand_ip(), rand_ip(), rand_ip(), rand_ip()
    if seed % 3 == 0:
        nsrc, ndst = src, dst  # only ports change: the address diff sums to nothing
    sport, dport, nsport, ndport = [random.randint(1, 65535) for dummy in range(4)]
    payload = bytes(random.getrandbits(8) for dummy in range(random.randint(0, 41)))
    seg = tcp_segment(src, dst, sport, dport, payload)
    ttl = random.randint(2, 255)
    ip = ip_header(src, dst, length=20 + len(seg))
    ip = ip[:8] + bytes([ttl]) + ip[9:10] + b'\0\0' + ip[12:]
    ip = ip[:10] + struct.pack('!H', checksum.internet_checksum(ip)) + ip[12:]

    addr_diff = checksum.csum_diff4(checksum.csum_diff4(0, load32(src), load32(nsrc)), load32(dst), load32(ndst))
    l4_diff = checksum.csum_diff2(checksum.csum_diff2(addr_diff, load16(seg[0:2]), load16(struct.pack('!H', nsport))),
                                  load16(seg[2:4]), load16(struct.pack('!H', ndport)))
    check = checksum.csum_apply(load16(seg[16:18]), l4_diff)
    new_seg = struct.pack('!HH', nsport, ndport) + seg[4:16] + store16(check) + seg[18:]
    ip_diff = checksum.csum_diff2(addr_diff, load16(bytes([ttl, 6])), load16(bytes([ttl - 1, 6])))
    new_ip = ip[:8] + bytes([ttl - 1]) + ip[9:10] + store16(checksum.csum_apply(load16(ip[10:12]), ip_diff)) + nsrc + ndst

    assert checksum.ipv4_header_ok(new_ip)
    assert checksum.l4_checksum_ok(nsrc, ndst, 6, new_seg)
    # the same values as the field-by-field chain it replaces (up to the one's complement zero)
    chained = checksum.csum_replace2(checksum.csum_replace2(checksum.csum_replace4(checksum.csum_replace4(
        load16(seg[16:18]), load32(src), load32(nsrc)), load32(dst), load32(ndst)),
        load16(seg[0:2]), load16(struct.pack('!H', nsport))), load16(seg[2:4]), load16(struct.pack('!H', ndport)))
    assert check % 0xffff == chained % 0xffff
