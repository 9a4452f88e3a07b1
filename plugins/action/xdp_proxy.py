# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ships bpf/xdp_proxy.bpf.c and its headers to the xdp_proxy module."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import BpfSourceAction


class ActionModule(BpfSourceAction):
    BPF_FILES = ('xdp_proxy.bpf.c', 'xdp_lb.h', 'csum.h', 'lb_flow.h', 'lb_snat.h', 'lb_icmp.h', 'lb_ipv4.h',
                 'lb_encap.h', 'lb_icmp_too_big.h', 'lb_nexthop.h')
