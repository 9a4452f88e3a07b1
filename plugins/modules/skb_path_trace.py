#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: skb_path_trace
short_description: Follow packets through the kernel, step by step, to their drop or delivery, without kprobes
version_added: 0.2.0
description:
  - Attaches C(bpf/skb_path.bpf.c) to the networking raw tracepoints that carry an skb (C(net:netif_receive_skb),
    C(net:netif_rx), C(net:napi_gro_receive_entry), C(net:net_dev_queue), C(net:net_dev_start_xmit),
    C(net:net_dev_xmit), C(sock:sock_rcvqueue_full), C(udp:udp_fail_queue_rcv_skb), C(tcp:tcp_retransmit_skb),
    C(skb:kfree_skb), C(skb:consume_skb)) and C(fib:fib_table_lookup), for a bounded time, optionally while
    running a command. No kprobe or fentry is needed, so it works where pwru and retis cannot.
  - A packet is chosen where it is first seen, by I(namespace), I(interface) and flow filters; from then on its
    skb address is followed at every tracepoint, across namespaces (veth keeps the skb), until C(kfree_skb)
    (C(end=drop), with reason and location) or C(consume_skb) (C(end=consume)).
  - Each step has the time since the first step, the tracepoint, the network namespace, the interface, the
    flow as parsed there, and who ran it (C(context), and C(softirq) when the CPU served one - the sender's
    system call queues a packet, C(NET_RX) receives it, C(TIMER) retransmits it). C(fib:fib_table_lookup) has
    no skb argument; it is tied to the packet last seen on the same CPU within 200 microseconds and marked
    C(correlated).
  - Not visible - XDP (no skb exists yet), neighbour events (no skb, asynchronous), clones of the skb
    (taps, TCP's retransmit queue keeps a clone), functions between tracepoints. See docs/drop-tracing.md.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with BTF and these tracepoints (5.17+); bcc and kernel headers on the target
extends_documentation_fragment:
  - ebpf.networking.packet_tracing.selection
  - ebpf.networking.packet_tracing.bpf_sources
options:
  max_packets:
    description: Follow at most this many packets (1-1000); further matching packets are counted in
      I(stats.not_followed).
    type: int
    default: 10
seealso:
  - module: ebpf.networking.skb_drop_trace
'''

EXAMPLES = r'''
- name: Where does a UDP datagram from the client go?
  ebpf.networking.skb_path_trace:
    namespace: client
    protocol: udp
    dport: '53'
    max_packets: 3
    command: [docker, exec, client, getent, hosts, example.com]
  register: path

- name: Show the end of the first packet's path
  ansible.builtin.debug:
    msg: "{{ path.packets[0].end }} {{ path.packets[0].reason | default('') }} at {{ path.packets[0].location | default('') }}"
'''

RETURN = r'''
packets:
  description: One entry per followed packet, in the order they were first seen.
  returned: always
  type: list
  elements: dict
  contains:
    packet: {description: "Id of the followed packet.", type: int}
    end: {description: "C(drop), C(consume), or C(open) when no end was seen during the trace.", type: str}
    reason: {description: "Drop reason, when end is drop.", type: str}
    location: {description: "Kernel function+offset that dropped or consumed it.", type: str}
    namespaces: {description: "Namespaces the packet went through, in order.", type: list, elements: str}
    flow: {description: "The flow as first parsed.", type: str}
    skbaddr: {description: "The skb's address (matches skb_drop_trace records).", type: str}
    steps:
      description: "Each step - C(t_us) since the first, C(step) (tracepoint), C(netns), C(ifname), C(ifindex),
        C(cpu), C(context) (C(process), C(kernel_thread), C(interrupt) or C(unknown), as in skb_drop_trace),
        C(softirq) (the softirq the CPU served, e.g. C(NET_RX), else null), C(flow); C(reason)/C(location) at
        kfree_skb, C(location) at consume_skb, C(rc) at net_dev_xmit, C(table)/C(error)/C(correlated) at
        fib_table_lookup."
      type: list
      elements: dict
  sample:
    - packet: 1
      end: drop
      reason: NETFILTER_DROP
      location: nft_do_chain+0x3e8
      namespaces: ["netns:a", "netns:router"]
      flow: "udp 10.0.1.2:40000 -> 10.0.2.2:9999"
      skbaddr: "0xffff8881bd4870e0"
      steps:
        - {t_us: 0.0, step: "net:net_dev_queue", netns: "netns:a", ifname: veth0, ifindex: 2, cpu: 0,
           context: process, softirq: null}
        - {t_us: 5.1, step: "net:netif_receive_skb", netns: "netns:router", ifname: in0, ifindex: 3, cpu: 0,
           context: interrupt, softirq: NET_RX}
        - {t_us: 9.7, step: "skb:kfree_skb", netns: "netns:router", ifname: in0, ifindex: 3, cpu: 0,
           context: interrupt, softirq: NET_RX, reason: NETFILTER_DROP, location: "nft_do_chain+0x3e8"}
truncated:
  description: True when steps were lost (perf buffer) or not returned.
  returned: always
  type: bool
stats:
  description: "steps, submit_failed, not_followed, lost, returned_steps, seconds, tracepoints (attached). Empty
    in check mode."
  returned: always
  type: dict
command_result:
  description: rc, stdout and stderr of I(command).
  returned: when command was given and not in check mode
  type: dict
check_mode_note:
  description: Says that nothing was compiled, attached or run.
  returned: in check mode
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import drop_tracer, path_trace


def main():
    module = AnsibleModule(
        argument_spec=dict(drop_tracer.SELECTION_SPEC, max_packets=dict(type='int', default=10)),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg='skb_path_trace must run as root (become: true)')
    drop_tracer.run_in_module(module, path_trace.PathTracer(module.params, module.run_command, module.check_mode))


if __name__ == '__main__':
    main()
