# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""16-byte addresses as the BPF programs keep them: IPv6, with IPv4 mapped as ::ffff:a.b.c.d."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress


def mapped(ip):
    """16-byte address; IPv4 as ::ffff:a.b.c.d."""
    addr = ipaddress.ip_address(u'%s' % ip)
    if addr.version == 4:
        return b'\0' * 10 + b'\xff\xff' + addr.packed
    return addr.packed


def unmapped(raw):
    """Text form of a 16-byte address, IPv4 for a mapped one."""
    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
