# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bounded drop trace: validate what the user asked, compile bpf/skb_drop.bpf.c, fill the filter,
THEN attach, read events while a command runs, and account for every event not returned.
No ansible import (the module passes run_command)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import os
import shutil
import threading
import time
import traceback

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, drop_trace, kernel_layout, ksym
from ansible_collections.ebpf.networking.plugins.module_utils import netns_names, pcap_filter, xdp_drops
from ansible_collections.ebpf.networking.plugins.module_utils.btf import Btf

MAIN = 'skb_drop.bpf.c'
SOURCES = ('skb_drop.bpf.c', 'skb_drop.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h', 'pcap_match.h')
NOT_SPECIFIED = 'NOT_SPECIFIED'
ERRORS = (drop_trace.DropTraceError, bpf_loader.LoaderError, ksym.SymbolError, kernel_layout.LayoutError,
          pcap_filter.PcapFilterError)


def validate(p, resolve_namespace=netns_names.resolve):
    """Check every option before anything is compiled; returns the filter as keyword arguments for
    drop_trace.pack_filter (reasons still by name). Raises DropTraceError naming the problem."""
    err = drop_trace.DropTraceError
    if p.get('duration') is None or not 0 < p['duration'] <= 600:
        raise err('duration %s is out of range: use 1-600 seconds' % p.get('duration'))
    if 'max_events' in p and (p['max_events'] is None or not 0 < p['max_events'] <= 100000):
        raise err('max_events %s is out of range: use 1-100000' % p.get('max_events'))
    pages = p.get('buffer_pages', 64)
    if not pages or pages < 1 or pages > 4096 or pages & (pages - 1):
        raise err('buffer_pages %s must be a power of two from 1 to 4096' % pages)
    spec = {}
    for key, what in (('sport', 'sport'), ('dport', 'dport')):
        if p.get(key) not in (None, ''):
            spec[key] = drop_trace.parse_ports(p[key], what)
    for key in ('src', 'dst'):
        if p.get(key) not in (None, ''):
            spec[key] = drop_trace.parse_cidr(p[key], key)
    if p.get('protocol'):
        spec['l4proto'] = drop_trace.PROTOCOLS[p['protocol']]
    if p.get('pid') is not None:
        if p['pid'] <= 0:
            raise err('pid %s is not a process id (use a positive number)' % p['pid'])
        spec['pid'] = p['pid']
    if p.get('comm') is not None:
        if not p['comm'] or len(p['comm'].encode()) > 15:
            raise err('comm %r must be 1-15 bytes: the kernel keeps 15 characters of a process name' % p['comm'])
        spec['comm'] = p['comm']
    if p.get('cgroup'):
        if not os.path.isdir(p['cgroup']):
            raise err('cgroup %s does not exist (give a cgroup v2 directory)' % p['cgroup'])
        spec['cgroup_id'] = os.stat(p['cgroup']).st_ino  # a cgroup v2 id is its directory's inode
    if p.get('namespace'):
        try:
            spec['netns'] = resolve_namespace(p['namespace'])
        except ValueError as e:
            raise err(str(e))
    if p.get('interface') not in (None, ''):
        iface = str(p['interface']).strip()
        if iface.isdigit() and 0 < int(iface) < 2 ** 31:
            spec['ifindex'] = int(iface)
        elif iface and len(iface.encode()) <= 15 and '/' not in iface and not any(c.isspace() for c in iface):
            spec['ifname'] = iface
        else:
            raise err('interface %r is neither an interface name (up to 15 characters) nor an index' % iface)
    if p.get('command') is not None:
        if not p['command'] or not p['command'][0]:
            raise err('command is empty: give an argv list such as [curl, -m, "2", http://10.0.0.1/]')
        if not shutil.which(p['command'][0]):
            raise err('command %r was not found on the target (not on PATH, or not executable): give the full '
                      'path or install it' % p['command'][0])
        if not shutil.which('timeout'):
            raise err('coreutils timeout is needed to bound the command')
    return spec


# options both tracing modules take to choose packets and run a command (argument_spec entries)
SELECTION_SPEC = dict(
    duration=dict(type='float', default=5),
    buffer_pages=dict(type='int', default=64),
    command=dict(type='list', elements='str'),
    namespace=dict(type='str'),
    interface=dict(type='str'),
    src=dict(type='str'),
    dst=dict(type='str'),
    sport=dict(type='str'),
    dport=dict(type='str'),
    protocol=dict(type='str', choices=sorted(drop_trace.PROTOCOLS)),
    bpf_sources=dict(type='dict'),
)


