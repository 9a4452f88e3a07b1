# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.ebpf.networking.plugins.filter.lab_network import number_hosts, subnet_host, subnet_valid


def test_nth_host():
    assert subnet_host('172.30.0.0/24', 11) == '172.30.0.11'
    expected = [{'name': 'a', 'ip': '10.9.1.44'}, {'name': 'b', 'ip': '10.9.1.45'}]
    assert number_hosts(['a', 'b'], '10.9.0.0/16', 300) == expected


@pytest.mark.parametrize('subnet,message', [
    ('172.30.0.1/24', 'invalid'),
    ('banana', 'invalid'),
    ('fd00::/64', 'must be IPv4'),
    ('172.30.0.0/28', 'too small'),
])
def test_bad_subnets_fail_clearly(subnet, message):
    with pytest.raises(AnsibleFilterError, match=message):
        subnet_valid(subnet)


def test_last_host_is_the_one_before_broadcast():
    assert subnet_host('172.30.0.0/26', 62) == '172.30.0.62'


@pytest.mark.parametrize('index', [0, 63, 70], ids=['network-address', 'broadcast', 'outside'])
def test_host_outside_subnet_fails(index):
    with pytest.raises(AnsibleFilterError, match='does not fit'):
        subnet_host('172.30.0.0/26', index)
