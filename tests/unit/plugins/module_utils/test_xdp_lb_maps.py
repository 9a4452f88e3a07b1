# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_maps as m

HEADER = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'bpf', 'xdp_lb.h')


def svc(**kw):
    base = {'vip': '10.0.0.10', 'port': 80, 'backends': [{'ip': '10.0.0.11'}, {'ip': '10.0.0.12', 'weight': 3}]}
    base.update(kw)
    return base


def test_normalize_fills_defaults_and_sorts():
    out = m.normalize_services([svc(backends=['10.0.0.12', {'ip': '10.0.0.2', 'port': 8080}])], m.Limits(), '10.0.0.10')
    assert out == [{'vip': '10.0.0.10', 'port': 80, 'protocol': 'tcp', 'snat_ip': '10.0.0.10',
                    'backends': [{'ip': '10.0.0.2', 'port': 8080, 'weight': 1},
                                 {'ip': '10.0.0.12', 'port': 80, 'weight': 1}]}]


def test_same_config_in_other_order_normalizes_equal():
    a = [svc(), svc(vip='10.0.0.20', protocol='udp', port=53)]
    b = [dict(a[1], backends=list(reversed(a[1]['backends']))), a[0]]
    assert m.normalize_services(a, m.Limits(), '10.0.0.1') == m.normalize_services(b, m.Limits(), '10.0.0.1')


@pytest.mark.parametrize('services,message', [
    ([], 'services is empty'),
    ([svc(backends=[])], 'has no backends'),
    ([svc(vip='10.0.0')], 'is not an IPv4 address'),
    ([svc(vip='fe80::1')], 'is not an IPv4 address'),
    ([svc(port=0)], 'out of range'),
    ([svc(port=70000)], 'out of range'),
    ([svc(protocol='sctp')], 'not supported'),
    ([svc(backends=[{'ip': '10.0.0.11', 'weight': 0}])], 'weight 0 is out of range'),
    ([svc(backends=[{'ip': '10.0.0.11', 'port': 'http'}])], 'is not a number'),
    ([svc(backends=['10.0.0.11', '10.0.0.11'])], 'listed twice'),
    ([svc(), svc()], 'listed twice'),
    ([svc(port=20080)], 'lies in snat_port_range'),
])
def test_bad_input_is_named(services, message):
    with pytest.raises(m.ConfigError, match=message):
        m.normalize_services(services, m.Limits(), '10.0.0.10')


def test_limits_are_enforced():
    five_backends = [svc(backends=['10.0.1.%d' % i for i in range(1, 6)])]
    with pytest.raises(m.ConfigError, match='raise max_backends'):
        m.normalize_services(five_backends, m.Limits(max_backends=4, ring_size=101), '10.0.0.1')
    with pytest.raises(m.ConfigError, match='raise max_services'):
        m.normalize_services([svc(port=p) for p in (80, 81)], m.Limits(max_services=1), '10.0.0.1')
    with pytest.raises(m.ConfigError, match='must be a prime'):
        m.Limits(ring_size=4096)
    with pytest.raises(m.ConfigError, match='too small for max_backends'):
        m.Limits(max_backends=64, ring_size=601)
    with pytest.raises(m.ConfigError, match='at least 64 ports'):
        m.Limits(snat_port_min=30000, snat_port_max=30010)


def test_snat_ip_defaults_to_interface_address_and_is_required():
    assert m.normalize_services([svc()], m.Limits(), '10.0.0.99')[0]['snat_ip'] == '10.0.0.99'
    with pytest.raises(m.ConfigError, match='no snat_ip'):
        m.normalize_services([svc()], m.Limits(), None)


def test_service_key_is_network_order():
    key = m.pack_service_key({'vip': '10.1.2.3', 'port': 80, 'protocol': 'udp'})
    assert key == bytes([10, 1, 2, 3, 0, 80, 17, 0])


def _c_struct_sizes():
    """Sizes of the structs in bpf/xdp_lb.h, computed from their member types (natural alignment)."""
    sizes = {'__be32': 4, '__u32': 4, '__be16': 2, '__u16': 2, '__u8': 1, '__u64': 8, 'char': 1}
    text = open(HEADER).read()
    out = {}
    for name, body in re.findall(r'struct (\w+) \{(.*?)\};', text, re.S):
        offset = align = 0
        for typ, field, count in re.findall(r'(\w+) (\w+)(?:\[(\d+)\])?;', re.sub(r'/\*.*?\*/', '', body, flags=re.S)):
            size = sizes[typ]
            offset = (offset + size - 1) // size * size + size * int(count or 1)
            align = max(align, size)
        out[name] = (offset + align - 1) // align * align
    return out


def test_python_layouts_match_the_c_header():
    c = _c_struct_sizes()
    assert c['lb_service_key'] == m.SERVICE_KEY.size
    assert c['lb_service'] == m.SERVICE.size
    assert c['lb_backend'] == m.BACKEND.size
    assert c['lb_flow_key'] == m.FLOW_KEY.size
    assert c['lb_nat'] == m.NAT.size
    assert c['lb_counters'] == m.COUNTERS.size
    assert c['lb_meta'] == m.META.size


def test_diff_names_every_change():
    before = m.normalize_services([svc(), svc(port=81)], m.Limits(), '10.0.0.10')
    after = m.normalize_services([svc(backends=[{'ip': '10.0.0.11', 'weight': 2}, '10.0.0.13']),
                                  svc(port=82)], m.Limits(), '10.0.0.10')
    changes = m.diff_services(before, after)
    assert 'remove service 10.0.0.10:81/tcp' in changes
    assert any(c.startswith('add service 10.0.0.10:82/tcp') for c in changes)
    assert 'service 10.0.0.10:80/tcp: remove backend 10.0.0.12:80' in changes
    assert 'service 10.0.0.10:80/tcp: add backend 10.0.0.13:80 (weight 1)' in changes
    assert 'service 10.0.0.10:80/tcp: backend 10.0.0.11:80 weight 1 -> 2' in changes
    assert m.diff_services(after, after) == []
