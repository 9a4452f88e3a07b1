# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ships bpf/skb_drop.bpf.c, bpf/xdp_drop.bpf.c and their headers to the skb_drop_trace module."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import BpfSourceAction


class ActionModule(BpfSourceAction):
    BPF_FILES = ('skb_drop.bpf.c', 'skb_drop.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h',
                 'xdp_drop.bpf.c', 'xdp_drop.h')
