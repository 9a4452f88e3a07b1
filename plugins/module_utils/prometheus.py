# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus text exposition format (version 0.0.4): metric families, rendering, and the
collection's metrics built from what xdp_proxy, xdp_stats and sockmap_redirect already read.

Counters end in _total; every metric starts with ebpf_networking_. No import from ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import re

from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import NOT_DROP_COUNTERS

PREFIX = 'ebpf_networking_'
# lb_global counters that count packets the program passed to the stack; the others that are not drops count
# events (ports reclaimed or rested, scans, FIB lookups, UDP flows moved, ICMP translated or sent) and go to
# lb_events_total, so that summing lb_global_packets_total counts packets
LB_PASS_COUNTERS = ('passed', 'ttl_expired_passed')
LB_EVENT_COUNTERS = tuple(c for c in NOT_DROP_COUNTERS if c not in LB_PASS_COUNTERS)
CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
NAME_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
LABEL_RE = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')


class Family(object):
    """One metric family: a name, a type, help text and samples (labels dict, value)."""

    def __init__(self, name, kind, help_text):
        if not NAME_RE.match(name):
            raise ValueError('bad metric name %r' % name)
        if kind == 'counter' and not name.endswith('_total'):
            raise ValueError('counter %s must end in _total' % name)
        self.name = name
        self.kind = kind
        self.help = help_text
        self.samples = []

    def add(self, labels, value):
        for label in labels:
            if not LABEL_RE.match(label):
                raise ValueError('bad label name %r' % label)
        self.samples.append((labels, value))
        return self


