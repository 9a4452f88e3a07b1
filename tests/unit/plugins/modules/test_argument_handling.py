# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Arguments of the wrong type or value end in fail_json naming the argument, before anything touches the
kernel; never in an exception (which a user sees as MODULE FAILURE with a traceback)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib

import pytest

CASES = [
    ('xdp_proxy', {'mode': 'turbo'}, 'mode'),
    ('xdp_proxy', {'state': 'gone'}, 'state'),
    ('xdp_proxy', {'interface': 'lo', 'services': [{'vip': '10.0.0.1', 'backends': ['10.0.0.2']}]}, 'port'),
    ('xdp_proxy', {'interface': 'lo', 'services': [{'vip': '10.0.0.1', 'port': 'http', 'backends': []}]}, 'port'),
    ('xdp_proxy', {'max_flows': 'lots'}, 'max_flows'),
    ('xdp_proxy', {'interface': 'lo', 'services': [{'vip': '10.0.0.1', 'port': 80, 'forwarding': 'dr',
                                                    'backends': ['10.0.0.2']}]}, 'forwarding'),
    ('xdp_decap', {'mode': 'turbo'}, 'mode'),
    ('xdp_decap', {'addresses': 'x', 'state': 'gone'}, 'state'),
    ('xdp_decap', {'state': 'present'}, 'interface'),
    ('lb_backend', {'state': 'present'}, 'vips'),
    ('lb_backend', {'vips': ['10.0.0.1'], 'forwarding': 'nat'}, 'forwarding'),
    ('xdp_stats', {'flows': 'many'}, 'flows'),
    ('sockmap_redirect', {'ports': ['http']}, 'ports'),
    ('sockmap_redirect', {'max_sockets': 'all'}, 'max_sockets'),
    ('skb_drop_trace', {'protocol': 'igmp'}, 'protocol'),
    ('skb_drop_trace', {'duration': 'long'}, 'duration'),
    ('kernel_symbolize', {}, 'locations'),
    ('kernel_symbolize', {'locations': ['0x1'], 'require_lines': 'perhaps'}, 'require_lines'),
    ('bpf_facts', {'check_bcc': 'perhaps'}, 'check_bcc'),
    ('bpf_facts', {'require': 'bpffs', 'surprise': 1}, 'surprise'),
]


@pytest.mark.parametrize('name, args, word', CASES, ids=['%s-%s' % (c[0], c[2]) for c in CASES])
def test_bad_argument_fails_naming_it(run_module, name, args, word):
    module = importlib.import_module('ansible_collections.ebpf.networking.plugins.modules.' + name)
    how, result = run_module(module, args)
    assert how == 'fail'
    assert word in result['msg']
