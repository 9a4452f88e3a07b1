# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The running kernel's struct offsets for bpf/kernel_layout.h, read from its BTF, as -D flags.

The tracing programs read sk_buff, net_device, net, sock, task_struct and bpf_prog fields by
offset; the installed headers may belong to another kernel (6.1 headers on 6.18 here). No ansible
import: the host agent uses this too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.ebpf.networking.plugins.module_utils.btf import Btf, BtfError

# macro: (struct, member path)
OFFSETS = (
    ('SKB_DEV_OFF', 'sk_buff', 'dev'),
    ('SKB_SK_OFF', 'sk_buff', 'sk'),
    ('SKB_LEN_OFF', 'sk_buff', 'len'),
    ('SKB_PROTOCOL_OFF', 'sk_buff', 'protocol'),
    ('SKB_HEAD_OFF', 'sk_buff', 'head'),
    ('SKB_DATA_OFF', 'sk_buff', 'data'),
    ('SKB_NETWORK_HEADER_OFF', 'sk_buff', 'network_header'),
    ('DEV_IFINDEX_OFF', 'net_device', 'ifindex'),
    ('DEV_NAME_OFF', 'net_device', 'name'),
    ('DEV_NET_OFF', 'net_device', 'nd_net'),
    ('NET_INUM_OFF', 'net', 'ns.inum'),
    ('SK_NET_OFF', 'sock', '__sk_common.skc_net'),
    ('SK_BOUND_DEV_IF_OFF', 'sock', '__sk_common.skc_bound_dev_if'),
    ('TASK_STACK_OFF', 'task_struct', 'stack'),
    ('TASK_FLAGS_OFF', 'task_struct', 'flags'),
    ('PROG_AUX_OFF', 'bpf_prog', 'aux'),
    ('PROG_AUX_ID_OFF', 'bpf_prog_aux', 'id'),
    ('PROG_AUX_NAME_OFF', 'bpf_prog_aux', 'name'),
)


# running_context() (bpf/kernel_layout.h) knows a CPU serves a softirq from these raw tracepoints; exit
# first, so a softirq already running when they attach ends as "outside"
SOFTIRQ_TRACEPOINTS = ('softirq_exit', 'softirq_entry')
# MAX_SOFTIRQ_TIME is 2 ms; a softirq older than the tracepoints is over after this, even in a busy VM
SOFTIRQ_SETTLE_SECONDS = 0.02


class LayoutError(Exception):
    pass


def cflags(btf=None):
    """-D flags for bpf/kernel_layout.h from the kernel's BTF. Raises LayoutError saying what is
    missing: guessed offsets would give wrong namespaces and interfaces, silently."""
    try:
        btf = btf or Btf.from_file()
    except (IOError, OSError, BtfError) as e:
        raise LayoutError('the kernel BTF (/sys/kernel/btf/vmlinux) cannot be read (%s): it gives the struct '
                          'offsets the drop tracer needs; a kernel with CONFIG_DEBUG_INFO_BTF=y is required' % e)
    flags = []
    for macro, struct_name, path in OFFSETS:
        try:
            flags.append('-D%s=%d' % (macro, btf.path_offset(struct_name, path)[0]))
        except BtfError as e:
            raise LayoutError('this kernel has no %s.%s in its BTF (%s): the tracer cannot read it' %
                              (struct_name, path, e))
    try:
        # kfree_skb(skb, location, reason, rx_sk) since 6.11: the typedef's first parameter is void *
        if btf.func_proto_params('btf_trace_kfree_skb') >= 5:
            flags.append('-DKFREE_SKB_HAS_RX_SK=1')
    except BtfError:
        pass
    return flags


def track_softirqs(bpf, prefix):
    """Attach a program's <prefix>_softirq_exit and <prefix>_softirq_entry (bcc BPF object), then wait
    until a softirq that was already running has ended: from then on the per-CPU state knows every
    softirq. Call it before attaching the programs that report a running context. Returns None, or a
    warning when the tracepoints cannot be attached (contexts then come from the stack alone)."""
    try:
        for tp in SOFTIRQ_TRACEPOINTS:
            bpf.attach_raw_tracepoint(tp=tp.encode(), fn_name=('%s_%s' % (prefix, tp)).encode())
    except Exception as e:  # pylint: disable=broad-except  # bcc raises bare Exception
        return ('irq:%s could not be attached (%s): a softirq that runs on a process\'s stack (an interrupt '
                'from user space) is reported as that process' % (tp, e))
    time.sleep(SOFTIRQ_SETTLE_SECONDS)
    return None
