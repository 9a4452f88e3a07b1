# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Options and attributes shared by the packet tracing modules (skb_drop_trace, skb_path_trace,
    drop_monitor, kernel_symbolize)."""

    # How long, which packets, what to run: module_utils/drop_tracer.py SELECTION_SPEC
    SELECTION = r'''
attributes:
  check_mode:
    support: full
    description: In check mode the inputs are validated (namespace, command, filters) and nothing is compiled,
      attached or run; C(changed) says whether I(command) would have run.
  diff_mode:
    support: none
    description: Tracing changes nothing in the kernel's configuration.
options:
  duration:
    description: Seconds to trace (1-600). With I(command), the most the command may take.
    type: float
    default: 5
  buffer_pages:
    description: Pages per CPU of the perf buffer (a power of two, 1-4096). Events beyond what it holds
      between reads are counted in I(stats.lost).
    type: int
    default: 64
  command:
    description:
      - Run this (argv list) once the trace is attached, and stop shortly after it ends. For example
        C([ip, netns, exec, client, curl, -m, '3', http://10.0.0.2/]). The command must exist on the
        target. Running it reports C(changed=true), since the module cannot know what it changed.
    type: list
    elements: str
  namespace:
    description: Only packets in this network namespace (for a path, where the packet is first seen) - a
      docker container's name, an C(ip netns) name, a path such as C(/proc/PID/ns/net), or C(host).
    type: str
  interface:
    description: Only packets on this interface (name or ifindex; with I(namespace) the name is that
      namespace's interface). The interface is the skb's device, or the socket's bound device when the
      skb has none yet.
    type: str
  src:
    description: Only packets from this IPv4/IPv6 address or CIDR (C(10.0.0.0/24)).
    type: str
  dst:
    description: Only packets to this address or CIDR.
    type: str
  sport:
    description: Only packets from this port or inclusive range (C(8000-8080)). Later fragments have no
      ports and never match.
    type: str
  dport:
    description: Only packets to this port or range.
    type: str
  protocol:
    description: Only this transport protocol.
    type: str
    choices: [tcp, udp, icmp, icmpv6, sctp, gre, esp]
'''

    # The BPF sources the action plugin ships (plugins/action/*.py BPF_FILES)
    BPF_SOURCES = r'''
options:
  bpf_sources:
    description: The BPF C sources, filled in by the action plugin from the collection's C(bpf/) directory.
    type: dict
'''

    # Where kernel modules' debug files are looked up (module_utils/ksym.py)
    MODULE_DEBUG_DIRS = r'''
options:
  module_debug_dirs:
    description: Directories (or files) searched first for kernel modules' debug files (C(NAME.ko.debug),
      C(NAME.ko)), before the usual C(/usr/lib/debug/lib/modules/RELEASE) and C(/lib/modules/RELEASE).
    type: list
    elements: path
    default: []
'''
