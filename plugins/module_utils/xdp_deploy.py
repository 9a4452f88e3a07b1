# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an XDP load balancer deployment stands, from its pins and the interface it is attached to.

Shared by xdp_proxy (which changes things) and xdp_stats (which only reads).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import (
    ADDR, ADDR_CACHE_SLOT, ADDR_KEY, BACKEND, COUNTERS, DERIVED_MAPS, FALLBACK_HZ, FLOW, FLOW_KEY, LAYOUT_VERSION,
    META, NEXTHOP, SERVICE, SERVICE_KEY, SNAT_SLOT, U32, U64, LbMaps, Limits, MAP_NAMES)

PROG = 'xdp_lb'
PEER_PROG = 'xdp_peer_pass'

# (key size, value size; None = per-CPU, checked by key only) of every map, as this version packs them
MAP_SIZES = {
    'lb_services': (SERVICE_KEY.size, SERVICE.size), 'lb_addrs': (ADDR_KEY.size, ADDR.size),
    'lb_addr_cache': (U32.size, ADDR_CACHE_SLOT.size),
    'lb_backends': (U32.size, BACKEND.size), 'lb_maglev': (U32.size, U32.size), 'lb_nexthops': (U32.size, NEXTHOP.size),
    'lb_conntrack': (FLOW_KEY.size, FLOW.size), 'lb_snat_ports': (U32.size, SNAT_SLOT.size),
    'lb_svc_stats': (U32.size, COUNTERS.size), 'lb_be_stats': (U32.size, COUNTERS.size),
    'lb_global': (U32.size, U64.size), 'lb_meta': (U32.size, META.size),
}


def open_maps(pins, names=MAP_NAMES, staged=False):
    """fds of the pinned maps; a derived map the pins lack (a version before it) is left out."""
    fds = {}
    try:
        for name in names:
            if not staged and name in DERIVED_MAPS and not os.path.exists(pins.map_path(name)):
                continue
            fds[name] = pins.staged_map_fd(name) if staged else pins.open_map(name)
    except bpf_syscall.BpfError:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def limits_from_meta(meta):
    return Limits(meta['max_services'], meta['max_backends'], meta['ring_size'], meta['max_flows'],
                  meta['snat_port_min'], meta['snat_port_max'], meta['max_snat_ips'], meta['timeouts'])


def load_existing(pins):
    """(LbMaps, meta) of a pinned deployment, or (None, reason) when the pins are missing or damaged."""
    if not pins.exists():
        return None, 'not deployed'
    # a derived map may be missing: it is rebuilt by the reload that the changed program needs anyway
    missing = [n for n in MAP_NAMES if n not in DERIVED_MAPS and not os.path.exists(pins.map_path(n))]
    if not pins.has_prog(PROG):
        missing.append('prog_' + PROG)
    if missing:
        return None, 'pins incomplete (missing %s)' % ', '.join(missing)
    fds = open_maps(pins)
    probe = LbMaps(fds, Limits(hz=FALLBACK_HZ))
    try:
        wrong = layout_mismatches(fds)
        if wrong:
            # pins of another version: reading them with our sizes could overrun buffers
            raise ValueError('pins from another version of the program (%s); they are replaced, and their flows '
                             'reset' % ', '.join(wrong))
        meta = probe.read_meta()
        if meta['layout_version'] != LAYOUT_VERSION:
            raise ValueError('flow-table layout %d, this version uses %d' % (meta['layout_version'], LAYOUT_VERSION))
        maps = LbMaps(fds, limits_from_meta(meta))
    except Exception as e:  # pylint: disable=broad-except
        probe.close()
        return None, 'pins unreadable (%s)' % e
    return maps, meta


def pinned_flow_count(pins):
    """Entries in a pinned lb_conntrack of any version (keys only, their size from the map), or 0."""
    if not os.path.exists(pins.map_path('lb_conntrack')):
        return 0
    try:
        fd = pins.open_map('lb_conntrack')
    except bpf_syscall.BpfError:
        return 0
    try:
        info = bpf_syscall.map_info(fd)
        return len(bpf_syscall.map_keys(fd, info['key_size'], limit=info['max_entries']))
    except bpf_syscall.BpfError:
        return 0
    finally:
        os.close(fd)


def layout_mismatches(fds):
    """Maps whose key or value size is not what this version packs: 'name (key K, value V)'."""
    out = []
    for name, (key, value) in MAP_SIZES.items():
        if name not in fds:
            continue
        info = bpf_syscall.map_info(fds[name])
        if info['key_size'] != key or (value is not None and info['value_size'] != value):
            out.append('%s key %d value %d' % (name, info['key_size'], info['value_size']))
    return out


def map_report(maps):
    out = {}
    for name, fd in maps.fds.items():
        info = bpf_syscall.map_info(fd)
        out[name] = dict((k, info[k]) for k in ('id', 'type', 'key_size', 'value_size', 'max_entries'))
        out[name]['memory_bytes_estimate'] = map_memory_estimate(info, maps.ncpus)
    return out


def map_memory_estimate(info, ncpus):
    """Rough kernel memory of a map (what bpftool's memlock shows, within page rounding)."""
    value = (info['value_size'] + 7) // 8 * 8
    if info['type'] in ('percpu_array', 'percpu_hash', 'lru_percpu_hash'):
        value *= ncpus
    key = (info['key_size'] + 7) // 8 * 8
    if info['type'] in ('array', 'percpu_array'):
        return info['max_entries'] * value
    # hash element: list node + hash + key + value, about 48 bytes of overhead
    return info['max_entries'] * (48 + key + value)


def attachment(meta, pinned_prog_id):
    """Where the pinned program is attached now, per its meta: dict or None."""
    label = meta.get('netns') or 'host'
    try:
        path = netns_path_from_label(label)
    except bpf_loader.LoaderError:
        return None
    if path and not os.path.exists(path):
        return None
    try:
        with bpf_loader.in_netns(path):
            if path and bpf_loader.netns_inode(path) != meta.get('netns_ino'):
                return None
            link = bpf_loader.link_info(meta['ifname']) if meta.get('ifname') else None
    except bpf_loader.LoaderError:
        return None
    if link and link['xdp_prog_id'] == pinned_prog_id:
        return {'netns_path': path, 'netns': label, 'link': link}
    return None


def netns_path_from_label(label):
    if label.startswith('container:'):
        return bpf_loader.resolve_netns(container=label.split(':', 1)[1])[0]
    if label.startswith('netns:'):
        return bpf_loader.resolve_netns(netns=label.split(':', 1)[1])[0]
    return None
