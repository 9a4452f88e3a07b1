#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: skb_drop_trace
short_description: Find where and why the kernel dropped packets
version_added: 0.1.0
description:
  - Attaches C(bpf/skb_drop.bpf.c) to the C(skb:kfree_skb) tracepoint (no kprobes needed) for a bounded
    time, optionally while running a command, and returns every dropped packet that passes the
    filters - process, 5-tuple, drop reason by name, the kernel function and offset that dropped it,
    and the kernel stack - plus a summary grouped by reason, location and stack.
  - Drop reason names come from the running kernel (the tracepoint's format, else BTF), never from a
    table of ours. C(struct sk_buff) offsets come from the kernel's BTF, so mismatched headers do not
    garble addresses.
  - With I(vmlinux) (or one found in the usual debug-symbol places) locations and stack frames also
    get source file and line, inlined frames included, as the kernel's faddr2line does.
  - Nothing is pinned. The tracepoint attachment belongs to the module's process and goes with it.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with tracepoints and BPF (4.7+), the skb:kfree_skb tracepoint with a reason field (5.17+)
  - tracefs mounted, bcc and kernel headers on the target; binutils for source lines
attributes:
  check_mode:
    support: full
    description: Tracing changes nothing, so it runs in check mode too; I(command) is not run in check mode.
  diff_mode:
    support: none
    description: Nothing changes.
options:
  duration:
    description: Seconds to trace (1-600). With I(command), the most the command may take.
    type: float
    default: 5
  max_events:
    description: Stop after this many matching drops (1-100000).
    type: int
    default: 1000
  command:
    description:
      - Run this (argv list) once the trace is attached, and stop shortly after it ends.
        For example C([docker, exec, client, curl, -m, '3', http://172.30.0.11/]).
    type: list
    elements: str
  comm:
    description: Only drops in the context of a process with this name (first 15 characters).
    type: str
  pid:
    description: Only drops in the context of this process id.
    type: int
  cgroup:
    description: Only drops in the context of processes in this cgroup v2 directory.
    type: path
  src:
    description: Only packets from this IPv4 or IPv6 address.
    type: str
  dst:
    description: Only packets to this address.
    type: str
  sport:
    description: Only packets from this port.
    type: int
  dport:
    description: Only packets to this port.
    type: int
  protocol:
    description: Only this transport protocol.
    type: str
    choices: [tcp, udp, icmp, icmpv6]
  reasons:
    description: Only these drop reasons, by name (NETFILTER_DROP) or number. Empty means every reason.
    type: list
    elements: str
    default: []
  exclude_not_specified:
    description: Skip drops whose reason is NOT_SPECIFIED (the kernel's catch-all) unless listed in I(reasons).
    type: bool
    default: false
  stacks:
    description: Record and symbolize kernel stacks.
    type: bool
    default: true
  vmlinux:
    description:
      - A vmlinux with DWARF for source lines. Default looks in the usual debug-symbol paths for this kernel.
        Without one, locations are function+offset only and C(symbolizer.line_info) says why.
    type: path
  bpf_sources:
    description: The BPF C sources, filled in by the action plugin from the collection's C(bpf/) directory.
    type: dict
seealso:
  - module: ebpf.networking.kernel_symbolize
'''

EXAMPLES = r'''
- name: Why does curl in the client get no answer?
  ebpf.networking.skb_drop_trace:
    comm: curl
    duration: 10
    command: [docker, exec, client, curl, -s, -m, '3', 'http://172.30.0.11/']
  register: drops

- name: Show the main reason
  ansible.builtin.debug:
    msg: "{{ drops.summary[0].reason }} at {{ drops.summary[0].location }}"
'''

RETURN = r'''
records:
  description: One entry per matching drop (at most I(max_events)).
  returned: always
  type: list
  elements: dict
  sample:
    - {reason: NETFILTER_DROP, location: "nft_do_chain+0x3e8", comm: curl, protocol: tcp,
       src: 172.30.0.5, sport: 41000, dst: 172.30.0.11, dport: 80,
       stack: ["nft_do_chain+0x3e8", "nft_do_chain_ipv4+0x6e", "nf_hook_slow+0x43", "__ip_local_out+0xf9"]}
summary:
  description: Drops grouped by reason, location and stack, most frequent first, with counts.
  returned: always
  type: list
  elements: dict
reasons_source:
  description: Where the reason names came from.
  returned: always
  type: str
symbolizer:
  description: How locations were symbolized, which vmlinux gave source lines, or why there are none.
  returned: always
  type: dict
command_result:
  description: rc, stdout and stderr of I(command).
  returned: when command was given and not check mode
  type: dict
stats:
  description: Drops seen on the tracepoint, reported, and lost in the perf buffer.
  returned: always
  type: dict
'''

import ctypes
import os
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, drop_trace, inet, ksym
from ansible_collections.ebpf.networking.plugins.module_utils.btf import Btf, BtfError

MAIN = 'skb_drop.bpf.c'
NOT_SPECIFIED = 'NOT_SPECIFIED'


def skb_offsets():
    """-D flags with the running kernel's struct sk_buff offsets, and a note when BTF is missing."""
    try:
        btf = Btf.from_file()
        return ['-DSKB_HEAD_OFF=%d' % btf.member_offset('sk_buff', 'head')[0],
                '-DSKB_NETWORK_HEADER_OFF=%d' % btf.member_offset('sk_buff', 'network_header')[0]], None
    except (IOError, OSError, BtfError) as e:
        return [], 'no kernel BTF (%s): sk_buff offsets of the headers are used; addresses may be wrong' % e


class Tracer(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.warnings = []

    def validate(self):
        p = self.p
        if not 0 < p['duration'] <= 600:
            raise drop_trace.DropTraceError('duration %s is out of range: use 1-600 seconds' % p['duration'])
        if not 0 < p['max_events'] <= 100000:
            raise drop_trace.DropTraceError('max_events %d is out of range: use 1-100000' % p['max_events'])
        for port in ('sport', 'dport'):
            if p[port] is not None and not 0 < p[port] < 65536:
                raise drop_trace.DropTraceError('%s %d is out of range: use 1-65535' % (port, p[port]))
        for addr in ('src', 'dst'):
            if p[addr]:
                try:
                    inet.mapped(p[addr])
                except ValueError:
                    raise drop_trace.DropTraceError('%s %r is not an IP address' % (addr, p[addr]))
        if p['cgroup'] and not os.path.isdir(p['cgroup']):
            raise drop_trace.DropTraceError('cgroup %s does not exist (give a cgroup v2 directory)' % p['cgroup'])
        if not p['bpf_sources'] or MAIN not in p['bpf_sources']:
            raise drop_trace.DropTraceError('bpf_sources has no %s: run this module through its action plugin' % MAIN)
        if not any(v == 'tracefs' for v in bpf_loader.mounts().values()):
            raise drop_trace.DropTraceError('tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing '
                                            '(the bpf_toolchain role does); bcc reads the tracepoint format there')

    def fill_filter(self, bpf, names):
        p = self.p
        table = bpf['drop_filter']
        leaf = table.Leaf()
        leaf.pid = p['pid'] or 0
        if p['cgroup']:
            leaf.cgroup_id = os.stat(p['cgroup']).st_ino  # a cgroup v2 id is its directory's inode
        reasons = list(p['reasons'])
        mask = drop_trace.reason_mask(reasons, names) if reasons else [0, 0, 0, 0]
        if p['exclude_not_specified'] and not reasons:
            every = [n for n in names if n < 256 and names[n] != NOT_SPECIFIED]
            mask = drop_trace.reason_mask(every, names)
        for i in range(4):
            leaf.reasons[i] = mask[i]
        leaf.sport = p['sport'] or 0
        leaf.dport = p['dport'] or 0
        leaf.l4proto = drop_trace.PROTOCOLS[p['protocol']] if p['protocol'] else 0
        if p['comm']:
            leaf.has_comm = 1
            leaf.comm = p['comm'].encode()[:15]  # a char array: ctypes pads it with NULs
        for key, flag in (('src', 'saddr'), ('dst', 'daddr')):
            if p[key]:
                setattr(leaf, 'has_' + flag, 1)
                arr = getattr(leaf, flag)
                for i, byte in enumerate(bytearray(inet.mapped(p[key]))):
                    arr[i] = byte
        table[ctypes.c_int(0)] = leaf

    def run(self):
        self.validate()
        bpf_loader.require_bcc()
        names, reasons_source = drop_trace.load_reasons(Btf.from_file)
        offsets, note = skb_offsets()
        if note:
            self.warnings.append(note)
        symbolizer = {'kallsyms': ksym.KALLSYMS}
        try:
            kallsyms = ksym.Kallsyms()
        except (IOError, OSError, ksym.SymbolError) as e:
            kallsyms = None
            symbolizer['kallsyms_error'] = str(e)
        lines, symbolizer['line_info'] = self.line_mapper()

        bpf, _fds = bpf_loader.compile_and_load(self.p['bpf_sources'], MAIN, offsets, {})
        events = []
        lost = [0]

        def on_event(_cpu, data, size):
            if len(events) < self.p['max_events']:
                events.append(ctypes.string_at(data, size))

        def on_lost(count):
            lost[0] += count

        try:
            self.fill_filter(bpf, names)
            bpf['drop_events'].open_perf_buffer(on_event, page_cnt=64, lost_cb=on_lost)
            command_result = None
            deadline = time.time() + self.p['duration']
            runner = None
            if self.p['command'] and not self.module.check_mode:
                runner = CommandRunner(self.module, self.p['command'], self.p['duration'])
                runner.start()
            while time.time() < deadline and len(events) < self.p['max_events']:
                bpf.perf_buffer_poll(timeout=100)
                if runner is not None and not runner.is_alive():
                    # the command is done: drain what its last packets caused, then stop
                    grace = time.time() + 0.5
                    while time.time() < grace:
                        bpf.perf_buffer_poll(timeout=50)
                    break
            if runner is not None:
                runner.join(5)
                command_result = runner.result
                if command_result.get('rc') == 124:
                    self.warnings.append('command still ran after duration %ss and was stopped' % self.p['duration'])
            records = [self.describe(drop_trace.decode_event(raw, names), bpf, kallsyms, lines) for raw in events]
            seen = self.counter(bpf, 0)
            reported = self.counter(bpf, 1)
        finally:
            bpf.cleanup()
        summary = drop_trace.summarize(records)
        result = dict(changed=False, records=records, summary=summary, reasons_source=reasons_source,
                      symbolizer=symbolizer, stats={'drops_seen': seen, 'drops_reported': reported,
                                                    'lost': lost[0], 'returned': len(records)})
        if command_result is not None:
            result['command_result'] = command_result
        return result

    @staticmethod
    def counter(bpf, index):
        return sum(bpf['drop_seen'][ctypes.c_int(index)])

    def line_mapper(self):
        path = self.p['vmlinux'] or ksym.find_vmlinux()
        if not path:
            return None, {'available': False, 'reason': 'no vmlinux with DWARF for kernel %s in the usual places '
                          '(/usr/lib/debug/...); install debug symbols (ebpf.networking.debug_symbols role) or '
                          'give vmlinux' % os.uname()[2]}
        try:
            return ksym.ElfLines(path), {'available': True, 'vmlinux': path}
        except ksym.SymbolError as e:
            if self.p['vmlinux']:
                raise
            return None, {'available': False, 'vmlinux': path, 'reason': str(e)}

    def describe(self, ev, bpf, kallsyms, lines):
        addr = ev.pop('location_addr')
        ev['location'] = kallsyms.format(addr) if kallsyms else '0x%x' % addr
        if lines is not None:
            ev['location_source'] = source_of(lines, ev['location'])
        stack_id = ev.pop('stack_id')
        if self.p['stacks'] and stack_id >= 0:
            frames = list(bpf['drop_stacks'].walk(stack_id))
            ev['stack'] = [kallsyms.format(a) if kallsyms else '0x%x' % a for a in frames]
            if lines is not None:
                ev['stack_source'] = [source_of(lines, f) for f in ev['stack']]
        return ev


class CommandRunner(threading.Thread):
    """Runs the command through module.run_command while the main thread reads events. coreutils'
    timeout bounds it by the trace's duration."""

    def __init__(self, module, argv, duration):
        super(CommandRunner, self).__init__()
        self.daemon = True
        self.module = module
        self.argv = ['timeout', '--kill-after=2', '%g' % duration] + list(argv)
        self.result = {}

    def run(self):
        rc, out, err = self.module.run_command(self.argv)
        self.result = {'rc': rc, 'stdout': out[-4000:], 'stderr': err[-4000:]}


def source_of(lines, location):
    parsed = ksym.parse_func_offset(location.split(' ')[0])
    if not parsed:
        return None
    try:
        frames = lines.lines(*parsed)
    except ksym.SymbolError as e:
        return {'error': str(e)}
    return ['%s %s:%s' % (f['function'], f['file'], f['line']) for f in frames]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            duration=dict(type='float', default=5),
            max_events=dict(type='int', default=1000),
            command=dict(type='list', elements='str'),
            comm=dict(type='str'),
            pid=dict(type='int'),
            cgroup=dict(type='path'),
            src=dict(type='str'),
            dst=dict(type='str'),
            sport=dict(type='int'),
            dport=dict(type='int'),
            protocol=dict(type='str', choices=['tcp', 'udp', 'icmp', 'icmpv6']),
            reasons=dict(type='list', elements='str', default=[]),
            exclude_not_specified=dict(type='bool', default=False),
            stacks=dict(type='bool', default=True),
            vmlinux=dict(type='path'),
            bpf_sources=dict(type='dict'),
        ),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg='skb_drop_trace must run as root (become: true)')
    tracer = Tracer(module)
    try:
        result = tracer.run()
    except (drop_trace.DropTraceError, bpf_loader.LoaderError, ksym.SymbolError) as e:
        module.fail_json(msg=str(e), invocation=bpf_loader.invocation(module.params))
    except Exception as e:  # pylint: disable=broad-except
        module.fail_json(msg='unexpected error: %s' % e, exception=traceback.format_exc(),
                         invocation=bpf_loader.invocation(module.params))
    for w in tracer.warnings:
        module.warn(w)
    module.exit_json(invocation=bpf_loader.invocation(module.params), **result)


if __name__ == '__main__':
    main()
