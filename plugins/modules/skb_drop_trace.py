#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: skb_drop_trace
short_description: Find where and why the kernel dropped packets, in which namespace and on which interface
version_added: 0.1.0
description:
  - Attaches C(bpf/skb_drop.bpf.c) to the C(kfree_skb) raw tracepoint (no kprobes needed) for a bounded
    time, optionally while running a command, and returns every dropped packet that passes the filters -
    drop reason by name, the kernel function and offset that dropped it, the network namespace (and
    container) and interface, the flow, the kernel stack, and the process where the process is the
    packet's (see I(records[].context)) - plus a summary grouped by reason and location.
  - The filter is written into the program's map before it is attached, so nothing unfiltered is ever
    reported. Every matching drop that is not returned is counted in I(stats) (lost in the perf buffer,
    not submitted, cut by I(max_events)) and sets I(truncated).
  - Receive and forward drops happen in softirq context, where the running task is whoever was
    interrupted (or the process whose system call let the softirq run); such records have
    C(process=null), C(context=interrupt) and C(softirq) naming it (C(NET_RX), C(TIMER), ...), and the
    process filters (I(comm), I(pid), I(cgroup)) only match drops in process context. Whether the CPU
    serves a softirq is kept by the C(softirq_entry)/C(softirq_exit) raw tracepoints, attached first.
  - Drop reason names come from the running kernel (the tracepoint's format, else BTF). Struct offsets
    come from the kernel's BTF, so mismatched headers do not garble namespaces, interfaces or addresses.
  - With I(vmlinux) (or one found in the usual debug-symbol places, only if its build id matches the
    running kernel) locations and stack frames also get source file and line, as scripts/faddr2line does;
    frames in kernel modules use the module's debug file.
  - Nothing is pinned. The attachment belongs to the module's process and goes with it.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with BTF (C(/sys/kernel/btf/vmlinux)) and the kfree_skb tracepoint with a reason (5.17+)
  - bcc and kernel headers on the target; binutils for source lines
extends_documentation_fragment:
  - ebpf.networking.packet_tracing.selection
  - ebpf.networking.packet_tracing.bpf_sources
  - ebpf.networking.packet_tracing.module_debug_dirs
options:
  max_events:
    description: Return at most this many drops (1-100000); tracing stops when they are reached and
      I(truncated) is set with the count of the rest.
    type: int
    default: 1000
  pcap_filter:
    description:
      - Only packets matching this pcap-filter expression (tcpdump syntax, e.g. C(udp and dst port 53 and not
        src net 10.0.0.0/8)), compiled by libpcap (C(tcpdump -ddd)) for packets starting at the IP header and
        translated into a check inside the program, as pwru does. It sees the first 256 bytes from the network
        header; skbs without one never match. Needs tcpdump on the target. Applies to kfree_skb drops only.
    type: str
  reasons:
    description: Only these drop reasons, by name (NETFILTER_DROP) or number. Empty means every reason.
    type: list
    elements: str
    default: []
  exclude_not_specified:
    description: Skip drops whose reason is NOT_SPECIFIED (the kernel's catch-all) unless listed in I(reasons).
    type: bool
    default: false
  comm:
    description: Only drops in process context of a process with this name (first 15 characters).
    type: str
  pid:
    description: Only drops in process context of this process id.
    type: int
  cgroup:
    description: Only drops in process context of processes in this cgroup v2 directory.
    type: path
  xdp:
    description:
      - Also trace XDP programs' exceptions (XDP_ABORTED, invalid actions; C(xdp:xdp_exception)) and failed
        redirects (C(xdp:xdp_redirect_err)) with the program's id and name and the interface, and read the
        drop counters of the collection's XDP load balancers (pinned under C(/sys/fs/bpf/ebpf_networking)),
        before and after, into I(xdp). Only I(namespace) and I(interface) filter XDP events (the tracepoints
        carry no packet). A plain XDP_DROP in native mode fires no tracepoint and is invisible except in a
        program's own counters; in generic mode it is a kfree_skb with reason XDP.
    type: bool
    default: true
  stacks:
    description: Record and symbolize kernel stacks.
    type: bool
    default: true
  vmlinux:
    description:
      - A vmlinux with DWARF for source lines. Default looks in the usual debug-symbol paths for this kernel.
        Its build id must match the running kernel's; without one, locations are function+offset only and
        C(symbolizer.line_info) says why.
    type: path
seealso:
  - module: ebpf.networking.kernel_symbolize
'''

EXAMPLES = r'''
- name: Which drops happen in container client, and where?
  ebpf.networking.skb_drop_trace:
    namespace: client
    duration: 10
    command: [docker, exec, client, curl, -s, -m, '3', 'http://172.30.0.11/']
  register: drops

- name: Show the main reason, namespace and interface
  ansible.builtin.debug:
    msg: "{{ drops.summary[0].reason }} at {{ drops.summary[0].location }} in {{ drops.summary[0].namespaces }}
      on {{ drops.summary[0].interfaces }}"

- name: TCP drops to a port range from a subnet on one interface
  ebpf.networking.skb_drop_trace:
    src: 10.0.0.0/24
    dport: 8000-8080
    protocol: tcp
    interface: eth0
    duration: 30
'''

RETURN = r'''
records:
  description: One entry per matching drop, at most I(max_events).
  returned: always
  type: list
  elements: dict
  contains:
    reason: {description: "Drop reason name (number when unnamed).", type: str}
    reason_code: {description: "Drop reason number.", type: int}
    location: {description: "Kernel function+offset that dropped it, C([module]) for module code.", type: str}
    netns: {description: "Namespace: C(inode), C(name) (host, netns:NAME, container:NAME) and C(container).",
            type: dict}
    ifname: {description: "Interface name (empty when unknown).", type: str}
    ifindex: {description: "Interface index (0 when unknown).", type: int}
    interface_from: {description: "Where the interface came from: C(device) (skb->dev), C(socket), or null.",
                     type: str}
    context: {description: "C(process), C(kernel_thread), C(interrupt) (softirq/irq) or C(unknown).", type: str}
    softirq: {description: "The softirq the CPU was serving (C(NET_RX), C(TIMER), ...), null outside one.",
              type: str}
    process: {description: "pid, tid, comm, cgroup_id - only when context is process, else null.", type: dict}
    socket: {description: "Whether the skb belonged to (or was dropped at) a socket.", type: bool}
    protocol: {description: "Transport protocol, when the packet was parsed.", type: str}
    src: {description: "Source address.", type: str}
    dst: {description: "Destination address.", type: str}
    sport: {description: "Source port (TCP/UDP, not for later fragments).", type: int}
    dport: {description: "Destination port.", type: int}
    fragment: {description: "C(first) or C(later) for IP fragments.", type: str}
    stack: {description: "Kernel stack as function+offset, innermost first.", type: list, elements: str}
    stack_error: {description: "Negative errno when the stack could not be read, else null.", type: int}
    location_source: {description: "Source lines of the location (with line info).", type: raw}
    stack_source: {description: "Source lines per stack frame (with line info).", type: list, elements: raw}
    skbaddr: {description: "The skb's address (to match a path trace).", type: str}
    ts_ns: {description: "CLOCK_MONOTONIC time of the drop.", type: int}
    ethertype: {description: "The skb's protocol.", type: str}
    family: {description: "ipv4 or ipv6, when parsed.", type: str}
  sample:
    - {reason: NETFILTER_DROP, location: "nft_do_chain+0x3e8", context: process, softirq: null,
       process: {pid: 4242, tid: 4242, comm: curl, cgroup_id: 1},
       netns: {inode: 4026532290, name: "container:client", container: client}, ifname: "", ifindex: 0,
       interface_from: socket, protocol: tcp, src: 172.30.0.5, sport: 41000, dst: 172.30.0.11, dport: 80,
       stack: ["nft_do_chain+0x3e8", "nft_do_chain_ipv4+0x6e", "nf_hook_slow+0x43", "__ip_local_out+0xf9"]}
summary:
  description: Drops grouped by (reason, location), most frequent first, with count, namespaces, interfaces,
    contexts, softirqs, processes (process context only), up to 10 flows and the 3 most frequent stacks.
  returned: always
  type: list
  elements: dict
truncated:
  description: True when some matching drops are not in I(records) (max_events reached or events lost);
    I(stats.not_returned) says how many.
  returned: always
  type: bool
reasons_source:
  description: Where the reason names came from.
  returned: always
  type: str
symbolizer:
  description: How locations were symbolized, which vmlinux (and build id) gave source lines or why there are
    none, and the debug file (or error) of each module seen. Empty in check mode.
  returned: always
  type: dict
stats:
  description: "Counters: seen (kfree_skb calls), matched (passed the filter), submitted, submit_failed (perf
    buffer full), lost (perf samples lost), no_stack, returned, not_returned, seconds. Empty in check mode."
  returned: always
  type: dict
command_result:
  description: rc, stdout and stderr of I(command).
  returned: when command was given and not in check mode
  type: dict
xdp:
  description: XDP drops when I(xdp) is true.
  returned: when xdp is true and not in check mode
  type: dict
  contains:
    records:
      description: One entry per XDP exception or failed redirect - C(event), C(prog_id), C(prog_name), C(action),
        C(error)/C(errno) for redirects, C(netns), C(ifname), C(ifindex), and C(reason)/C(location) as in
        I(records) so they also appear in I(summary).
      type: list
      elements: dict
    stats:
      description: seen, submitted, submit_failed, lost, returned.
      type: dict
    truncated:
      description: True when some XDP events are not in I(xdp.records).
      type: bool
    load_balancers:
      description: Per pinned XDP load balancer, C(during_trace) counter deltas, C(drops_during_trace), C(totals),
        C(ifname), C(netns); or C(error) when its maps cannot be read.
      type: dict
  sample:
    records:
      - {event: xdp_exception, prog_id: 42, prog_name: dt_abort, action: XDP_ABORTED, ifname: veth0, ifindex: 7,
         netns: {inode: 4026532555, name: "netns:dt-x"}, reason: XDP_EXCEPTION,
         location: "xdp prog dt_abort (id 42) XDP_ABORTED"}
    stats: {seen: 1, submitted: 1, submit_failed: 0, lost: 0, returned: 1}
    truncated: false
    load_balancers: {}
check_mode_note:
  description: Says that nothing was compiled, attached or run.
  returned: in check mode
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import drop_tracer


def main():
    module = AnsibleModule(
        argument_spec=dict(
            drop_tracer.SELECTION_SPEC,
            max_events=dict(type='int', default=1000),
            pcap_filter=dict(type='str'),
            reasons=dict(type='list', elements='str', default=[]),
            exclude_not_specified=dict(type='bool', default=False),
            comm=dict(type='str'),
            pid=dict(type='int'),
            cgroup=dict(type='path'),
            xdp=dict(type='bool', default=True),
            stacks=dict(type='bool', default=True),
            vmlinux=dict(type='path'),
            module_debug_dirs=dict(type='list', elements='path', default=[]),
        ),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg='skb_drop_trace must run as root (become: true)')
    drop_tracer.run_in_module(module, drop_tracer.DropTracer(module.params, module.run_command, module.check_mode))


if __name__ == '__main__':
    main()
