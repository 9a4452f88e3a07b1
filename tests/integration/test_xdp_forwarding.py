# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_proxy's forwarding modes dsr and ipip (issue 13), packet by packet.

The bench and frames are the packet harness's (xdp_harness.py, BPF_PROG_TEST_RUN + scapy): dsr must
change the Ethernet header only, ipip must put an exact outer IPv4 header in front of the untouched
client packet, and nat services next to them must stay as they were.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import time

import pytest

from conftest import COLLECTION
from scapy.layers.inet import IPOption_RR

from xdp_harness import (
    ICMP, IP, TCP, Ether, Harness, LB_IP, VIP, assert_checksums, client, from_client, icmp_error, lan_backend,
    mac_of, on_one_cpu, srv_backend)

xdp_lb_maps = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps')
xdp_testbed = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.xdp_testbed')

NETNS = 'q13-fw'
LB_SRV_IP = xdp_testbed.SRV + str(xdp_testbed.LB_HOST)
DSR_BACKENDS = [lan_backend(5), srv_backend(6)]   # one behind lan0 (XDP_TX), one behind srv0 (redirect)
IPIP_BACKENDS = [lan_backend(7), srv_backend(8)]
NAT_SVC = {'vip': VIP, 'port': 80, 'backends': [lan_backend(0), srv_backend(1)]}
DSR_SVC = {'vip': VIP, 'port': 9000, 'forwarding': 'dsr', 'backends': DSR_BACKENDS}
DSR_UDP_SVC = {'vip': VIP, 'port': 9053, 'protocol': 'udp', 'forwarding': 'dsr', 'backends': DSR_BACKENDS}
IPIP_SVC = {'vip': VIP, 'port': 9100, 'forwarding': 'ipip', 'tunnel_source': LB_SRV_IP, 'backends': IPIP_BACKENDS}
SERVICES = [NAT_SVC, DSR_SVC, DSR_UDP_SVC, IPIP_SVC]
ROUTED = '10.204.9.5'  # behind a gateway on srv0 (added by a test)


@pytest.fixture(scope='module')
def bed(require_root):
    pytest.importorskip('bcc')
    testbed = xdp_testbed.XdpTestBed(NETNS, os.path.join(COLLECTION, 'bpf'),
                                     xdp_lb_maps.Limits(snat_port_min=40000, snat_port_max=40063, max_flows=1024))
    try:
        testbed.up().load()
        yield testbed
    finally:
        testbed.down()


@pytest.fixture
def lb(bed):
    bed.reset_flows()
    harness = Harness(bed)
    harness.apply(SERVICES)
    return harness


def device_of(ip):
    return 'srv0' if ip.startswith(xdp_testbed.SRV) else 'lan0'


def lb_mac_towards(ip):
    return mac_of(LB_SRV_IP if device_of(ip) == 'srv0' else LB_IP)


def expected_verdict(backend):
    return 'REDIRECT' if device_of(backend) == 'srv0' else 'TX'


# -- dsr --

@pytest.mark.parametrize('proto,vport', [('tcp', 9000), ('udp', 9053)])
def test_dsr_rewrites_the_destination_mac_only(lb, proto, vport):
    seen = set()
    for n in range(10):
        frame = from_client(client(n), 50000 + n, proto, flags='S', payload=b'hello', vport=vport)
        verdict, out = lb.send(frame)
        backend = [b for b in DSR_BACKENDS if out[Ether].dst == mac_of(b)]
        assert len(backend) == 1, 'to one backend MAC, got %s (verdict %s)' % (out[Ether].dst, verdict)
        seen.add(backend[0])
        assert verdict == expected_verdict(backend[0])
        assert out[Ether].src == lb_mac_towards(backend[0])
        assert bytes(out)[14:] == bytes(frame)[14:], 'IP header and payload untouched (TTL, addresses, checksums)'
    assert seen == set(DSR_BACKENDS), 'Maglev spreads 10 flows over both backends'


