#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_stats
short_description: Read the counters and state of an XDP load balancer deployed by xdp_proxy
version_added: 0.1.0
description:
  - Opens the pinned maps of an M(ebpf.networking.xdp_proxy) deployment and returns per-service
    and per-backend counters (packets, bytes, new flows, replies, drops), global drop reasons,
    the connection-table size and the maps' memory. Compiles nothing and changes nothing.
author:
  - ebpf.networking developers (@ebpf-networking)
extends_documentation_fragment:
  - ebpf.networking.attributes.read_only
options:
  name:
    description: Name of the deployment (its pins are in C(/sys/fs/bpf/ebpf_networking/<name>/)).
    type: str
    default: xdp_lb
  flows:
    description: Also return up to this many connection-table entries (0 for none).
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: Show load balancer counters
  ebpf.networking.xdp_stats:
  register: lb

- name: Print requests per backend
  ansible.builtin.debug:
    msg: "{{ lb.counters[0].backends | map(attribute='new_flows') | list }}"
'''

RETURN = r'''
deployed:
  description: Whether pins of this deployment exist.
  returned: always
  type: bool
attached:
  description: Where the program is attached, or null when it is not attached anywhere.
  returned: when deployed
  type: dict
  sample: {interface: eth0, ifindex: 5, netns: "container:lb", mode: native}
prog_id:
  description: Kernel id of the pinned program.
  returned: when deployed
  type: int
services:
  description: Services and backends held in the maps.
  returned: when deployed
  type: list
  elements: dict
counters:
  description: Per-service counters with a C(backends) list of per-backend counters.
  returned: when deployed
  type: list
  elements: dict
global_counters:
  description:
    - Packets dropped or passed for a reason, and SNAT port events. Keys passed, no_backend, no_neighbour,
      snat_ports_exhausted, flow_insert_failed, fragments_dropped, orphan_replies_dropped, ttl_expired_passed,
      snat_ports_reclaimed, snat_port_scans, flows_lost, udp_flows_moved, icmp_translated, encap_too_big_dropped
      (C(forwarding=ipip) packets over the egress MTU with the outer header, not sent), dsr_backend_not_neighbour,
      icmp_too_big_sent (those of them with DF, answered with ICMP "fragmentation needed" so the client lowers
      its path MTU), encap_aggregates_dropped (C(forwarding=ipip) GRO/GSO aggregates, longer than the
      interface's MTU, seen in generic mode, which cannot be encapsulated), nexthop_lookups (new flows that asked
      the kernel FIB for the way to their backend; an answer is reused for a second, so this grows by about one
      per CPU, backend and SNAT address and second under steady load), snat_ports_rested (new TCP flows whose
      own port had not rested - held by another flow, or its TCP flow ended within C(timeouts.tcp_time_wait) - and
      that took one that had), snat_ports_not_rested (those that found no rested port among the ones tried and took
      another; backends may reject their SYN from TIME_WAIT).
  returned: when deployed
  type: dict
refused_flows:
  description: New flows refused by all services because every SNAT port they could take was held by a live flow.
  returned: when deployed
  type: int
  sample: 0
advice:
  description: What to do about refused flows, lost flows or missing neighbours; empty when all is well.
  returned: when deployed
  type: list
  elements: str
consistent:
  description: False when a run was interrupted between map updates (xdp_proxy with state=present repairs it).
  returned: when deployed
  type: bool
limits:
  description: The compile-time sizes and timeouts of the loaded program (as the xdp_proxy options).
  returned: when deployed
  type: dict
  sample: {max_services: 16, max_backends: 64, ring_size: 4099, max_flows: 65536, snat_port_range: [20000, 29999],
           max_snat_ips: 2, timeouts: {tcp_syn: 60, tcp_established: 21600, tcp_closing: 10, udp: 60, tcp_time_wait: 60}}
pin_path:
  description: The bpffs directory of the deployment.
  returned: always
  type: str
  sample: /sys/fs/bpf/ebpf_networking/xdp_lb
flow_count:
  description: Entries in the connection table (one per connection, live or ended but not yet reused); its capacity is C(limits.max_flows).
  returned: when deployed
  type: int
