# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Socket keys as bpf/sockops.bpf.c stores them and bpf/sockredir.bpf.c looks them up."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import sockmap_keys as sk


ISN_CLIENT, ISN_SERVER = 0x12345678, 0xfedcba98


def connection(client, server, client_isn=ISN_CLIENT, server_isn=ISN_SERVER, netns=4096):
    """(key stored for the server, peer key the client looks up), as bpf/sockops.bpf.c builds them at
    ACTIVE/PASSIVE_ESTABLISHED: each end's snd_nxt is its own ISN + 1, rcv_nxt the other's + 1."""
    (c_ip, c_port), (s_ip, s_port) = client, server
    server_key = sk.key_from_sock_ops(s_ip, c_ip, s_port, sk.kernel_remote_port(c_port),
                                      server_isn + 1, client_isn + 1, netns)
    client_peer = sk.peer_key_from_sock_ops(c_ip, s_ip, c_port, sk.kernel_remote_port(s_port),
                                            client_isn + 1, server_isn + 1, netns)
    return server_key, client_peer


@pytest.mark.parametrize('a,b', [(('127.0.0.1', 41234), ('127.0.0.1', 80)),
                                 (('172.30.0.6', 52718), ('172.30.0.11', 80)),
                                 (('::1', 50000), ('::1', 18080)),
                                 (('10.0.0.1', 1), ('10.0.0.2', 65535))])
def test_the_sender_finds_its_peers_key(a, b):
    """Socket A sends; the peer key in A's storage must be exactly the key sock_ops stored for B."""
    stored_for_b, looked_up_by_a = connection(a, b)
    assert stored_for_b == looked_up_by_a
    decoded = sk.decode_key(stored_for_b)
    assert (decoded['local'], decoded['remote']) == ('%s:%d' % b, '%s:%d' % a)


def test_same_loopback_tuple_in_another_namespace_is_another_key():
    """The issue's leak: the same 4-tuple on two namespaces' loopbacks, even with the same ISNs."""
    a_server, _a_peer = connection(('127.0.0.1', 45123), ('127.0.0.1', 7100), netns=4096)
    _b_server, b_peer = connection(('127.0.0.1', 45123), ('127.0.0.1', 7100), netns=8192)
    assert a_server != b_peer
    assert sk.decode_key(a_server)['netns_cookie'] == 4096


@pytest.mark.parametrize('client_isn,server_isn', [(ISN_CLIENT + 1, ISN_SERVER), (ISN_CLIENT, ISN_SERVER + 1)])
def test_same_tuple_on_other_veths_differs_by_either_isn(client_isn, server_isn):
    """Two namespace pairs with the same addresses: the key differs as soon as one ISN does."""
    a_server = connection(('10.199.0.1', 45123), ('10.199.0.2', 7100))[0]
    b_peer = connection(('10.199.0.1', 45123), ('10.199.0.2', 7100), client_isn, server_isn)[1]
    assert a_server != b_peer


def test_only_loopback_keys_carry_the_namespace():
    """A non-loopback peer may sit in another namespace (a veth away): its cookie cannot be in the key."""
    server_key, client_peer = connection(('10.199.0.1', 45123), ('10.199.0.2', 7100), netns=4096)
    assert server_key == client_peer and 'netns_cookie' not in sk.decode_key(server_key)
    assert sk.is_loopback('::ffff:127.0.0.9') and sk.is_loopback('::1') and not sk.is_loopback('10.0.0.1')


def test_remote_port_field_is_network_order_in_a_u32():
    # port 80 = 0x0050: the kernel hands it over as 0x50000000 when read as a u32 on little endian
    assert struct.pack('=I', sk.kernel_remote_port(80)) == b'\x00\x00\x00\x50'
    assert sk.ntohl(sk.kernel_remote_port(80)) == 80


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
