# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packet-level harness for bpf/xdp_proxy.bpf.c, in the spirit of Cilium's bpf/tests and Katran's tester.

The program runs on a bench (plugins/module_utils/xdp_testbed.py): compiled by the module's own loader
with the module's flags, services written by LbMaps.apply, frames run by BPF_PROG_TEST_RUN inside a
private namespace (`xh-dp`) whose static neighbours let bpf_fib_lookup answer. Frames are built and the
output decoded with scapy, an implementation independent of the program's csum.h, so a checksum the
program gets wrong shows up as a mismatch with scapy's recomputation.

Addresses (see xdp_testbed): the LB is 10.204.0.10 on lan0 (VIP and SNAT address); clients are
10.204.0.100+; backends 10.204.0.20+ share lan0 (answers are XDP_TX) and 10.204.1.20+ sit behind srv0
(XDP_REDIRECT). Every host's MAC is 02:00 + its address (xdp_testbed.mac_of).

Run by hand (root, bcc): see docs/performance.md "Running the packet-level harness".
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import contextlib
import os

from scapy.layers.inet import ICMP, IP, IPerror, TCP, UDP, fragment
from scapy.layers.l2 import Ether

from ansible_collections.ebpf.networking.plugins.module_utils import xdp_testbed
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_testbed import LAN, LB_HOST, SRV, mac_of

LB_IP = LAN + str(LB_HOST)
LB_SRV_IP = SRV + str(LB_HOST)
VIP = LB_IP
SNAT_IP = LB_IP


def client(n):
    return LAN + str(xdp_testbed.CLIENT_HOSTS[n])


def lan_backend(n):
    return LAN + str(xdp_testbed.BACKEND_HOSTS[n])


def srv_backend(n):
    return SRV + str(xdp_testbed.BACKEND_HOSTS[n])


@contextlib.contextmanager
def on_one_cpu():
    """Run the block on one CPU: BPF_PROG_TEST_RUN runs the program on the caller's CPU, and per-CPU
    state (lb_nexthops) is only shared between runs on the same one."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def device_of(ip):
    """The bench device a host is reached through."""
    return 'srv0' if ip.startswith(SRV) else 'lan0'


def lb_mac_towards(ip):
    return mac_of(LB_SRV_IP if device_of(ip) == 'srv0' else LB_IP)


Flow = collections.namedtuple('Flow', 'proto client cport vip vport backend bport snat lport')


def l4(proto, sport, dport, flags='A', payload=b'', udp_checksum=None):
    if proto == 'tcp':
        return TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=2000 if 'A' in flags else 0) / payload
    layer = UDP(sport=sport, dport=dport)
    if udp_checksum is not None:
        layer.chksum = udp_checksum
    return layer / payload


def from_client(cl, cport, proto='tcp', flags='A', payload=b'', vip=VIP, vport=80, ttl=64, options=None,
                udp_checksum=None):
    ip = IP(src=cl, dst=vip, ttl=ttl, id=4242)
    if options:
        ip.options = options
    return Ether(src=mac_of(cl), dst=mac_of(LB_IP)) / ip / l4(proto, cport, vport, flags, payload, udp_checksum)


def from_backend(flow, flags='A', payload=b'', ttl=64, udp_checksum=None):
    return (Ether(src=mac_of(flow.backend), dst=lb_mac_towards(flow.backend)) /
            IP(src=flow.backend, dst=flow.snat, ttl=ttl, id=4343) /
            l4(flow.proto, flow.bport, flow.lport, flags, payload, udp_checksum))


def quote(packet, length=28):
    """What an ICMP error quotes: the offending packet's IP header and the first 8 bytes after it."""
    return bytes(packet)[:length]


def icmp_error(src, dst, offending, icmp_type=3, code=4, mtu=1400):
    icmp = ICMP(type=icmp_type, code=code)
    if icmp_type == 3 and code == 4:
        icmp.nexthopmtu = mtu
    return IP(src=src, dst=dst, ttl=64) / icmp / quote(offending)


