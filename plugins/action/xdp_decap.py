# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ships bpf/xdp_decap.bpf.c to the xdp_decap module."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import BpfSourceAction


class ActionModule(BpfSourceAction):
    BPF_FILES = ('xdp_decap.bpf.c',)
