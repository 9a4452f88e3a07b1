# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import xdp_decap_deploy as d

HERE = os.path.dirname(__file__)
PROGRAM = os.path.join(HERE, '..', '..', '..', '..', 'bpf', 'xdp_decap.bpf.c')


def test_addresses_default_to_the_interface_and_are_sorted():
    assert d.normalize_addresses(None, ['10.0.0.9', '10.0.0.10']) == ['10.0.0.9', '10.0.0.10']
    assert d.normalize_addresses(['10.0.1.2', '10.0.0.200', '10.0.1.2'], []) == ['10.0.0.200', '10.0.1.2']


@pytest.mark.parametrize('addresses,interface,message', [
    (None, [], 'the interface has no IPv4 address'),
    ([], ['10.0.0.1'], 'non-empty list'),
    ('10.0.0.1', ['10.0.0.1'], 'non-empty list'),
    (['10.0.0'], [], r'addresses\[0\] .* is not an IPv4 address'),
    (['10.0.0.1', '224.0.0.5'], [], r'addresses\[1\] 224.0.0.5 is a multicast'),
    (['10.0.%d.%d' % (i // 200, i % 200 + 1) for i in range(65)], [], 'at most 64'),
])
def test_bad_addresses_are_named(addresses, interface, message):
    with pytest.raises(d.ConfigError, match=message):
        d.normalize_addresses(addresses, interface)


def test_meta_layout_matches_the_program():
    body = re.search(r'struct decap_meta \{(.*?)\};', open(PROGRAM).read(), re.S).group(1)
    body = re.sub(r'/\*.*?\*/', '', body, flags=re.S)
    sizes = {'__u8': 1, '__u32': 4, '__u64': 8, 'char': 1}
    offset = 0
    for typ, _name, count in re.findall(r'(\w+) (\w+)(?:\[(\d+)\])?;', body):
        offset = (offset + sizes[typ] - 1) // sizes[typ] * sizes[typ] + sizes[typ] * int(count or 1)
    assert (offset + 7) // 8 * 8 == d.META.size
