# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Python mirror of bpf/csum.h, for tests and for checking captured packets.

Values are the raw 16/32-bit words as the BPF program loads them from the packet (native byte
order of network-order bytes); one's complement sums do not care, as long as all agree.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

_M32 = 0xffffffff


def csum_add(csum, addend):
    res = (csum + addend) & _M32
    return (res + (1 if res < addend else 0)) & _M32


def csum_fold(csum):
    csum = (csum & 0xffff) + (csum >> 16)
    csum = (csum & 0xffff) + (csum >> 16)
    return ~csum & 0xffff


def csum_replace4(check, old, new):
    s = csum_add(~check & 0xffff, ~old & _M32)
    return csum_fold(csum_add(s, new))


def csum_replace2(check, old, new):
    s = csum_add(~check & 0xffff, ~old & 0xffff)
    return csum_fold(csum_add(s, new))


def csum_diff4(diff, old, new):
    return csum_add(csum_add(diff, ~old & _M32), new)


def csum_diff2(diff, old, new):
    return csum_add(csum_add(diff, ~old & 0xffff), new)


def csum_apply(check, diff):
    return csum_fold(csum_add(~check & 0xffff, diff))


def internet_checksum(data):
    """Reference RFC 1071 checksum over bytes, as a big-endian 16-bit value."""
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def ipv4_header_ok(header):
    return internet_checksum(header) == 0


def l4_checksum_ok(saddr, daddr, proto, segment):
    """Verify a TCP/UDP checksum with its pseudo-header (addresses as 4 bytes)."""
    pseudo = saddr + daddr + struct.pack('!BBH', 0, proto, len(segment))
    return internet_checksum(pseudo + segment) == 0