def test_dsr_established_packets_follow_their_flow(lb):
    first = from_client(client(1), 50100, flags='S', vport=9000)
    _verdict, out = lb.send(first)
    backend_mac = out[Ether].dst
    for n in range(3):
        frame = from_client(client(1), 50100, payload=b'data %d' % n, vport=9000)
        _verdict, out = lb.send(frame)
        assert out[Ether].dst == backend_mac and bytes(out)[14:] == bytes(frame)[14:]


def test_dsr_uses_no_snat_port_and_counts_the_flow(lb):
    before, scans = lb.service_counters('%s:9000/tcp' % VIP), lb.global_counters()['snat_port_scans']
    for n in range(4):
        lb.send(from_client(client(n), 50200 + n, flags='S', vport=9000))
    after = lb.service_counters('%s:9000/tcp' % VIP)
    assert after['new_flows'] - before['new_flows'] == 4 and after['packets'] - before['packets'] == 4
    flows = [f for _k, f in lb.bed.maps.flows() if f['forwarding'] == 'dsr']
    assert len(flows) == 4 and all(f['snat_port'] == 0 for f in flows), 'no SNAT port held'
    assert lb.global_counters()['snat_port_scans'] == scans


def test_dsr_picks_the_same_backend_without_the_flow_entry(lb):
    """Another LB (or this one after its entry was evicted) picks by Maglev alone: the same backend."""
    picks = {}
    for n in range(12):
        _verdict, out = lb.send(from_client(client(n), 50300 + n, flags='S', vport=9000))
        picks[n] = out[Ether].dst
    lb.bed.reset_flows()
    for n in range(12):
        _verdict, out = lb.send(from_client(client(n), 50300 + n, payload=b'mid-connection', vport=9000))
        assert out[Ether].dst == picks[n]


def test_dsr_flow_sticks_to_its_backend_when_one_is_added(lb):
    picks = {}
    for n in range(16):
        _verdict, out = lb.send(from_client(client(n), 50400 + n, flags='S', vport=9000))
        picks[n] = out[Ether].dst
    grown = dict(DSR_SVC, backends=DSR_BACKENDS + [lan_backend(9)])
    lb.apply([NAT_SVC, grown, DSR_UDP_SVC, IPIP_SVC])
    for n in range(16):
        _verdict, out = lb.send(from_client(client(n), 50400 + n, payload=b'more', vport=9000))
        assert out[Ether].dst == picks[n], 'an established flow keeps its backend (flow table)'
    moved = 0
    for n in range(16):
        _verdict, out = lb.send(from_client(client(n), 51400 + n, flags='S', vport=9000))
        moved += out[Ether].dst == mac_of(lan_backend(9))
    assert moved > 0, 'new flows reach the added backend'


def test_dsr_backend_behind_a_gateway_is_dropped_and_counted(lb):
    """The module refuses such a backend; if a route changes later the datapath still never hands the
    VIP's packet to a router."""
    subprocess.run(['ip', '-n', lb.bed.netns, 'route', 'replace', ROUTED + '/32', 'via', srv_backend(0)], check=True)
    try:
        lb.apply([dict(DSR_SVC, backends=[ROUTED])])
        before = lb.global_counters()['dsr_backend_not_neighbour']
        with on_one_cpu():  # the next-hop cache is per CPU
            started = time.monotonic()
            verdict, _out = lb.send(from_client(client(0), 50500, flags='S', vport=9000))
            assert verdict == 'DROP'
            assert lb.global_counters()['dsr_backend_not_neighbour'] == before + 1
            # the next flow gets the FIB's answer from the next-hop cache: still a gateway, still dropped
            asked = lb.global_counters()['nexthop_lookups']
            verdict, _out = lb.send(from_client(client(1), 50500, flags='S', vport=9000))
            assert verdict == 'DROP'
            assert lb.global_counters()['dsr_backend_not_neighbour'] == before + 2
            if time.monotonic() - started < 0.5:  # well inside the cache's second: the answer came from it
                assert lb.global_counters()['nexthop_lookups'] == asked
    finally:
        subprocess.run(['ip', '-n', lb.bed.netns, 'route', 'del', ROUTED + '/32'], check=False)


