# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""User-space half of bpf/skb_drop.bpf.c: event layout, drop reason names, filters, grouping."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import struct

from ansible_collections.ebpf.networking.plugins.module_utils.inet import unmapped

EVENT = struct.Struct('=QQQIIIiHHHBB16s16s16s')
TRACEPOINT_FORMAT = '/sys/kernel/tracing/events/skb/kfree_skb/format'
PROTOCOLS = {'tcp': 6, 'udp': 17, 'icmp': 1, 'icmpv6': 58}
PROTOCOL_NAMES = dict((v, k) for k, v in PROTOCOLS.items())


class DropTraceError(ValueError):
    pass


def reasons_from_format(text):
    """{number: NAME} from the tracepoint's __print_symbolic list."""
    return dict((int(n), name) for n, name in re.findall(r'\{\s*(\d+),\s*"(\w+)"\s*\}', text))


def reasons_from_btf(btf):
    values = btf.enum_values('skb_drop_reason')
    return dict((v, k[len('SKB_DROP_REASON_'):] if k.startswith('SKB_DROP_REASON_') else k)
                for k, v in values.items())


def load_reasons(btf_loader=None, format_path=TRACEPOINT_FORMAT):
    """(names, where they came from): the running kernel's names, never a table of ours."""
    try:
        with open(format_path) as f:
            names = reasons_from_format(f.read())
        if names:
            return names, 'tracepoint format %s' % format_path
    except (IOError, OSError):
        pass
    if btf_loader is not None:
        try:
            return reasons_from_btf(btf_loader()), 'BTF enum skb_drop_reason'
        except Exception:  # pylint: disable=broad-except
            pass
    return {}, 'unavailable (no tracefs format, no BTF): reasons are numbers'


def reason_mask(wanted, names):
    """[4 x u64] bitmask of the wanted reasons, given by name (NETFILTER_DROP) or number."""
    by_name = dict((v, k) for k, v in names.items())
    words = [0, 0, 0, 0]
    for r in wanted or []:
        key = str(r).upper()
        if key.startswith('SKB_DROP_REASON_'):
            key = key[len('SKB_DROP_REASON_'):]
        if key.isdigit():
            number = int(key)
        elif key in by_name:
            number = by_name[key]
        else:
            raise DropTraceError('unknown drop reason %r; this kernel has: %s' % (r, ', '.join(sorted(by_name))))
        if not 0 <= number < 256:
            raise DropTraceError('drop reason %d cannot be filtered (only 0-255)' % number)
        words[number >> 6] |= 1 << (number & 63)
    return words


def decode_event(raw, reasons):
    (ts, location, cgroup, pid, tid, reason, stack_id, protocol, sport, dport, l4proto, family, saddr, daddr,
     comm) = EVENT.unpack_from(raw)
    ev = {'ts_ns': ts, 'location_addr': location, 'cgroup_id': cgroup, 'pid': pid, 'tid': tid,
          'reason_code': reason, 'reason': reasons.get(reason, str(reason)), 'stack_id': stack_id,
          'ethertype': '0x%04x' % protocol, 'comm': comm.split(b'\0', 1)[0].decode('utf-8', 'replace')}
    if family:
        ev.update({'family': 'ipv%d' % family, 'protocol': PROTOCOL_NAMES.get(l4proto, str(l4proto)),
                   'src': unmapped(saddr), 'dst': unmapped(daddr), 'sport': sport, 'dport': dport})
    return ev


def summarize(records):
    """Group by (reason, location, stack), most frequent first."""
    groups = {}
    for r in records:
        key = (r['reason'], r['location'], tuple(r.get('stack') or ()))
        g = groups.get(key)
        if g is None:
            g = groups[key] = {'reason': r['reason'], 'location': r['location'], 'stack': list(key[2]), 'count': 0,
                               'source': r.get('location_source'), 'processes': [], 'flows': []}
        g['count'] += 1
        if r['comm'] not in g['processes']:
            g['processes'].append(r['comm'])
        flow = '%s %s:%s -> %s:%s' % (r.get('protocol'), r.get('src'), r.get('sport'), r.get('dst'), r.get('dport')) \
            if r.get('src') else None
        if flow and flow not in g['flows'] and len(g['flows']) < 10:
            g['flows'].append(flow)
    return sorted(groups.values(), key=lambda g: -g['count'])
