# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_stats' advice on ipip packets too big for the tunnel: answered (DF, ICMP sent), dropped (no DF),
and GRO/GSO aggregates in generic mode are three different problems with three different fixes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.modules import xdp_stats

LIMITS = {'snat_port_range': [20000, 29999]}


def advice(**counters):
    return xdp_stats.advice([], counters, LIMITS)


def test_no_advice_when_nothing_was_too_big():
    assert advice(encap_too_big_dropped=0, icmp_too_big_sent=0, encap_aggregates_dropped=0) == []


def test_answered_packets_are_not_reported_as_dropped():
    out = advice(encap_too_big_dropped=5, icmp_too_big_sent=5)
    assert len(out) == 1 and out[0].startswith('5 ipip packets with DF') and 'ICMP fragmentation needed' in out[0]


def test_packets_without_df_are_reported_as_dropped_apart():
    out = advice(encap_too_big_dropped=7, icmp_too_big_sent=5)
    assert out[0].startswith('2 ipip packets did not fit') and 'dropped unanswered (no DF' in out[0]
    assert out[1].startswith('5 ipip packets with DF')


def test_aggregates_point_to_native_mode_or_gro_off():
    out = advice(encap_aggregates_dropped=3)
    assert len(out) == 1 and out[0].startswith('3 GRO/GSO aggregates') and 'native' in out[0] and 'gro off' in out[0]


def test_new_flows_on_ports_that_had_not_rested_get_advice():
    limits = dict(LIMITS, timeouts={'tcp_time_wait': 60})
    out = xdp_stats.advice([], {'snat_ports_not_rested': 12, 'snat_ports_rested': 400}, limits)
    assert len(out) == 1 and '12 new TCP flows' in out[0] and 'TIME_WAIT' in out[0] and '60 s' in out[0]
    assert 'snat_ip as a list' in out[0]
    assert xdp_stats.advice([], {'snat_ports_rested': 400}, limits) == [], 'passing over a port is not a problem'
