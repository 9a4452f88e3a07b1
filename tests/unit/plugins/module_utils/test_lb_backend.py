# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import lb_backend as b


def test_vips_are_checked_and_sorted():
    assert b.normalize_vips(['10.0.0.20', '10.0.0.3', '10.0.0.20']) == ['10.0.0.3', '10.0.0.20']


@pytest.mark.parametrize('vips,message', [
    (None, 'non-empty list'), ([], 'non-empty list'), ('10.0.0.1', 'non-empty list'),
    (['10.0.0.1', '127.0.0.1'], r'vips\[1\] 127.0.0.1 is a loopback'), (['x'], 'not an IPv4 address'),
])
def test_bad_vips_are_named(vips, message):
    with pytest.raises(b.ConfigError, match=message):
        b.normalize_vips(vips)


@pytest.mark.parametrize('params,message', [
    ({'name': 'Bad Name'}, "name 'Bad Name' is invalid"),
    ({'name': 'ok', 'forwarding': 'nat', 'vips': ['10.0.0.1']}, "forwarding 'nat': use dsr or ipip"),
    ({'name': 'ok', 'decap': 'gre', 'vips': ['10.0.0.1']}, "decap 'gre': use auto, device or xdp"),
])
def test_bad_input_is_a_backend_error_not_a_traceback(tmp_path, monkeypatch, params, message):
    monkeypatch.setattr(b.agent_state, 'STATE_DIR', str(tmp_path))
    with pytest.raises(b.BackendError, match=message) as err:
        b.LbBackend(params).run()
    assert 'exception' not in err.value.extra
    assert not os.listdir(str(tmp_path)), 'nothing recorded for a refused input'


def test_absent_without_a_record_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(b.agent_state, 'STATE_DIR', str(tmp_path))
    assert b.LbBackend({'name': 'never', 'state': 'absent'}).run()['changed'] is False