def run_in_module(module, tracer):
    """Run a tracer for an AnsibleModule (passed in: no ansible import here) and exit with its result."""
    try:
        result = tracer.run()
    except ERRORS as e:
        module.fail_json(msg=str(e), invocation=bpf_loader.invocation(module.params))
    except Exception as e:  # pylint: disable=broad-except
        module.fail_json(msg='unexpected error: %s' % e, exception=traceback.format_exc(),
                         invocation=bpf_loader.invocation(module.params))
    for w in tracer.warnings:
        module.warn(w)
    module.exit_json(invocation=bpf_loader.invocation(module.params), **result)


class CommandRunner(threading.Thread):
    """Runs the command while the main thread reads events; coreutils' timeout bounds it."""

    def __init__(self, run_command, argv, duration):
        super(CommandRunner, self).__init__()
        self.daemon = True
        self.run_command = run_command
        self.argv = ['timeout', '--kill-after=2', '%g' % duration] + list(argv)
        self.result = {}

    def run(self):
        rc, out, err = self.run_command(self.argv)
        self.result = {'rc': rc, 'stdout': out[-4000:], 'stderr': err[-4000:]}


class Tracer(object):
    """A bounded trace: params as the module got them, run_command(argv) -> (rc, out, err)."""

    def __init__(self, params, run_command, check_mode=False):
        self.p = params
        self.run_command = run_command
        self.check_mode = check_mode
        self.warnings = []


