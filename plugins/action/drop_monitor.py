# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ships bpf/drop_monitor.bpf.c and its headers to the drop_monitor module."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import BpfSourceAction


class ActionModule(BpfSourceAction):
    BPF_FILES = ('drop_monitor.bpf.c', 'drop_monitor.h', 'kernel_layout.h')
