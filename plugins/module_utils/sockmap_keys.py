# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Python mirror of bpf/sockmap.h: socket keys, filter entries and their byte order.

The kernel hands the sock_ops program local_port in host byte order and remote_port as the
network-order 16-bit port shifted into a u32 (so ntohl() of the field is the port). A key is the
4-tuple, both ends' sequence numbers at ESTABLISHED (snd_nxt, rcv_nxt) and, for loopback addresses,
the namespace cookie. key_from_sock_ops() and peer_key_from_sock_ops() do exactly what
bpf/sockops.bpf.c does for a socket's own key and the peer key it keeps in the socket's storage,
so tests can check that the two ends of one connection meet and nothing else does.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import struct

from ansible_collections.ebpf.networking.plugins.module_utils.inet import mapped, unmapped

KEY = struct.Struct('=16s16sIIIIQ')
CIDR_KEY = struct.Struct('=I16s')
CONFIG = struct.Struct('=IIII')  # match_ports, match_cidrs, redirect, reserved
META = struct.Struct('=32s256s')
# enum sockmap_counter, in order
COUNTERS = ('sockets_added', 'sockets_skipped', 'insert_failed_full', 'insert_failed_key_taken',
            'insert_failed_busy', 'insert_failed_other', 'insert_failed_no_storage', 'msgs_redirected',
            'bytes_redirected', 'msgs_passed', 'msgs_passed_tcp_direction', 'msgs_passed_draining')
AF_INET, AF_INET6 = 2, 10


class SockmapConfigError(ValueError):
    pass


def kernel_remote_port(port):
    """remote_port as the kernel presents it in bpf_sock_ops / sk_msg_md (a little-endian host)."""
    return struct.unpack('=I', struct.pack('>I', port))[0]


def ntohl(value):
    return struct.unpack('>I', struct.pack('=I', value))[0]


def is_loopback(ip):
    addr = ipaddress.ip_address(u'%s' % ip)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def key(local_ip, local_port, remote_ip, remote_port, local_seq=0, remote_seq=0, netns=0):
    return KEY.pack(mapped(local_ip), mapped(remote_ip), local_port, remote_port, local_seq, remote_seq, netns)


def key_from_sock_ops(local_ip, remote_ip, local_port_field, remote_port_field, snd_nxt, rcv_nxt, netns_cookie):
    """What bpf/sockops.bpf.c stores a socket under."""
    return key(local_ip, local_port_field, remote_ip, ntohl(remote_port_field), snd_nxt, rcv_nxt,
               netns_cookie if is_loopback(remote_ip) else 0)


def peer_key_from_sock_ops(local_ip, remote_ip, local_port_field, remote_port_field, snd_nxt, rcv_nxt, netns_cookie):
    """The peer key bpf/sockops.bpf.c keeps in the socket's storage, which bpf/sockredir.bpf.c looks up."""
    return key(remote_ip, ntohl(remote_port_field), local_ip, local_port_field, rcv_nxt, snd_nxt,
               netns_cookie if is_loopback(remote_ip) else 0)


def decode_key(raw):
    local, remote, lport, rport, _lseq, _rseq, netns = KEY.unpack(raw)
    out = {'local': '%s:%d' % (unmapped(local), lport), 'remote': '%s:%d' % (unmapped(remote), rport)}
    if netns:
        out['netns_cookie'] = netns
    return out


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
    _local, remote, lport, rport = KEY.unpack(raw_key)[:4]
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