class DropTracer(Tracer):

    def run(self):
        p = self.p
        spec = validate(p)
        sources = p.get('bpf_sources') or {}
        bpf_loader.require_sources(sources, SOURCES + (xdp_drops.SOURCES if p.get('xdp', True) else ()))
        names, reasons_source = drop_trace.load_reasons(Btf.from_file)
        reasons = list(p.get('reasons') or [])
        if p.get('exclude_not_specified') and not reasons:
            reasons = [n for n in names if n < 256 and names[n] != NOT_SPECIFIED]
        spec['reasons'] = drop_trace.reason_mask(reasons, names) if reasons else [0, 0, 0, 0]
        packed = drop_trace.pack_filter(**spec)
        pcap_header = pcap_filter.header(p['pcap_filter']) if p.get('pcap_filter') is not None else None
        if self.check_mode:
            # nothing is compiled or attached, the command is not run
            return dict(changed=bool(p.get('command')), records=[], summary=[], reasons_source=reasons_source,
                        truncated=False, stats={}, symbolizer={}, check_mode_note='check mode: inputs validated, '
                        'nothing compiled, attached or run')
        bpf_loader.require_bcc()
        cflags = kernel_layout.cflags() + ['-DDROP_PERF_PAGES=%d' % p['buffer_pages']]
        if not p.get('stacks', True):
            cflags.append('-DDROP_NO_STACKS=1')
        if pcap_header is not None:
            sources = dict(sources, **{'pcap_filter.h': pcap_header})
            cflags.append('-DDROP_PCAP_FILTER=1')
        bpf, _fds = bpf_loader.compile_and_load(sources, MAIN, cflags, {})
        xbpf = None
        raw_events = []
        xdp_events = []
        lost = [0, 0]

        def on_event(_cpu, data, size):
            if len(raw_events) < p['max_events']:
                raw_events.append(ctypes.string_at(data, size))

        def on_lost(count):
            lost[0] += count

        def on_xdp(_cpu, data, size):
            if len(xdp_events) < p['max_events']:
                xdp_events.append(ctypes.string_at(data, size))

        def on_xdp_lost(count):
            lost[1] += count

        command_result = None
        lb_before = xdp_drops.lb_drop_counters() if p.get('xdp', True) else {}
        try:
            if p.get('xdp', True):
                xbpf, _xfds = bpf_loader.compile_and_load(sources, xdp_drops.MAIN, kernel_layout.cflags(), {})
                table = xbpf['xdp_filter']
                table[ctypes.c_int(0)] = table.Leaf.from_buffer_copy(packed)
                xbpf['xdp_events'].open_perf_buffer(on_xdp, page_cnt=p['buffer_pages'], lost_cb=on_xdp_lost)
                xbpf.attach_raw_tracepoint(tp=b'xdp_exception', fn_name=b'xdp_on_exception')
                xbpf.attach_raw_tracepoint(tp=b'xdp_redirect_err', fn_name=b'xdp_on_redirect_err')
            table = bpf['drop_filter']
            table[ctypes.c_int(0)] = table.Leaf.from_buffer_copy(packed)  # before attaching: nothing unfiltered
            bpf['drop_events'].open_perf_buffer(on_event, page_cnt=p['buffer_pages'], lost_cb=on_lost)
            untracked = kernel_layout.track_softirqs(bpf, 'drop')  # before kfree_skb: every drop's context is known
            if untracked:
                self.warnings.append(untracked)
            bpf.attach_raw_tracepoint(tp=b'kfree_skb', fn_name=b'drop_on_kfree_skb')
            started = time.time()
            deadline = started + p['duration']
            runner = None
            if p.get('command'):
                runner = CommandRunner(self.run_command, p['command'], p['duration'])
                runner.start()
            polls = [bpf] + ([xbpf] if xbpf is not None else [])
            while time.time() < deadline and len(raw_events) < p['max_events']:
                for b in polls:
                    b.perf_buffer_poll(timeout=100 // len(polls))
                if runner is not None and not runner.is_alive():
                    grace = time.time() + 0.5  # drain what the command's last packets caused
                    while time.time() < grace:
                        for b in polls:
                            b.perf_buffer_poll(timeout=25)
                    break
            bpf.detach_raw_tracepoint(tp=b'kfree_skb')
            if xbpf is not None:
                xbpf.detach_raw_tracepoint(tp=b'xdp_exception')
                xbpf.detach_raw_tracepoint(tp=b'xdp_redirect_err')
            for b in polls:
                b.perf_buffer_poll(timeout=10)  # what was submitted before the detach
            traced = time.time() - started
            if runner is not None:
                runner.join(p['duration'] + 5)
                command_result = runner.result
                if command_result.get('rc') == 124:
                    self.warnings.append('command still ran after duration %ss and was stopped' % p['duration'])
            counters = drop_trace.counter_totals(
                [list(bpf['drop_counters'][ctypes.c_int(i)]) for i in range(len(drop_trace.COUNTERS))])
            xdp = None
            if xbpf is not None:
                xcounters = dict((name, sum(xbpf['xdp_counters'][ctypes.c_int(i)]))
                                 for i, name in enumerate(xdp_drops.COUNTERS))
                xcounters['lost'] = lost[1]
                xdp = {'events': xdp_events, 'stats': xcounters,
                       'load_balancers': xdp_drops.lb_counter_delta(lb_before, xdp_drops.lb_drop_counters())}
        finally:
            bpf.cleanup()
            if xbpf is not None:
                xbpf.cleanup()
        result = self.report(raw_events, names, reasons_source, counters, lost[0], traced, command_result)
        if xdp is not None:
            self.add_xdp(result, xdp)
        return result

    def add_xdp(self, result, xdp):
        """XDP exceptions and failed redirects, and the load balancers' own drops, into the same report."""
        labels = netns_names.NetnsNames()
        records = []
        for raw in xdp['events']:
            ev = xdp_drops.decode_event(raw)
            ev['netns'] = labels.describe(ev.pop('netns_inode'))
            records.append(ev)
        stats = xdp['stats']
        stats['returned'] = len(records)
        result['xdp'] = {'records': records, 'stats': stats, 'load_balancers': xdp['load_balancers'],
                         'truncated': stats['submitted'] + stats['submit_failed'] > len(records)}
        result['summary'] = drop_trace.summarize(result['records'] + records)
        if stats['lost'] or stats['submit_failed']:
            lost = stats['lost'] + stats['submit_failed']
            self.warnings.append('%d XDP drop events were lost in the perf buffer' % lost)

    def report(self, raw_events, names, reasons_source, counters, lost, traced, command_result):
        symbolizer = ksym.Symbolizer.for_running_kernel(self.p.get('vmlinux'), self.p.get('module_debug_dirs'))
        labels = netns_names.NetnsNames()
        records = []
        for raw in raw_events:
            ev = drop_trace.decode_event(raw, names)
            ev['netns'] = labels.describe(ev.pop('netns_inode'))
            addr = ev.pop('location_addr')
            frames = ev.pop('stack_addrs')
            ev['location'] = symbolizer.name(addr)
            if self.p.get('stacks', True):
                ev['stack'] = drop_trace.from_location([symbolizer.name(a) for a in frames], ev['location'])
            records.append(ev)
        symbolizer.add_sources(records)
        returned = len(records)
        stats = dict(counters)
        stats.update({'lost': lost, 'returned': returned, 'seconds': round(traced, 3),
                      'not_returned': max(counters['matched'] - returned, 0)})
        # matched drops the caller does not get: perf buffer overruns (lost, submit_failed) or max_events
        truncated = counters['matched'] > returned
        if lost or counters['submit_failed']:
            self.warnings.append('%d drop events were lost in the perf buffer (%d could not be submitted): raise '
                                 'buffer_pages or narrow the filter' % (lost, counters['submit_failed']))
        if counters['no_stack']:
            self.warnings.append('%d drops have no stack (bpf_get_stack failed)' % counters['no_stack'])
        result = dict(changed=command_result is not None, records=records, summary=drop_trace.summarize(records),
                      reasons_source=reasons_source, symbolizer=symbolizer.info(), stats=stats,
                      truncated=truncated)
        if command_result is not None:
            result['command_result'] = command_result
        return result