def test_icmp_error_about_a_dsr_flow_passes_to_the_stack(lb):
    frame = from_client(client(2), 50600, flags='S', vport=9000)
    lb.send(frame)
    reply = IP(src=VIP, dst=client(2)) / TCP(sport=9000, dport=50600, flags='SA')  # what the backend sent
    error = Ether(src=mac_of(client(2)), dst=mac_of(LB_IP)) / icmp_error(client(2), VIP, reply, icmp_type=3, code=3)
    verdict, _out = lb.send(error)
    assert verdict == 'PASS'


# -- ipip --

@pytest.mark.parametrize('proto,flags', [('tcp', 'DF'), ('tcp', ''), ('udp', 'DF')])
def test_ipip_outer_header_is_exact(lb, proto, flags):
    svc = dict(IPIP_SVC, protocol=proto)
    lb.apply([NAT_SVC, DSR_SVC, svc])
    seen = set()
    for n in range(10):
        frame = from_client(client(n), 52000 + n, proto, flags='S', payload=b'x' * (n * 7), vport=9100)
        frame[IP].tos = 0x28
        frame[IP].flags = flags
        frame = Ether(bytes(frame))
        verdict, out = lb.send(frame)
        outer = out[IP]
        assert outer.dst in IPIP_BACKENDS, 'outer destination is a backend (verdict %s)' % verdict
        seen.add(outer.dst)
        assert verdict == expected_verdict(outer.dst)
        expected_ether = (lb_mac_towards(outer.dst), mac_of(outer.dst), 0x0800)
        assert (out[Ether].src, out[Ether].dst, out[Ether].type) == expected_ether
        inner = bytes(frame)[14:]
        assert (outer.version, outer.ihl, outer.tos, outer.len, outer.id, outer.ttl, outer.proto, outer.src) == (
            4, 5, 0x28, len(inner) + 20, frame[IP].id, 64, 4, LB_SRV_IP)
        assert str(outer.flags) == flags and outer.frag == 0
        assert bytes(outer.payload) == inner, 'the client packet rides unchanged inside'
        assert_checksums(Ether(bytes(out)[:14]) / IP(bytes(out)[14:34]))  # outer header checksum
        assert len(out) == len(frame) + 20
    assert seen == set(IPIP_BACKENDS)


def test_ipip_packets_too_big_for_the_mtu_are_dropped_and_counted(lb):
    """MTU 1500 on the bench's devices: an inner packet of 1480 bytes fits with the outer header, 1481
    does not. Without DF the sender allows fragmenting, which XDP cannot do: dropped and counted, and
    no ICMP (RFC 1191 answers only DF packets; a sender fragmenting at source would have its fragments
    dropped by the LB anyway, and the stack behind XDP_PASS has no tunnel to send it through)."""
    lb.apply([NAT_SVC, dict(IPIP_SVC, protocol='udp')])
    for n in range(6):  # flows to both backends (both devices)
        fits = from_client(client(n), 53000 + n, 'udp', payload=b'p' * (1480 - 28), vport=9100)
        verdict, out = lb.send(fits)
        assert verdict in ('TX', 'REDIRECT') and out[IP].len == 1500
        before = lb.global_counters()
        verdict, _out = lb.send(from_client(client(n), 53000 + n, 'udp', payload=b'p' * (1481 - 28), vport=9100))
        assert verdict == 'DROP'
        after = lb.global_counters()
        assert after['encap_too_big_dropped'] == before['encap_too_big_dropped'] + 1
        assert after['icmp_too_big_sent'] == before['icmp_too_big_sent'], 'no ICMP for a packet without DF'


def tcp_segment(n, length, df=True, cport=None, options=None, src=None):
    """A client's TCP segment of `length` IP bytes to the ipip service."""
    def frame(payload):
        return from_client(src or client(n), cport or 55000 + n, 'tcp', flags='A', payload=payload, vport=9100,
                           options=options)
    head = len(bytes(frame(b'')[IP]))
    segment = frame(b'u' * (length - head))
    segment[IP].flags = 'DF' if df else ''
    segment = Ether(bytes(segment))
    assert segment[IP].len == length
    return segment


