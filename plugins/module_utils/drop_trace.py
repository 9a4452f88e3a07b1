# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""User-space half of bpf/skb_drop.bpf.c: filter and event layouts, drop reason names, grouping.
No ansible import."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import re
import struct

from ansible_collections.ebpf.networking.plugins.module_utils.inet import mapped, unmapped

# struct skb_filter (bpf/skb_filter.h)
FILTER = struct.Struct('=4QQIIIHHHHBBBBB3x16s16s16s16s4x')
# struct where (bpf/kernel_layout.h) and struct skb_flow (bpf/skb_flow.h)
WHERE = struct.Struct('=II16sBBBB')
FLOW = struct.Struct('=16s16sHHHBBB3x')
# struct drop_event (bpf/skb_drop.h) up to its stack[]
EVENT_HEAD = struct.Struct('=QQQQIIIi16s')
EVENT_FIXED = EVENT_HEAD.size + WHERE.size + FLOW.size

TRACEPOINT_FORMAT = '/sys/kernel/tracing/events/skb/kfree_skb/format'
PROTOCOLS = {'tcp': 6, 'udp': 17, 'icmp': 1, 'icmpv6': 58, 'sctp': 132, 'gre': 47, 'esp': 50}
PROTOCOL_NAMES = dict((v, k) for k, v in PROTOCOLS.items())
CONTEXTS = {0: 'unknown', 1: 'process', 2: 'kernel_thread', 3: 'interrupt'}
# softirq vectors (include/linux/interrupt.h; unchanged since 4.5 renamed BLOCK_IOPOLL to IRQ_POLL)
SOFTIRQS = ('HI', 'TIMER', 'NET_TX', 'NET_RX', 'BLOCK', 'IRQ_POLL', 'TASKLET', 'SCHED', 'HRTIMER', 'RCU')
IF_SOURCES = {0: None, 1: 'device', 2: 'socket'}
FRAGMENTS = {0: None, 1: 'first', 2: 'later'}
COUNTERS = ('seen', 'matched', 'submitted', 'submit_failed', 'no_stack')


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
        key = str(r).strip().upper()
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


def parse_cidr(text, what):
    """(16-byte mapped network address, prefix bits on it) from an address or CIDR."""
    try:
        net = ipaddress.ip_network(u'%s' % str(text).strip(), strict=False)
    except ValueError:
        raise DropTraceError('%s %r is not an IP address or CIDR (e.g. 10.0.0.5 or 10.0.0.0/24 or fd00::/64)'
                             % (what, text))
    bits = net.prefixlen + (96 if net.version == 4 else 0)
    return mapped(net.network_address), bits


def parse_ports(value, what):
    """(lo, hi) inclusive from 80, '80' or '8000-8080'."""
    text = str(value).strip()
    m = re.match(r'^(\d+)(?:\s*-\s*(\d+))?$', text)
    if not m:
        raise DropTraceError('%s %r is not a port or range (e.g. 80 or 8000-8080)' % (what, value))
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
        raise DropTraceError('%s %r is out of range: use ports 1-65535, low-high with low <= high' % (what, value))
    return lo, hi


def pack_filter(reasons=(0, 0, 0, 0), cgroup_id=0, pid=0, netns=0, ifindex=0, sport=None, dport=None, l4proto=0,
                src=None, dst=None, comm=None, ifname=None):
    """struct skb_filter as bytes. src/dst are (address, bits) from parse_cidr, ports (lo, hi)."""
    saddr, sbits = src or (b'\0' * 16, 0)
    daddr, dbits = dst or (b'\0' * 16, 0)
    slo, shi = sport or (0, 0)
    dlo, dhi = dport or (0, 0)
    return FILTER.pack(reasons[0], reasons[1], reasons[2], reasons[3], cgroup_id, pid, netns, ifindex, slo, shi,
                       dlo, dhi, l4proto, sbits, dbits, 1 if comm else 0, 1 if ifname else 0,
                       (comm or '').encode()[:15], (ifname or '').encode()[:15], saddr, daddr)


def decode_where(raw, offset=0):
    netns, ifindex, ifname, if_source, context, has_socket, softirq = WHERE.unpack_from(raw, offset)
    return {'netns_inode': netns, 'ifindex': ifindex, 'ifname': ifname.split(b'\0', 1)[0].decode('utf-8', 'replace'),
            'interface_from': IF_SOURCES.get(if_source), 'context': CONTEXTS.get(context, str(context)),
            'softirq': softirq_name(softirq), 'socket': bool(has_socket)}


