# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpf_facts is a facts module: it returns ansible_facts.ebpf_networking and nothing else; require fails
with every missing feature and its fix. The kernel is stubbed: these tests run anywhere."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.ebpf.networking.plugins.modules import bpf_facts


@pytest.fixture
def kernel(monkeypatch):
    """A kernel with everything but tracefs; tests change `mounts` to take things away."""
    state = {'mounts': {'/sys/fs/bpf': 'bpf', '/sys/fs/cgroup/unified': 'cgroup2'}}
    monkeypatch.setattr(bpf_facts.bpf_loader, 'mounts', lambda: dict(state['mounts']))
    monkeypatch.setattr(bpf_facts.bpf_syscall, 'probe_prog_type', lambda t: True)
    monkeypatch.setattr(bpf_facts.bpf_syscall, 'probe_map_type', lambda *spec: True)
    monkeypatch.setattr(bpf_facts, 'helper_support', lambda module: ({'bpf_fib_lookup': True}, None))
    monkeypatch.setattr(bpf_facts, 'bcc_check', lambda module, enabled: {'importable': True, 'compiles': None,
                                                                          'error': None})
    monkeypatch.setattr(bpf_facts.os, 'geteuid', lambda: 0)
    return state


def test_returns_facts_and_nothing_else(run_module, kernel):
    how, result = run_module(bpf_facts, {'check_bcc': False})
    assert how == 'exit'
    assert sorted(result) == ['ansible_facts', 'changed']
    assert result['changed'] is False
    facts = result['ansible_facts']['ebpf_networking']
    assert facts['bpffs'] == '/sys/fs/bpf'
    assert facts['cgroup2'] == '/sys/fs/cgroup/unified'
    assert facts['features']['bpffs'] is True and facts['features']['tracefs'] is False


def test_documented_fact_keys_are_the_returned_ones(run_module, kernel):
    import yaml
    documented = yaml.safe_load(bpf_facts.RETURN)['ansible_facts']['contains']['ebpf_networking']['contains']
    how, result = run_module(bpf_facts, {'check_bcc': False})
    assert sorted(result['ansible_facts']['ebpf_networking']) == sorted(documented)


def test_require_lists_every_missing_feature_with_its_fix(run_module, kernel):
    kernel['mounts'] = {}
    how, result = run_module(bpf_facts, {'require': ['bpffs', 'cgroup2', 'xdp'], 'check_bcc': False})
    assert how == 'fail'
    assert [m.split(':')[0] for m in result['missing']] == ['bpffs', 'cgroup2']
    assert 'mount -t bpf bpf /sys/fs/bpf' in result['msg'] and 'mount -t cgroup2' in result['msg']


def test_unknown_required_feature_is_named(run_module, kernel):
    how, result = run_module(bpf_facts, {'require': ['bpffs', 'warp_drive']})
    assert how == 'fail'
    assert 'warp_drive' in result['msg'] and 'bpffs' not in result['msg'].split(';')[0]
