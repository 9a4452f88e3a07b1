# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SockmapDeployment refuses every bad input with a message, before it touches bpffs, bcc or a cgroup."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader
from ansible_collections.ebpf.networking.plugins.module_utils import sockmap_deploy
from ansible_collections.ebpf.networking.plugins.module_utils.sockmap_deploy import SockmapDeployment
from ansible_collections.ebpf.networking.plugins.module_utils.sockmap_keys import SockmapConfigError

GOOD = dict(name='sk_unit', state='present', cgroup=None, container=None, ports=[80], cidrs=[], max_sockets=65535,
            scope='filtered', drain_timeout=1.0, bpf_sources={'sockops.bpf.c': '', 'sockredir.bpf.c': '', 'sockmap.h': ''})


@pytest.fixture(autouse=True)
def nothing_on_the_system(monkeypatch):
    """Any step past validation would need bpffs first: make reaching it a failure of the test."""
    def reached():
        raise AssertionError('validation let a bad input through to the system')
    monkeypatch.setattr(bpf_loader, 'require_bpffs', reached)
    monkeypatch.setattr(bpf_loader, 'resolve_cgroup', lambda cgroup, container, run_command: '/sys/fs/cgroup/unified')


@pytest.mark.parametrize('change,error,message', [
    ({'name': 'Bad Name'}, bpf_loader.LoaderError, "name 'Bad Name' is invalid"),
    ({'name': ''}, bpf_loader.LoaderError, 'is invalid'),
    ({'bpf_sources': None}, sockmap_deploy.SockmapError, 'run this module through its action plugin'),
    ({'max_sockets': 0}, sockmap_deploy.SockmapError, 'max_sockets 0 is out of range'),
    ({'drain_timeout': -0.5}, sockmap_deploy.SockmapError, 'drain_timeout -0.5 is out of range'),
    ({'drain_timeout': 61}, sockmap_deploy.SockmapError, 'drain_timeout 61 is out of range'),
    ({'ports': [], 'cidrs': []}, sockmap_deploy.SockmapError, 'Give ports or cidrs, or scope=all'),
    ({'scope': 'all'}, sockmap_deploy.SockmapError, 'scope=all contradicts'),
    ({'ports': [70000]}, SockmapConfigError, 'out of range'),
    ({'ports': ['http']}, SockmapConfigError, 'not a number'),
    ({'ports': [], 'cidrs': ['10.0.0.0/33']}, SockmapConfigError, 'invalid'),
])
def test_bad_input_is_refused_before_anything_happens(change, error, message):
    params = dict(GOOD, **change)
    with pytest.raises(error, match=message):
        SockmapDeployment(params).apply()


def test_absent_checks_drain_timeout_too():
    with pytest.raises(sockmap_deploy.SockmapError, match='drain_timeout'):
        SockmapDeployment(dict(GOOD, state='absent', drain_timeout=100)).apply()


def test_good_input_gets_past_validation():
    with pytest.raises(AssertionError, match='validation let'):
        SockmapDeployment(dict(GOOD)).apply()