def softirq_name(vec_plus_one):
    """The softirq a CPU was serving (struct where's softirq: vector + 1), or None outside one."""
    if not vec_plus_one:
        return None
    vec = vec_plus_one - 1
    return SOFTIRQS[vec] if vec < len(SOFTIRQS) else 'vector %d' % vec


def decode_flow(raw, offset=0):
    saddr, daddr, ethertype, sport, dport, l4proto, family, fragment = FLOW.unpack_from(raw, offset)
    out = {'ethertype': '0x%04x' % ethertype}
    if family:
        out.update({'family': 'ipv%d' % family, 'protocol': PROTOCOL_NAMES.get(l4proto, str(l4proto)),
                    'src': unmapped(saddr), 'dst': unmapped(daddr)})
        if FRAGMENTS.get(fragment):
            out['fragment'] = FRAGMENTS[fragment]
        if l4proto in (6, 17) and fragment != 2:
            out.update({'sport': sport, 'dport': dport})
    return out


def decode_event(raw, reasons):
    """A record: reason, where (namespace, interface), who (only in process context), flow, stack."""
    ts, location, cgroup, skbaddr, pid, tid, reason, stack_bytes, comm = EVENT_HEAD.unpack_from(raw)
    where = decode_where(raw, EVENT_HEAD.size)
    ev = {'ts_ns': ts, 'location_addr': location, 'skbaddr': '0x%x' % skbaddr, 'reason_code': reason,
          'reason': reasons.get(reason, str(reason))}
    ev.update(where)
    ev.update(decode_flow(raw, EVENT_HEAD.size + WHERE.size))
    ev['process'] = None
    if where['context'] == 'process':
        ev['process'] = {'pid': pid, 'tid': tid, 'comm': comm.split(b'\0', 1)[0].decode('utf-8', 'replace'),
                         'cgroup_id': cgroup}
    frames = []
    if stack_bytes > 0:
        count = min(stack_bytes, len(raw) - EVENT_FIXED) // 8
        frames = [f for f in struct.unpack_from('=%dQ' % count, raw, EVENT_FIXED) if f]
    ev['stack_addrs'] = frames
    ev['stack_error'] = stack_bytes if stack_bytes < 0 else None
    return ev


def from_location(stack, location):
    """The stack from the dropping function on: the frames above it are the tracing machinery
    (bpf_trace_run, kfree_skb itself)."""
    for i, frame in enumerate(stack):
        if frame == location:
            return stack[i:]
    return stack


def flow_text(r):
    if not r.get('src'):
        return None
    if 'sport' in r:
        return '%s %s:%s -> %s:%s' % (r['protocol'], r['src'], r['sport'], r['dst'], r['dport'])
    return '%s %s -> %s' % (r['protocol'], r['src'], r['dst'])


def summarize(records, max_stacks=3, max_flows=10):
    """Group by (reason, location), most frequent first, with the namespaces, interfaces, contexts,
    softirqs, processes (process context only), flows and distinct stacks seen in each group."""
    groups = {}
    for r in records:
        key = (r['reason'], r['location'])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {'reason': r['reason'], 'location': r['location'], 'count': 0,
                               'source': r.get('location_source'), 'namespaces': [], 'interfaces': [],
                               'contexts': [], 'softirqs': [], 'processes': [], 'flows': [], 'stacks': []}
        g['count'] += 1
        _add(g['namespaces'], r.get('netns', {}).get('name'))
        if r.get('ifname') or r.get('ifindex'):
            _add(g['interfaces'], '%s (%s)' % (r.get('ifname') or '?', r.get('ifindex')))
        _add(g['contexts'], r.get('context'))
        _add(g['softirqs'], r.get('softirq'))
        if r.get('process'):
            _add(g['processes'], r['process']['comm'])
        if len(g['flows']) < max_flows:
            _add(g['flows'], flow_text(r))
        stack = r.get('stack')
        if stack:
            for s in g['stacks']:
                if s['frames'] == stack:
                    s['count'] += 1
                    break
            else:
                g['stacks'].append({'frames': stack, 'count': 1})
    out = sorted(groups.values(), key=lambda g: -g['count'])
    for g in out:
        g['stacks'] = sorted(g['stacks'], key=lambda s: -s['count'])[:max_stacks]
    return out


def _add(items, value):
    if value is not None and value not in items:
        items.append(value)


def counter_totals(per_cpu_rows):
    """{name: total} from [[per-cpu values] for each CNT_* slot]."""
    return dict((name, sum(per_cpu_rows[i]) if i < len(per_cpu_rows) else 0) for i, name in enumerate(COUNTERS))
