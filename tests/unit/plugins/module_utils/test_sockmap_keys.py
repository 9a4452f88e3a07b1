# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Socket keys as bpf/sockops.bpf.c stores them and bpf/sockredir.bpf.c looks them up."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import sockmap_keys as sk


@pytest.mark.parametrize('a,b', [(('127.0.0.1', 41234), ('127.0.0.1', 80)),
                                 (('172.30.0.6', 52718), ('172.30.0.11', 80)),
                                 (('::1', 50000), ('::1', 18080)),
                                 (('10.0.0.1', 1), ('10.0.0.2', 65535))])
def test_the_sender_finds_its_peers_key(a, b):
    """Socket A sends; sk_msg on A must build exactly the key sock_ops stored for socket B."""
    (a_ip, a_port), (b_ip, b_port) = a, b
    stored_for_b = sk.key_from_sock_ops(b_ip, a_ip, b_port, sk.kernel_remote_port(a_port))
    looked_up_by_a = sk.peer_key_from_sk_msg(a_ip, b_ip, a_port, sk.kernel_remote_port(b_port))
    assert stored_for_b == looked_up_by_a
    assert sk.decode_key(stored_for_b) == {'local': '%s:%d' % (b_ip, b_port), 'remote': '%s:%d' % (a_ip, a_port)}


def test_remote_port_field_is_network_order_in_a_u32():
    # port 80 = 0x0050: the kernel hands it over as 0x50000000 when read as a u32 on little endian
    assert struct.pack('=I', sk.kernel_remote_port(80)) == b'\x00\x00\x00\x50'
    assert sk.ntohl(sk.kernel_remote_port(80)) == 80


def test_the_seeds_htons_of_local_port_would_not_match():
    """The reference post builds dport = bpf_htons(local_port) in sk_msg but sport = bpf_htonl(local_port)
    in sock_ops: for any port the two differ, so its redirect would never find the peer."""
    port = 80
    htons = struct.unpack('=H', struct.pack('>H', port))[0]
    htonl = struct.unpack('=I', struct.pack('>I', port))[0]
    assert htons != htonl


def test_ipv4_and_mapped_ipv6_give_the_same_key():
    assert sk.key('127.0.0.1', 1, '127.0.0.2', 2) == sk.key('::ffff:127.0.0.1', 1, '::ffff:127.0.0.2', 2)


def test_filters_normalize_and_match():
    assert sk.normalize_ports([80, '443', 80]) == [80, 443]
    assert sk.normalize_cidrs(['10.1.2.3/8', 'fd00::1/64']) == ['10.0.0.0/8', 'fd00::/64']
    key = sk.key('127.0.0.1', 5000, '10.9.9.9', 80)
    assert sk.socket_matches(key, [80], [])
    assert not sk.socket_matches(key, [443], [])
    assert sk.socket_matches(key, [], ['10.0.0.0/8'])
    assert not sk.socket_matches(key, [], ['192.168.0.0/16'])
    assert sk.cidr_from_key(sk.cidr_key('10.0.0.0/8')) == '10.0.0.0/8'
    assert sk.cidr_from_key(sk.cidr_key('fd00::/64')) == 'fd00::/64'
    assert struct.unpack('=I', sk.cidr_key('10.0.0.0/8')[:4])[0] == 104


@pytest.mark.parametrize('bad,message', [([0], 'out of range'), ([70000], 'out of range'), (['http'], 'not a number')])
def test_bad_ports_are_named(bad, message):
    with pytest.raises(sk.SockmapConfigError, match=message):
        sk.normalize_ports(bad)


def test_bad_cidr_is_named():
    with pytest.raises(sk.SockmapConfigError, match='invalid'):
        sk.normalize_cidrs(['10.0.0.0/33'])