def assert_frag_needed(frame, verdict, out, mtu):
    """out is the ICMP "fragmentation needed" the client of frame must get: from the address it sent
    to (the VIP), quoting its IP header and 8 bytes, next-hop MTU `mtu`, every checksum valid."""
    sent = bytes(frame)[14:]
    ihl = (sent[0] & 0x0f) * 4
    assert verdict == 'TX', 'the answer goes back where the packet came from (verdict %s)' % verdict
    assert (out[Ether].src, out[Ether].dst, out[Ether].type) == (frame[Ether].dst, frame[Ether].src, 0x0800)
    ip = out[IP]
    assert (ip.version, ip.ihl, ip.src, ip.dst, ip.proto, ip.ttl, ip.frag) == (
        4, 5, frame[IP].dst, frame[IP].src, 1, 64, 0)
    assert ip.tos == 0xc0, 'internetwork control, as the kernel sends its ICMP errors'
    assert str(ip.flags) == 'DF', 'an atomic datagram: DF with no need for a unique ID'
    assert ip.len == 20 + 8 + ihl + 8 and len(out) == 14 + ip.len, 'quote = the IP header + 8 bytes'
    icmp = out[ICMP]
    assert (icmp.type, icmp.code, bytes(icmp)[4:6], icmp.nexthopmtu) == (3, 4, b'\0\0', mtu)
    assert bytes(icmp.payload) == sent[:ihl + 8], 'the quote is the client packet as sent'
    assert_checksums(out)


def test_ipip_df_packet_too_big_is_answered_with_fragmentation_needed(lb):
    """A full-size DF segment (1500 bytes, MTU 1500 on both devices): ICMP type 3 code 4 with MTU 1480
    back to the client, with XDP_TX; counted. The next segment of 1480 fits and goes through."""
    seen = set()
    for n in range(8):  # flows to both backends, so both egress devices are checked
        verdict, out = lb.send(from_client(client(n), 55000 + n, flags='S', vport=9100))
        assert verdict in ('TX', 'REDIRECT')
        seen.add(out[IP].dst)
        before = lb.global_counters()
        frame = tcp_segment(n, 1500)
        verdict, out = lb.send(frame)
        assert_frag_needed(frame, verdict, out, 1480)
        after = lb.global_counters()
        assert after['icmp_too_big_sent'] == before['icmp_too_big_sent'] + 1
        assert after['encap_too_big_dropped'] == before['encap_too_big_dropped'] + 1, 'the segment is not sent'
        verdict, out = lb.send(tcp_segment(n, 1480))
        assert verdict in ('TX', 'REDIRECT') and out[IP].len == 1500 and out[IP].proto == 4
    assert seen == set(IPIP_BACKENDS)


def test_fragmentation_needed_quotes_ip_options_and_uses_the_egress_mtu(lb):
    """The quote holds the whole IP header (options too); the MTU is the egress device's less 20,
    not a constant: srv0 at 1400 gives 1380, lan0 still 1480."""
    netns = lb.bed.netns
    subprocess.run(['ip', '-n', netns, 'link', 'set', 'srv0', 'mtu', '1400'], check=True)
    try:
        lb.bed.reset_flows()
        lb.apply(SERVICES)
        mtus = {}
        for n in range(8):
            verdict, out = lb.send(from_client(client(n), 56000 + n, flags='S', vport=9100))
            backend = out[IP].dst
            frame = tcp_segment(n, 1460, cport=56000 + n, options=[IPOption_RR(routers=['0.0.0.0'] * 2)])
            assert frame[IP].ihl > 5
            verdict, out = lb.send(frame)
            if device_of(backend) == 'srv0':
                assert_frag_needed(frame, verdict, out, 1380)
            else:
                assert verdict == 'TX' and out[IP].proto == 4, '1460 + 20 fits lan0'
            mtus[device_of(backend)] = True
        assert set(mtus) == {'lan0', 'srv0'}
    finally:
        subprocess.run(['ip', '-n', netns, 'link', 'set', 'srv0', 'mtu', '1500'], check=True)


