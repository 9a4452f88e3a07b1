# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address planning for the lab: the Nth host of a subnet, with clear errors."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text


def _network(subnet):
    try:
        net = ipaddress.ip_network(to_text(subnet), strict=True)
    except ValueError as e:
        raise AnsibleFilterError('lab subnet %r is invalid (%s): give a network address with a prefix, e.g. '
                                 '172.30.0.0/24' % (subnet, e))
    if net.version != 4:
        raise AnsibleFilterError('lab subnet %s must be IPv4' % subnet)
    if net.prefixlen > 26:
        raise AnsibleFilterError('lab subnet %s is too small: use a /26 or larger (the lab numbers hosts from .2 '
                                 'and backends from .11)' % subnet)
    return net


def subnet_host(subnet, index):
    """The index-th address of subnet (1 is the first host)."""
    net = _network(subnet)
    index = int(index)
    if not 0 < index < net.num_addresses - 1:
        raise AnsibleFilterError('host number %d does not fit in %s (%d hosts): use a larger subnet or fewer '
                                 'backends' % (index, subnet, net.num_addresses - 2))
    return str(net.network_address + index)


def subnet_valid(subnet):
    _network(subnet)
    return True


def number_hosts(names, subnet, first_host):
    """[{name, ip}] giving consecutive addresses of subnet to names, from host number first_host."""
    return [{'name': to_text(name), 'ip': subnet_host(subnet, int(first_host) + i)} for i, name in enumerate(names)]


class FilterModule(object):
    def filters(self):
        return {'subnet_host': subnet_host, 'subnet_valid': subnet_valid, 'number_hosts': number_hosts}