flow_sample:
  description: Up to I(flows) connection-table entries.
  returned: when deployed and flows > 0
  type: list
  elements: dict
maps:
  description: Pinned maps with id, type, sizes and estimated kernel memory.
  returned: when deployed
  type: dict
health:
  description:
    - Backend health as the host agent last saw it (role C(ebpf.networking.host_agent)), per service label and
      backend C(ip:port) - C(state) (up or down), C(last_change), C(last_check) (Unix times),
      C(consecutive_failures), C(consecutive_successes), C(last_error) - plus C(all_backends_down) (services
      whose every backend fails, all kept in the table), C(last_restore) and C(updated_at).
    - Null when no agent looks after this deployment.
  returned: when deployed
  type: dict
  sample: {health: {"172.30.0.10:80/tcp": {"172.30.0.12:80": {state: down, last_change: 1764260000.5,
           last_error: "connect: ECONNREFUSED"}}}, all_backends_down: {}, updated_at: 1764260003.1}
memory:
  description:
    - Estimated map memory in total, per configured backend slot and per connection (the connection table
      and the SNAT port table divided by max_flows; about 120 bytes with the defaults).
  returned: when deployed
  type: dict
'''

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_loader, bpf_syscall, xdp_deploy
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import (
    PROTOCOL_NAMES, ip_str, port_int, state_name)


def flow_sample(maps, limit):
    out = []
    for key, flow in maps.flows(limit=limit):
        saddr, daddr, sport, dport, proto = key
        out.append({'client': '%s:%d' % (ip_str(saddr), port_int(sport)),
                    'service': '%s:%d' % (ip_str(daddr), port_int(dport)),
                    'protocol': PROTOCOL_NAMES.get(proto, proto),
                    'forwarding': flow['forwarding'],
                    # dsr/ipip flows hold no SNAT port (ipip's snat_ip is the tunnel source)
                    'snat': '%s:%d' % (flow['snat_ip'], flow['snat_port']) if flow['forwarding'] == 'nat' else None,
                    'backend': '%s:%d' % (flow['backend_ip'], flow['backend_port']),
                    'backend_slot': flow['backend_slot'], 'state': state_name(flow['state'], proto)})
    return out


def advice(counters, global_counters, limits):
    """What to do about refused or dropped flows, one sentence each."""
    out = []
    for svc in counters:
        if svc['refused']:
            out.append('service %s refused %d new flows: every SNAT port towards it was held by a live flow. Add '
                       'SNAT addresses (snat_ip as a list, max_snat_ips), widen snat_port_range (now %d-%d), or '
                       'shorten timeouts.' % (svc['service'], svc['refused'], limits['snat_port_range'][0],
                                              limits['snat_port_range'][1]))
    not_rested = global_counters.get('snat_ports_not_rested', 0)
    if not_rested:
        out.append('%d new TCP flows took a SNAT port that may have ended a flow less than timeouts.tcp_time_wait '
                   '(%s s) ago, because none of the ports they tried had rested longer: a backend may still hold such a '
                   'port in TIME_WAIT and reject the SYN (the client retries). More SNAT addresses (snat_ip as a '
                   'list) or a wider snat_port_range (now %d-%d) give each port more rest.'
                   % (not_rested, limits.get('timeouts', {}).get('tcp_time_wait', '?'), limits['snat_port_range'][0],
                      limits['snat_port_range'][1]))
    if global_counters.get('flows_lost'):
        out.append('%d packets belonged to flows whose SNAT port had been reclaimed (idle past their timeout, or '
                   'evicted from a full table): raise max_flows or the timeouts if these were live connections.'
                   % global_counters['flows_lost'])
    too_big = global_counters.get('encap_too_big_dropped', 0)
    answered = global_counters.get('icmp_too_big_sent', 0)
    if too_big > answered:
        out.append('%d ipip packets did not fit the MTU towards their backend with the 20-byte outer header and '
                   'were dropped unanswered (no DF, a source no ICMP may go to, or no MTU known for the egress '
                   'device), as XDP cannot fragment: raise the MTU from the load balancer to the backends by 20 '
                   "bytes, or clamp the clients' MSS." % (too_big - answered))
    if answered:
        out.append('%d ipip packets with DF did not fit the MTU towards their backend with the 20-byte outer header '
                   'and were answered with ICMP fragmentation needed; each costs its client a round trip: a 20-byte '
                   'larger MTU towards the backends avoids it (clients that filter ICMP would stall).' % answered)
    if global_counters.get('encap_aggregates_dropped'):
        out.append('%d GRO/GSO aggregates reached an ipip service in generic mode and were dropped (an outer header '
                   'cannot be put on them): attach in native mode, or turn GRO off on the interface (ethtool -K '
                   'IFACE gro off) and, on a veth, TSO off on the sending side.' % global_counters['encap_aggregates_dropped'])
    if global_counters.get('dsr_backend_not_neighbour'):
        out.append('%d new dsr flows were dropped because the route to their backend has a gateway now: dsr '
                   'backends must be neighbours of the load balancer (or use forwarding: ipip).'
                   % global_counters['dsr_backend_not_neighbour'])
    if global_counters.get('no_neighbour'):
        out.append('%d new flows found no MAC address for their backend: check the backends are reachable '
                   '(ip neigh on the load balancer).' % global_counters['no_neighbour'])
    return out


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type='str', default='xdp_lb'),
                                              flows=dict(type='int', default=0)),
                           supports_check_mode=True)
    if module.params['flows'] < 0:
        module.fail_json(msg='flows is %d: give how many connection-table entries to return, 0 (the default) for '
                             'none' % module.params['flows'])
    try:
        pins = bpf_loader.PinSet(module.params['name'])
        if not pins.exists():
            module.exit_json(changed=False, deployed=False, pin_path=pins.path)
        maps, meta = xdp_deploy.load_existing(pins)
        if maps is None:
            module.fail_json(msg='deployment %s is damaged (%s): run xdp_proxy with state=present to repair it, or '
                                 'state=absent to remove it' % (module.params['name'], meta), pin_path=pins.path)
        try:
            prog_id = pins.prog_id(xdp_deploy.PROG)
            place = xdp_deploy.attachment(meta, prog_id)
            config, consistent = maps.read_config()
            report = xdp_deploy.map_report(maps)
            total = sum(m['memory_bytes_estimate'] for m in report.values())
            per_backend = sum(report[n]['memory_bytes_estimate'] for n in ('lb_backends', 'lb_be_stats'))
            counters = maps.counters(config)
            global_counters = maps.global_counters()
            limits = maps.limits.as_dict()
            flow_bytes = report['lb_conntrack']['memory_bytes_estimate'] + report['lb_snat_ports']['memory_bytes_estimate']
            result = dict(
                changed=False, deployed=True, pin_path=pins.path, prog_id=prog_id,
                attached={'interface': place['link']['ifname'], 'ifindex': place['link']['ifindex'],
                          'netns': place['netns'], 'mode': place['link']['xdp_mode']} if place else None,
                services=config, consistent=consistent, counters=counters,
                global_counters=global_counters, refused_flows=sum(c['refused'] for c in counters),
                advice=advice(counters, global_counters, limits),
                flow_count=maps.flow_count(limit=maps.limits.max_flows), limits=limits,
                maps=report,
                memory={'total_bytes': total,
                        'per_backend_slot_bytes': per_backend // (maps.limits.max_services * maps.limits.max_backends),
                        'per_connection_bytes': flow_bytes // maps.limits.max_flows})
            if module.params['flows'] > 0:
                result['flow_sample'] = flow_sample(maps, module.params['flows'])
        finally:
            maps.close()
    except bpf_loader.LoaderError as e:
        module.fail_json(msg=str(e))
    except bpf_syscall.BpfError as e:
        module.fail_json(msg='reading the pinned maps failed: %s (run as root)' % e, exception=traceback.format_exc())
    status = agent_state.load_status('xdp_proxy', module.params['name'])
    result['health'] = dict((k, status.get(k)) for k in ('health', 'all_backends_down', 'last_restore', 'updated_at')) \
        if isinstance(status, dict) else None
    module.exit_json(**result)


if __name__ == '__main__':
    main()