def test_an_aggregate_longer_than_the_ingress_mtu_is_dropped_without_icmp(lb):
    """Generic mode sees GRO/GSO aggregates (a frame longer than the interface's MTU, which no single
    packet can be): its segments may fit, so an ICMP would tell the client nothing it can act on, and
    an outer header in front of an aggregate cannot be segmented again. Dropped, counted apart."""
    lb.send(from_client(client(2), 57200, flags='S', vport=9100))
    before = lb.global_counters()
    verdict, _out = lb.send(tcp_segment(2, 2 * 1448 + 52, cport=57200))
    after = lb.global_counters()
    assert verdict == 'DROP'
    assert after['encap_aggregates_dropped'] == before['encap_aggregates_dropped'] + 1
    assert after['icmp_too_big_sent'] == before['icmp_too_big_sent']
    assert after['encap_too_big_dropped'] == before['encap_too_big_dropped']


@pytest.mark.parametrize('source', ['0.0.0.0', '127.0.0.1', '224.0.0.5', '255.255.255.255'])
def test_no_icmp_to_a_source_that_cannot_be_answered(lb, source):
    """RFC 1812 4.3.2.7: no ICMP error to a zero, loopback, multicast or broadcast source: the packet
    is dropped and counted, nothing is sent."""
    frame = tcp_segment(0, 1500, src=source, cport=57000)
    before = lb.global_counters()
    verdict, _out = lb.send(frame, dev='lan0')
    after = lb.global_counters()
    assert verdict == 'DROP'
    assert after['icmp_too_big_sent'] == before['icmp_too_big_sent']


def test_an_oversized_icmp_packet_never_gets_an_icmp_error(lb):
    """No ICMP about ICMP (RFC 1122 3.2.2): a full-size DF ICMP error or echo to the VIP is left to
    the stack, whatever its size."""
    lb.send(from_client(client(1), 57100, flags='S', vport=9100))
    big_reply = IP(src=VIP, dst=client(1), flags='DF') / TCP(sport=9100, dport=57100, flags='A') / (b'r' * 1400)
    errors = [icmp_error(client(1), VIP, big_reply, icmp_type=3, code=3) / (b'e' * 1444),
              IP(src=client(1), dst=VIP) / ICMP(type=8) / (b'e' * 1472)]
    before = lb.global_counters()
    for packet in errors:
        packet[IP].flags = 'DF'
        frame = Ether(bytes(Ether(src=mac_of(client(1)), dst=mac_of(LB_IP)) / packet))
        assert len(frame) == 1514
        verdict, _out = lb.send(frame)
        assert verdict == 'PASS'
    after = lb.global_counters()
    assert after['icmp_too_big_sent'] == before['icmp_too_big_sent']


def test_ipip_uses_no_snat_and_nat_next_to_it_is_unchanged(lb):
    verdict, out = lb.send(from_client(client(3), 54000, flags='S', vport=80))
    assert verdict in ('TX', 'REDIRECT') and out[IP].src == LB_IP and 40000 <= out[TCP].sport <= 40063
    assert out[IP].ttl == 63 and out[IP].dst in NAT_SVC['backends']
    assert_checksums(out)
    lb.send(from_client(client(3), 54001, flags='S', vport=9100))
    kinds = sorted(f['forwarding'] for _k, f in lb.bed.maps.flows())
    assert kinds == ['ipip', 'nat']
    assert [f['snat_port'] for _k, f in lb.bed.maps.flows() if f['forwarding'] == 'ipip'] == [0]


def test_read_config_returns_what_was_applied(lb):
    config, consistent = lb.bed.maps.read_config()
    assert consistent
    assert config == lb.config


def test_a_service_switched_from_nat_to_dsr_releases_its_snat_address(lb):
    lb.apply([dict(NAT_SVC, forwarding='dsr'), DSR_UDP_SVC])
    assert xdp_lb_maps.ADDR_SNAT & lb.bed.maps.addrs()[VIP][0] == 0, 'no SNAT address left in lb_addrs'
    verdict, out = lb.send(from_client(client(0), 54100, flags='S', vport=80))
    assert verdict in ('TX', 'REDIRECT') and out[Ether].dst in [mac_of(b) for b in NAT_SVC['backends']]
    assert out[IP].dst == VIP and out[TCP].dport == 80, 'not translated'