def recomputed(pkt):
    """The same frame with every checksum left for scapy to compute (UDP checksum 0 stays 0: none)."""
    copy = pkt.copy()
    for layer in (IP, TCP, ICMP, IPerror):
        if layer in copy:
            del copy[layer].chksum
    if UDP in copy and copy[UDP].chksum != 0:
        del copy[UDP].chksum
    return Ether(bytes(copy))


def assert_checksums(pkt):
    fresh = recomputed(pkt)
    for layer in (IP, TCP, UDP, ICMP, IPerror):
        if layer in pkt:
            assert pkt[layer].chksum == fresh[layer].chksum, '%s checksum %#06x, scapy computes %#06x' % (
                layer.__name__, pkt[layer].chksum, fresh[layer].chksum)


class Harness(object):
    """The bench plus what the tests say about packets."""

    def __init__(self, bed):
        self.bed = bed
        self.config = []

    def apply(self, services, neighbour_mac=None):
        self.config = self.bed.apply(services, neighbour_mac=neighbour_mac)
        return self.config

    def send(self, frame, dev=None):
        """(verdict, decoded output frame). dev defaults to the device the sender sits behind."""
        if dev is None:
            dev = device_of(frame[IP].src) if IP in frame else 'lan0'
        verdict, out = self.bed.run(bytes(frame), dev=dev)
        return verdict, Ether(out)

    def global_counters(self):
        return self.bed.maps.global_counters()

    def service_counters(self, label):
        for entry in self.bed.maps.counters(self.config):
            if entry['service'] == label:
                return entry
        raise AssertionError('no counters for service %s' % label)

    def open_flow(self, cl, cport, proto='tcp', vport=80, payload=b''):
        """First packet of a flow (a SYN for TCP); asserts it is forwarded and returns the Flow."""
        frame = from_client(cl, cport, proto, flags='S', payload=payload, vport=vport)
        verdict, out = self.send(frame)
        assert verdict in ('TX', 'REDIRECT'), 'new %s flow %s:%d not forwarded: %s' % (proto, cl, cport, verdict)
        l4out = out[TCP] if proto == 'tcp' else out[UDP]
        flow = Flow(proto, cl, cport, VIP, vport, out[IP].dst, l4out.dport, out[IP].src, l4out.sport)
        self.assert_forwarded(verdict, out, flow)
        return flow

    def assert_forwarded(self, verdict, out, flow, ttl=63):
        """A client packet of flow as the backend must receive it (sent with TTL 64 unless said)."""
        l4out = out[TCP] if flow.proto == 'tcp' else out[UDP]
        assert (out[IP].src, l4out.sport, out[IP].dst, l4out.dport) == (
            flow.snat, flow.lport, flow.backend, flow.bport), 'verdict %s' % verdict
        assert out[Ether].src == lb_mac_towards(flow.backend) and out[Ether].dst == mac_of(flow.backend)
        assert verdict == ('REDIRECT' if device_of(flow.backend) == 'srv0' else 'TX')
        if ttl is not None:
            assert out[IP].ttl == ttl
        assert_checksums(out)

    def assert_replied(self, verdict, out, flow, ttl=63):
        """A backend packet of flow as the client must receive it: from the VIP, to the client."""
        l4out = out[TCP] if flow.proto == 'tcp' else out[UDP]
        assert (out[IP].src, l4out.sport, out[IP].dst, l4out.dport) == (
            flow.vip, flow.vport, flow.client, flow.cport), 'verdict %s' % verdict
        assert out[Ether].src == mac_of(LB_IP) and out[Ether].dst == mac_of(flow.client)
        assert verdict == ('TX' if device_of(flow.backend) == device_of(flow.client) else 'REDIRECT')
        if ttl is not None:
            assert out[IP].ttl == ttl
        assert_checksums(out)


__all__ = ['Harness', 'Flow', 'on_one_cpu', 'from_client', 'from_backend', 'icmp_error', 'quote', 'fragment', 'assert_checksums',
           'client', 'lan_backend', 'srv_backend', 'VIP', 'SNAT_IP', 'LB_IP', 'mac_of', 'device_of']
