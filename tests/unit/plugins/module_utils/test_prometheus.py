# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import prometheus as prom

SAMPLE_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                       r'(-?[0-9.e+-]+|NaN|[+-]Inf)$')


def parse(text):
    """A strict reader of the text format: every line is HELP, TYPE or a well-formed sample."""
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith('# HELP '):
            continue
        if line.startswith('# TYPE '):
            name, kind = line.split(' ')[2:]
            assert name not in types, 'TYPE twice for %s' % name
            types[name] = kind
            continue
        assert SAMPLE_RE.match(line), line
        key, value = line.rsplit(' ', 1)
        samples[key] = float(value)
    return types, samples


COUNTERS = [{'service': '10.0.0.1:80/tcp', 'packets': 10, 'bytes': 1000, 'new_flows': 3, 'reply_packets': 9,
             'reply_bytes': 5000, 'drops': 1,
             'backends': [{'ip': '10.0.0.2', 'port': 80, 'weight': 1, 'packets': 7, 'bytes': 700, 'new_flows': 2,
                           'reply_packets': 6, 'reply_bytes': 4000, 'drops': 0},
                          {'ip': '10.0.0.3', 'port': 8080, 'weight': 2, 'packets': 3, 'bytes': 300,
                           'new_flows': 1, 'reply_packets': 3, 'reply_bytes': 1000, 'drops': 1}]}]
GLOBAL = {'passed': 5, 'no_backend': 1, 'no_neighbour': 0, 'snat_ports_exhausted': 2, 'flow_insert_failed': 0,
          'fragments_passed': 0}


def test_lb_metrics_cover_every_backend_with_its_health():
    health = {'10.0.0.1:80/tcp': {'10.0.0.2:80': {'state': 'up'}, '10.0.0.3:8080': {'state': 'up'},
                                  '10.0.0.4:80': {'state': 'down'}}}
    text = prom.render(prom.lb_families('lb1', COUNTERS, GLOBAL, 42, 65536, health))
    types, samples = parse(text)
    be = 'deployment="lb1",service="10.0.0.1:80/tcp",backend="%s"'

    def get(name, labels):
        key = '%s{%s}' % (name, ','.join(sorted(labels.split(','), key=lambda s: s.split('=')[0])))
        return samples[key]
    assert get('ebpf_networking_lb_backend_packets_total', be % '10.0.0.2:80') == 7
    assert get('ebpf_networking_lb_backend_new_flows_total', be % '10.0.0.3:8080') == 1
    assert get('ebpf_networking_lb_backend_up', be % '10.0.0.4:80') == 0, 'a down backend out of the table shows'
    assert get('ebpf_networking_lb_backend_up', be % '10.0.0.2:80') == 1
    assert get('ebpf_networking_lb_service_drops_total', 'deployment="lb1",service="10.0.0.1:80/tcp"') == 1
    assert samples['ebpf_networking_lb_flow_table_entries{deployment="lb1"}'] == 42
    assert samples['ebpf_networking_lb_flow_table_capacity{deployment="lb1"}'] == 65536
    assert samples['ebpf_networking_lb_refused_flows_total{deployment="lb1"}'] == 3
    for name, kind in types.items():
        assert name.startswith('ebpf_networking_')
        assert (kind == 'counter') == name.endswith('_total'), name


def test_lb_events_are_not_counted_as_packets():
    """Summing lb_global_packets_total over its reasons counts packets: reclaims, scans and FIB lookups are
    events, in a family of their own."""
    counters = dict(GLOBAL, snat_ports_reclaimed=500, snat_port_scans=40, nexthop_lookups=7, udp_flows_moved=2,
                    icmp_translated=3, icmp_too_big_sent=1, ttl_expired_passed=4, orphan_replies_dropped=6)
    types, samples = parse(prom.render(prom.lb_families('lb1', COUNTERS, counters, 42, 65536)))
    packets = dict((k, v) for k, v in samples.items() if k.startswith('ebpf_networking_lb_global_packets_total{'))
    events = dict((k, v) for k, v in samples.items() if k.startswith('ebpf_networking_lb_events_total{'))
    assert sum(packets.values()) == 5 + 1 + 2 + 4 + 6, packets
    assert events['ebpf_networking_lb_events_total{deployment="lb1",event="nexthop_lookups"}'] == 7
    assert sum(events.values()) == 500 + 40 + 7 + 2 + 3 + 1
    assert types['ebpf_networking_lb_events_total'] == 'counter'


