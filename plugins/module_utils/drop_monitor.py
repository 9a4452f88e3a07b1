# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The continuous drop counter (bpf/drop_monitor.bpf.c): load and pin it once, read its counts,
render them as Prometheus text. No ansible import: the host agent calls these.

    ensure_drop_monitor(sources=None, bpf_dir=None) -> {'changed', 'pin_dir', 'prog_id'}
    read_drop_counts(pin_dir=PIN_DIR) -> {'counts': [{reason, reason_code, location, netns, netns_inode,
                                                     interface, ifindex, count}], 'overflow': int}
    prometheus_lines(read_drop_counts()) -> ['# HELP ...', '# TYPE ...', 'ebpf_networking_drops_total{...} N']
    remove_drop_monitor(pin_dir=PIN_DIR) -> bool
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall, drop_trace
from ansible_collections.ebpf.networking.plugins.module_utils import kernel_layout, ksym, netns_names
from ansible_collections.ebpf.networking.plugins.module_utils.btf import Btf

NAME = 'drop_monitor'
PIN_DIR = os.path.join(bpf_loader.PIN_ROOT, NAME)
MAIN = 'drop_monitor.bpf.c'
SOURCES = ('drop_monitor.bpf.c', 'drop_monitor.h', 'kernel_layout.h')
PROG = 'drop_monitor_count'
LINK = 'link_kfree_skb'
MAPS = ('drop_counts', 'drop_monitor_meta')
KEY = struct.Struct('=QIII16sI')
U32 = struct.Struct('=I')
METRIC = 'ebpf_networking_drops_total'
BPF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bpf')


class MonitorError(Exception):
    """What is wrong and how to fix it."""


def read_sources(bpf_dir=None):
    d = bpf_dir or BPF_DIR
    out = {}
    for name in SOURCES:
        try:
            with open(os.path.join(d, name)) as f:
                out[name] = f.read()
        except (IOError, OSError) as e:
            raise MonitorError('BPF source %s is missing (%s): give sources or the collection\'s bpf/ directory'
                               % (name, e))
    return out


def status(pin_dir=PIN_DIR):
    """{'running': bool, 'prog_id', 'missing': [...]}: running means program, maps and link are pinned."""
    wanted = ['prog_' + PROG, LINK] + ['map_' + m for m in MAPS]
    missing = [w for w in wanted if not os.path.exists(os.path.join(pin_dir, w))]
    out = {'running': not missing, 'missing': missing, 'pin_dir': pin_dir, 'prog_id': None}
    if os.path.exists(os.path.join(pin_dir, 'prog_' + PROG)):
        try:
            fd = bpf_syscall.obj_get(os.path.join(pin_dir, 'prog_' + PROG))
            try:
                out['prog_id'] = bpf_syscall.prog_info(fd)['id']
            finally:
                os.close(fd)
        except (OSError, bpf_syscall.BpfError):
            out['running'] = False
    return out


def ensure_drop_monitor(sources=None, bpf_dir=None, pin_dir=PIN_DIR):
    """Load, attach and pin the counter unless it already runs. Idempotent; returns
    {'changed', 'pin_dir', 'prog_id'}. Raises MonitorError (or bpf_loader.LoaderError) with the fix."""
    current = status(pin_dir)
    if current['running']:
        return {'changed': False, 'pin_dir': pin_dir, 'prog_id': current['prog_id']}
    bpf_loader.require_bpffs()
    bpf_loader.require_bcc()
    sources = sources or read_sources(bpf_dir)
    try:
        cflags = kernel_layout.cflags()
    except kernel_layout.LayoutError as e:
        raise MonitorError(str(e))
    pins = bpf_loader.PinSet(os.path.basename(pin_dir), root=os.path.dirname(pin_dir))
    bpf, _fds = bpf_loader.compile_and_load(sources, MAIN, cflags, {})
    try:
        prog = bpf.load_func(PROG.encode(), bpf_loader.BPF.RAW_TRACEPOINT)
        link_fd = bpf_loader._bcc.lib.bpf_attach_raw_tracepoint(prog.fd, b'kfree_skb')
        if link_fd < 0:
            raise MonitorError('attaching to the kfree_skb raw tracepoint failed (errno %d)' % -link_fd)
        try:
            map_fds = dict((m, bpf_loader.table_fd(bpf, m)) for m in MAPS)
            pins.pin_staging({PROG: prog.fd}, map_fds)
            bpf_syscall.obj_pin(link_fd, os.path.join(pins.staging, LINK))  # the link keeps it attached
            pins.commit_staging()
        finally:
            os.close(link_fd)
    except Exception:
        pins.clear_staging()
        raise
    finally:
        bpf.cleanup()
    return {'changed': True, 'pin_dir': pin_dir, 'prog_id': status(pin_dir)['prog_id']}


