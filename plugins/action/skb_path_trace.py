# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ships bpf/skb_path.bpf.c and its headers to the skb_path_trace module."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import BpfSourceAction


class ActionModule(BpfSourceAction):
    BPF_FILES = ('skb_path.bpf.c', 'skb_path.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h')