def test_every_lb_counter_that_is_not_a_drop_is_a_pass_or_an_event():
    """Every counter that is not a drop is exported as a pass or as an event (the events are derived from
    NOT_DROP_COUNTERS, so this fails when a pass counter is not among them), and the events are datapath
    counters."""
    from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import GLOBAL_COUNTERS, NOT_DROP_COUNTERS
    assert sorted(NOT_DROP_COUNTERS) == sorted(prom.LB_PASS_COUNTERS + prom.LB_EVENT_COUNTERS)
    assert set(prom.LB_EVENT_COUNTERS) <= set(GLOBAL_COUNTERS)


def test_label_values_are_escaped_and_families_merge():
    a = prom.Family('ebpf_networking_x_total', 'counter', 'help with \\ and\nnewline').add({'d': 'a"b\\c\nd'}, 1)
    b = prom.Family('ebpf_networking_x_total', 'counter', 'ignored').add({'d': 'e'}, 2.5)
    text = prom.render([a, b, prom.Family('ebpf_networking_empty', 'gauge', 'no samples')])
    assert text.count('# TYPE ebpf_networking_x_total counter') == 1
    assert '# HELP ebpf_networking_x_total help with \\\\ and\\nnewline' in text
    assert 'ebpf_networking_x_total{d="a\\"b\\\\c\\nd"} 1' in text
    assert 'ebpf_networking_x_total{d="e"} 2.5' in text
    assert 'empty' not in text
    parse(text)


@pytest.mark.parametrize('name,kind', [('bad-name', 'gauge'), ('ebpf_networking_packets', 'counter')])
def test_bad_names_are_refused(name, kind):
    with pytest.raises(ValueError):
        prom.Family(name, kind, 'x')


def test_sockmap_and_agent_metrics_parse():
    fams = prom.sockmap_families('acc', {'redirected': 17, 'sockets_added': 4}, 3)
    fams += prom.agent_families({'xdp_proxy/lb1': 2}, {}, {'xdp_proxy/lb1': 1}, 1, 1700000000.5)
    types, samples = parse(prom.render(fams))
    assert samples['ebpf_networking_sockmap_events_total{deployment="acc",event="redirected"}'] == 17
    assert samples['ebpf_networking_agent_restores_total{deployment="xdp_proxy/lb1"}'] == 2
    assert types['ebpf_networking_agent_errors_total'] == 'counter'
    assert 'ebpf_networking_agent_health_changes_total' not in types, 'no samples, no family'
    assert prom.render([]) == ''


def test_backend_and_decap_metrics():
    text = prom.render(prom.backend_families('be1', True) + prom.backend_families('be2', False) +
                       prom.decap_families('dc', True, 17) + prom.decap_families('gone', False, None))
    types, samples = parse(text)
    assert samples['ebpf_networking_backend_configured{deployment="be1"}'] == 1
    assert samples['ebpf_networking_backend_configured{deployment="be2"}'] == 0
    assert samples['ebpf_networking_decap_attached{deployment="dc"}'] == 1
    assert samples['ebpf_networking_decap_packets_total{deployment="dc"}'] == 17
    assert samples['ebpf_networking_decap_attached{deployment="gone"}'] == 0
    assert 'ebpf_networking_decap_packets_total{deployment="gone"}' not in samples, 'no pins: no counter'
    assert types['ebpf_networking_decap_packets_total'] == 'counter'
