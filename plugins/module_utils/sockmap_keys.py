# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Python mirror of bpf/sockmap.h: socket keys, filter entries and their byte order.

The kernel hands both programs local_port in host byte order and remote_port as the network-order
16-bit port shifted into a u32 (so ntohl() of the field is the port). key_from_sock_ops() and
peer_key_from_sk_msg() do exactly what the two BPF programs do with those fields, so tests can
check that they meet.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import struct

from ansible_collections.ebpf.networking.plugins.module_utils.inet import mapped, unmapped

KEY = struct.Struct('=16s16sII')
CIDR_KEY = struct.Struct('=I16s')
CONFIG = struct.Struct('=II')
META = struct.Struct('=32s256s')
COUNTERS = ('sockets_added', 'sockets_skipped', 'msgs_redirected', 'bytes_redirected', 'msgs_passed')
AF_INET, AF_INET6 = 2, 10


class SockmapConfigError(ValueError):
    pass


def kernel_remote_port(port):
    """remote_port as the kernel presents it in bpf_sock_ops / sk_msg_md (a little-endian host)."""
    return struct.unpack('=I', struct.pack('>I', port))[0]


def ntohl(value):
    return struct.unpack('>I', struct.pack('=I', value))[0]


def key(local_ip, local_port, remote_ip, remote_port):
    return KEY.pack(mapped(local_ip), mapped(remote_ip), local_port, remote_port)


def key_from_sock_ops(local_ip, remote_ip, local_port_field, remote_port_field):
    """What bpf/sockops.bpf.c stores for a socket."""
    return KEY.pack(mapped(local_ip), mapped(remote_ip), local_port_field, ntohl(remote_port_field))


def peer_key_from_sk_msg(local_ip, remote_ip, local_port_field, remote_port_field):
    """What bpf/sockredir.bpf.c looks up when the socket (local, remote) sends: its peer's key."""
    return KEY.pack(mapped(remote_ip), mapped(local_ip), ntohl(remote_port_field), local_port_field)


def decode_key(raw):
    local, remote, lport, rport = KEY.unpack(raw)
    return {'local': '%s:%d' % (unmapped(local), lport), 'remote': '%s:%d' % (unmapped(remote), rport)}


def normalize_ports(ports):
    out = set()
    for p in ports or []:
        try:
            port = int(p)
        except (TypeError, ValueError):
            raise SockmapConfigError('port %r is not a number' % (p,))
        if not 1 <= port <= 65535:
            raise SockmapConfigError('port %d is out of range: use 1-65535' % port)
        out.add(port)
    return sorted(out)


def normalize_cidrs(cidrs):
    out = set()
    for c in cidrs or []:
        try:
            net = ipaddress.ip_network(u'%s' % c, strict=False)
        except ValueError as e:
            raise SockmapConfigError('cidr %r is invalid: %s (e.g. 127.0.0.0/8 or fd00::/64)' % (c, e))
        out.add(str(net))
    return sorted(out, key=lambda n: (ipaddress.ip_network(n).version, ipaddress.ip_network(n)))


def cidr_key(cidr):
    net = ipaddress.ip_network(u'%s' % cidr)
    prefix = net.prefixlen + (96 if net.version == 4 else 0)
    return CIDR_KEY.pack(prefix, mapped(net.network_address))


def cidr_from_key(raw):
    prefix, addr = CIDR_KEY.unpack(raw)
    ip6 = ipaddress.IPv6Address(addr)
    if ip6.ipv4_mapped is not None:
        return str(ipaddress.ip_network('%s/%d' % (ip6.ipv4_mapped, prefix - 96)))
    return str(ipaddress.ip_network('%s/%d' % (ip6, prefix)))


def socket_matches(raw_key, ports, cidrs):
    """Does a socket key pass the filters (as the sock_ops program decides)?"""
    local, remote, lport, rport = KEY.unpack(raw_key)
    if ports and lport not in ports and rport not in ports:
        return False
    if cidrs:
        addr = ipaddress.IPv6Address(remote)
        v4 = addr.ipv4_mapped
        for c in cidrs:
            net = ipaddress.ip_network(c)
            if (v4 is not None and net.version == 4 and v4 in net) or (net.version == 6 and addr in net):
                return True
        return False
    return True
