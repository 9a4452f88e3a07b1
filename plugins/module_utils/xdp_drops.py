# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""XDP drops in the same report as kfree_skb drops: events of bpf/xdp_drop.bpf.c (exceptions and
failed redirects, with program id/name and interface) and the drop counters the collection's XDP
load balancers keep in their pinned maps, read only, through xdp_lb_maps' counter API.
No ansible import."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_syscall
from ansible_collections.ebpf.networking.plugins.module_utils.drop_trace import WHERE, decode_where
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import NOT_DROP_COUNTERS

MAIN = 'xdp_drop.bpf.c'
SOURCES = ('xdp_drop.bpf.c', 'xdp_drop.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h')
EVENT_HEAD = struct.Struct('=QIIIi16s')
KINDS = {1: 'xdp_exception', 2: 'xdp_redirect_err'}
ACTIONS = {0: 'XDP_ABORTED', 1: 'XDP_DROP', 2: 'XDP_PASS', 3: 'XDP_TX', 4: 'XDP_REDIRECT'}
COUNTERS = ('seen', 'submitted', 'submit_failed')
PIN_ROOT = '/sys/fs/bpf/ebpf_networking'


def decode_event(raw):
    ts, kind, prog_id, action, err, name = EVENT_HEAD.unpack_from(raw)
    ev = {'ts_ns': ts, 'event': KINDS.get(kind, str(kind)), 'prog_id': prog_id,
          'prog_name': name.split(b'\0', 1)[0].decode('utf-8', 'replace'),
          'action': ACTIONS.get(action, 'invalid action %d' % action)}
    if kind == 2:
        ev['error'] = err
        ev['errno'] = os.strerror(-err) if err < 0 else None
    ev.update(decode_where(raw, EVENT_HEAD.size))
    # what a kfree_skb record has, so both kinds summarize together
    ev['reason'] = 'XDP_EXCEPTION' if kind == 1 else 'XDP_REDIRECT_FAILED'
    ev['location'] = 'xdp prog %s (id %d) %s' % (ev['prog_name'] or '?', prog_id, ev['action'])
    ev['process'] = None
    return ev


def event_size():
    return EVENT_HEAD.size + WHERE.size


def lb_drop_counters(root=PIN_ROOT, maps_module=None):
    """{deployment: {'counters': {...}, 'ifname', 'netns'} or {'error': ...}} of every pinned XDP load
    balancer, read only. Tolerant: a deployment whose maps are missing or of another layout (the
    datapath is changing) gives an error entry, never an exception."""
    if maps_module is None:
        from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_maps as maps_module
    out = {}
    if not os.path.isdir(root):
        return out
    for name in sorted(os.listdir(root)):
        global_map = os.path.join(root, name, 'map_lb_global')
        if name.startswith('_') or not os.path.exists(global_map):
            continue
        fds = {}
        try:
            fds['lb_global'] = bpf_syscall.obj_get(global_map)
            # a datapath of another layout would make the kernel write past our buffers: check first
            _expect_layout(fds['lb_global'], 'lb_global', 8)
            meta_path = os.path.join(root, name, 'map_lb_meta')
            if os.path.exists(meta_path):
                meta_fd = bpf_syscall.obj_get(meta_path)
                if bpf_syscall.map_info(meta_fd)['value_size'] == maps_module.META.size:
                    fds['lb_meta'] = meta_fd
                else:
                    os.close(meta_fd)
            maps = maps_module.LbMaps(fds, maps_module.Limits())
            entry = {'counters': maps.global_counters()}
            if 'lb_meta' in fds:
                try:
                    meta = maps.read_meta()
                    entry.update({'ifname': meta.get('ifname'), 'netns': meta.get('netns')})
                except Exception:  # pylint: disable=broad-except
                    pass  # the meta layout may change with the datapath; counters are what matter here
            out[name] = entry
        except Exception as e:  # pylint: disable=broad-except
            out[name] = {'error': 'cannot read the counters of %s: %s' % (name, e)}
        finally:
            for fd in fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
    return out


def _expect_layout(fd, name, value_size):
    """The counters' value size is the layout; their number is not: pins of a version from before a counter
    was added read it as 0 (a lookup past the end finds nothing)."""
    info = bpf_syscall.map_info(fd)
    if info['value_size'] != value_size:
        raise ValueError('map %s has value size %d, not the %d-byte counters this reader knows '
                         '(another datapath version)' % (name, info['value_size'], value_size))


def lb_counter_delta(before, after):
    """Per deployment, the counters that moved between two lb_drop_counters() reads, and the sum of those
    that count dropped packets (not passes, reclaims, scans, moves or ICMP sent: NOT_DROP_COUNTERS)."""
    out = {}
    for name, entry in after.items():
        if 'counters' not in entry:
            out[name] = entry
            continue
        old = before.get(name, {}).get('counters', {})
        delta = dict((k, v - old.get(k, 0)) for k, v in entry['counters'].items())
        drops = dict((k, v) for k, v in delta.items() if k not in NOT_DROP_COUNTERS)
        out[name] = {'during_trace': delta, 'drops_during_trace': sum(drops.values()), 'totals': entry['counters'],
                     'ifname': entry.get('ifname'), 'netns': entry.get('netns')}
    return out