def remove_drop_monitor(pin_dir=PIN_DIR):
    """Unpin everything (removing the link pin detaches the program). True when something was there."""
    pins = bpf_loader.PinSet(os.path.basename(pin_dir), root=os.path.dirname(pin_dir))
    return pins.remove()


def raw_counts(pin_dir=PIN_DIR):
    """([(key tuple, total over CPUs)], overflow) straight from the pinned maps."""
    ncpus = bpf_syscall.possible_cpus()
    try:
        counts_fd = bpf_syscall.obj_get(os.path.join(pin_dir, 'map_drop_counts'))
    except (OSError, bpf_syscall.BpfError) as e:
        raise MonitorError('the drop monitor is not running (%s): run ensure_drop_monitor() or the '
                           'ebpf.networking.drop_monitor module with state=present' % e)
    rows = []
    try:
        for key in bpf_syscall.map_keys(counts_fd, KEY.size):
            raw = bpf_syscall.map_lookup(counts_fd, key, 8 * ncpus)
            if raw is not None:
                rows.append((KEY.unpack(key), sum(struct.unpack('=%dQ' % ncpus, raw))))
    finally:
        os.close(counts_fd)
    overflow = 0
    try:
        meta_fd = bpf_syscall.obj_get(os.path.join(pin_dir, 'map_drop_monitor_meta'))
        try:
            raw = bpf_syscall.map_lookup(meta_fd, U32.pack(0), 8 * ncpus)
            overflow = sum(struct.unpack('=%dQ' % ncpus, raw)) if raw else 0
        finally:
            os.close(meta_fd)
    except (OSError, bpf_syscall.BpfError):
        pass
    return rows, overflow


def describe_counts(rows, reasons, name_of, label_netns):
    """Rows of raw_counts as dicts, most frequent first. name_of(addr) -> 'func+0xoff', label_netns(inode)."""
    out = []
    for (location, reason, netns, ifindex, ifname, _pad), count in rows:
        iface = ifname.split(b'\0', 1)[0].decode('utf-8', 'replace')
        out.append({'reason': reasons.get(reason, str(reason)), 'reason_code': reason, 'location': name_of(location),
                    'netns': label_netns(netns), 'netns_inode': netns, 'interface': iface or None,
                    'ifindex': ifindex, 'count': count})
    out.sort(key=lambda r: (-r['count'], r['reason'], r['location']))
    return out


def read_drop_counts(pin_dir=PIN_DIR):
    """{'counts': [...], 'overflow': int, 'reasons_source': str} of the pinned counter."""
    rows, overflow = raw_counts(pin_dir)
    reasons, source = drop_trace.load_reasons(Btf.from_file)
    try:
        kallsyms = ksym.Kallsyms()
        name_of = kallsyms.format
    except (IOError, OSError, ksym.SymbolError):
        name_of = '0x{0:x}'.format
    labels = netns_names.NetnsNames()
    return {'counts': describe_counts(rows, reasons, name_of, labels.label), 'overflow': overflow,
            'reasons_source': source}


def _label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def prometheus_lines(report):
    """Prometheus text exposition lines for read_drop_counts()'s result."""
    lines = ['# HELP %s Packets dropped by the kernel (kfree_skb), by reason, location, network namespace and '
             'interface.' % METRIC, '# TYPE %s counter' % METRIC]
    for r in report.get('counts', []):
        lines.append('%s{reason="%s",location="%s",netns="%s",interface="%s"} %d'
                     % (METRIC, _label(r['reason']), _label(r['location']), _label(r['netns']),
                        _label(r['interface'] or ''), r['count']))
    lines += ['# HELP ebpf_networking_drops_uncounted_total Drops not counted because the key table was full.',
              '# TYPE ebpf_networking_drops_uncounted_total counter',
              'ebpf_networking_drops_uncounted_total %d' % report.get('overflow', 0)]
    return lines
