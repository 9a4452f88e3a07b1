# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_proxy's lock wrapper says which failed: taking the lock, or the work done while holding it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state
from ansible_collections.ebpf.networking.plugins.modules import xdp_proxy


class Failed(Exception):
    pass


class FakeModule(object):
    params = {'name': 'lk_lb'}

    def fail_json(self, msg, **kw):
        raise Failed(msg)


def test_an_os_error_of_the_work_under_the_lock_is_not_called_a_lock_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_state, 'RUN_DIR', str(tmp_path))
    with pytest.raises(Failed) as failed:
        with xdp_proxy.locked(FakeModule(), 'xdp_proxy', {}):
            raise OSError(errno.EROFS, 'Read-only file system', '/etc/ebpf-networking/xdp_proxy/lk_lb.json')
    assert 'cannot take the lock' not in str(failed.value)
    assert str(failed.value).startswith('xdp_proxy lk_lb: ') and 'Read-only file system' in str(failed.value)


def test_a_lock_that_cannot_be_taken_is_called_so(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_state, 'RUN_DIR', str(tmp_path))
    monkeypatch.setattr(xdp_proxy.deploy_lock.os, 'open', _refuse)
    with pytest.raises(Failed) as failed:
        with xdp_proxy.locked(FakeModule(), 'xdp_proxy', {}):
            raise AssertionError('the body must not run without the lock')
    assert 'lk_lb' in str(failed.value) and 'Permission denied' in str(failed.value)


def _refuse(*_args, **_kw):
    raise OSError(errno.EACCES, 'Permission denied')
