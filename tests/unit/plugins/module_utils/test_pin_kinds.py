# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_proxy, sockmap_redirect and xdp_decap share /sys/fs/bpf/ebpf_networking/<name>: none may touch
another's pins (faked here as plain files under a tmp pin root)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import (
    bpf_loader, pin_kinds, sockmap_deploy, xdp_decap_deploy, xdp_lb_deploy, xdp_lb_maps)

PIN_FILES = {
    'xdp_proxy': ['prog_xdp_lb'] + ['map_' + m for m in xdp_lb_maps.MAP_NAMES],
    'sockmap_redirect': ['prog_' + sockmap_deploy.SOCKOPS, 'prog_' + sockmap_deploy.SKMSG]
    + ['map_' + m for m in sockmap_deploy.MAPS + sockmap_deploy.NEW_MAPS],
    'xdp_decap': ['prog_' + xdp_decap_deploy.PROG] + ['map_' + m for m in xdp_decap_deploy.MAP_NAMES],
}


def run(kind, state):
    params = {'name': 'qflb', 'state': state}
    if kind == 'xdp_decap':
        return xdp_decap_deploy.XdpDecapDeployment(dict(params, interface='eth0')).run()
    if kind == 'xdp_proxy':
        return xdp_lb_deploy.XdpLbDeployment(dict(params, interface='eth0', services=[])).run()
    return sockmap_deploy.SockmapDeployment(dict(params, ports=[80], cidrs=[], max_sockets=1024, drain_timeout=0,
                                                 bpf_sources={'sockops.bpf.c': ''})).apply()


@pytest.fixture
def pin_root(tmp_path, monkeypatch):
    root = tmp_path / 'ebpf_networking'
    real = bpf_loader.PinSet
    monkeypatch.setattr(bpf_loader, 'PinSet', lambda name, root=str(root): real(name, root))
    return root


def test_each_kinds_pin_names_are_recognised():
    for kind, files in PIN_FILES.items():
        assert pin_kinds.kinds_of(files) == [kind]
    assert pin_kinds.kinds_of(['prog_xdp_lb', 'map_decap_dsts']) == ['xdp_proxy', 'xdp_decap']
    assert pin_kinds.kinds_of(['something_else']) == []


@pytest.mark.parametrize('owner,intruder', [(o, i) for o in PIN_FILES for i in PIN_FILES if o != i])
@pytest.mark.parametrize('state', ['present', 'absent'])
def test_a_module_refuses_another_modules_pins(pin_root, owner, intruder, state):
    pins = pin_root / 'qflb'
    pins.mkdir(parents=True)
    for f in PIN_FILES[owner]:
        (pins / f).write_text(u'')
    with pytest.raises(Exception) as err:
        run(intruder, state)
    message = getattr(err.value, 'msg', None) or str(err.value)
    assert 'pins of a %s deployment named qflb' % owner in message and 'another name' in message, message
    assert sorted(os.listdir(str(pins))) == sorted(PIN_FILES[owner]), 'the other deployment\'s pins were touched'