def escape_label(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def escape_help(text):
    return text.replace('\\', '\\\\').replace('\n', '\\n')


def format_value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if value in (float('inf'), float('-inf')):
        return '+Inf' if value > 0 else '-Inf'
    return repr(value)


def render(families):
    """Text format; families with the same name are merged (HELP/TYPE once), empty ones are left out."""
    merged = {}
    order = []
    for fam in families:
        if fam.name not in merged:
            merged[fam.name] = Family(fam.name, fam.kind, fam.help)
            order.append(fam.name)
        merged[fam.name].samples.extend(fam.samples)
    lines = []
    for name in order:
        fam = merged[name]
        if not fam.samples:
            continue
        lines.append('# HELP %s %s' % (name, escape_help(fam.help)))
        lines.append('# TYPE %s %s' % (name, fam.kind))
        for labels, value in fam.samples:
            if labels:
                text = ','.join('%s="%s"' % (k, escape_label(v)) for k, v in sorted(labels.items()))
                lines.append('%s{%s} %s' % (name, text, format_value(value)))
            else:
                lines.append('%s %s' % (name, format_value(value)))
    return '\n'.join(lines) + '\n' if lines else ''


LB_COUNTERS = (('packets', 'Packets from clients forwarded to a backend'),
               ('bytes', 'Bytes from clients forwarded to a backend'),
               ('new_flows', 'New flows (connections) assigned'),
               ('reply_packets', 'Reply packets from backends sent back to clients'),
               ('reply_bytes', 'Reply bytes from backends sent back to clients'),
               ('drops', 'Packets of the service the program dropped'))
HEALTH_VALUES = {'up': 1, 'down': 0}


def lb_families(deployment, counters, global_counters, flow_count, max_flows, health=None, attached=True):
    """Families for one XDP LB deployment from LbMaps.counters()/global_counters() and the health status.

    health: {service label: {backend label: {'state': up|down, ...}}} (missing: not checked).
    """
    fams = []
    dep = {'deployment': deployment}
    up = Family(PREFIX + 'lb_attached', 'gauge', 'Whether the XDP program of the deployment is attached (1) or not')
    fams.append(up.add(dep, 1 if attached else 0))
    for field, text in LB_COUNTERS:
        svc_fam = Family(PREFIX + 'lb_service_%s_total' % field, 'counter', text + ', per service')
        be_fam = Family(PREFIX + 'lb_backend_%s_total' % field, 'counter', text + ', per backend')
        for svc in counters:
            labels = dict(dep, service=svc['service'])
            svc_fam.add(labels, svc.get(field, 0))
            for be in svc.get('backends', []):
                be_fam.add(dict(labels, backend='%s:%d' % (be['ip'], be['port'])), be.get(field, 0))
        fams.extend([svc_fam, be_fam])
    weight = Family(PREFIX + 'lb_backend_weight', 'gauge', 'Weight of the backend in the Maglev table')
    state = Family(PREFIX + 'lb_backend_up', 'gauge',
                   'Health of the backend: 1 up, 0 down (out of the Maglev table); absent when not checked')
    in_table = Family(PREFIX + 'lb_backend_serving', 'gauge', 'Whether the backend takes new flows (in the table)')
    health = health or {}
    for svc in counters:
        svc_health = health.get(svc['service'], {})
        for be in svc.get('backends', []):
            label = '%s:%d' % (be['ip'], be['port'])
            labels = dict(dep, service=svc['service'], backend=label)
            weight.add(labels, be.get('weight', 0))
            in_table.add(labels, 1 if be.get('weight', 0) else 0)
        for label, st in sorted(svc_health.items()):
            state.add(dict(dep, service=svc['service'], backend=label), HEALTH_VALUES.get(st.get('state'), 0))
    fams.extend([weight, in_table, state])
    refused = Family(PREFIX + 'lb_refused_flows_total', 'counter',
                     'New flows the program could not place (no SNAT port, flow table insert failed, no backend)')
    reasons = Family(PREFIX + 'lb_global_packets_total', 'counter', 'Packets passed or dropped for a reason')
    events = Family(PREFIX + 'lb_events_total', 'counter',
                    'Datapath events that are not packets passed or dropped (SNAT ports reclaimed, rested or not, '
                    'port scans, FIB lookups, UDP flows moved, ICMP errors translated or sent)')
    for reason, value in sorted((global_counters or {}).items()):
        if reason in LB_EVENT_COUNTERS:
            events.add(dict(dep, event=reason), value)
        else:
            reasons.add(dict(dep, reason=reason), value)
    refused.add(dep, sum((global_counters or {}).get(k, 0)
                         for k in ('snat_ports_exhausted', 'flow_insert_failed', 'no_backend', 'refused_flows')))
    fams.extend([reasons, events, refused])
    fams.append(Family(PREFIX + 'lb_flow_table_entries', 'gauge',
                       'Entries in the connection table (one per connection)').add(dep, flow_count))
    fams.append(Family(PREFIX + 'lb_flow_table_capacity', 'gauge',
                       'Capacity of the connection table').add(dep, max_flows))
    return fams


def sockmap_families(deployment, counters, sockets, attached=True):
    dep = {'deployment': deployment}
    fams = [Family(PREFIX + 'sockmap_attached', 'gauge', 'Whether socket acceleration is attached (1) or not')
            .add(dep, 1 if attached else 0),
            Family(PREFIX + 'sockmap_sockets', 'gauge', 'Sockets in the SOCKHASH').add(dep, sockets)]
    fam = Family(PREFIX + 'sockmap_events_total', 'counter', 'Socket acceleration events by kind')
    for event, value in sorted((counters or {}).items()):
        fam.add(dict(dep, event=event), value)
    fams.append(fam)
    return fams


def backend_families(deployment, configured):
    """An lb_backend deployment: whether the backend is configured as saved (VIPs on lo, sysctls, ipip device)."""
    fam = Family(PREFIX + 'backend_configured', 'gauge', 'Whether the dsr/ipip backend configuration (VIPs on lo, '
                 'ARP and rp_filter sysctls, ipip device) is in place (1) or not')
    return [fam.add({'deployment': deployment}, 1 if configured else 0)]


def decap_families(deployment, attached, packets):
    """An xdp_decap deployment: attached or not, and the IPIP packets it decapsulated since it was loaded."""
    dep = {'deployment': deployment}
    fams = [Family(PREFIX + 'decap_attached', 'gauge', 'Whether the XDP IPIP decapsulation is attached (1) or not')
            .add(dep, 1 if attached else 0)]
    if packets is not None:
        fams.append(Family(PREFIX + 'decap_packets_total', 'counter', 'IPIP packets decapsulated since the program '
                           'was loaded').add(dep, packets))
    return fams


def agent_families(restores, health_changes, errors, deployments, started_at):
    fams = [Family(PREFIX + 'agent_restores_total', 'counter', 'Deployments the agent re-applied from saved state'),
            Family(PREFIX + 'agent_health_changes_total', 'counter', 'Backend health state changes'),
            Family(PREFIX + 'agent_errors_total', 'counter', 'Failed restore, apply or collection steps')]
    for fam, values in zip(fams, (restores, health_changes, errors)):
        for dep, value in sorted(values.items()):
            fam.add({'deployment': dep}, value)
    fams.append(Family(PREFIX + 'agent_deployments', 'gauge', 'Saved deployments the agent looks after')
                .add({}, deployments))
    fams.append(Family(PREFIX + 'agent_start_time_seconds', 'gauge', 'Unix time the agent started')
                .add({}, started_at))
    return fams
