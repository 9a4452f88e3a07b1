# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each action plugin ships every BPF file its programs include. A header missing from BPF_FILES still
compiles on the controller's own machine (tests, local connection with the source tree at hand) but not on a
remote host, where the module only has what the action plugin sent."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os
import re

import pytest

from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import BPF_DIR

ACTIONS = ['skb_drop_trace', 'sockmap_redirect', 'xdp_proxy']


def quoted_includes(name, seen=None):
    """The files name includes with #include "...", transitively (system headers <...> are the target's)."""
    seen = set() if seen is None else seen
    with open(os.path.join(BPF_DIR, name)) as f:
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), re.M):
            if inc not in seen:
                seen.add(inc)
                if os.path.isfile(os.path.join(BPF_DIR, inc)):  # a missing one is reported by the caller
                    quoted_includes(inc, seen)
    return seen


def bpf_files(action):
    return importlib.import_module('ansible_collections.ebpf.networking.plugins.action.' + action).ActionModule.BPF_FILES


@pytest.mark.parametrize('action', ACTIONS)
def test_every_included_header_is_shipped(action):
    files = bpf_files(action)
    programs = [f for f in files if f.endswith('.bpf.c')]
    assert programs, '%s ships no BPF program' % action
    needed = set()
    for program in programs:
        needed |= quoted_includes(program)
    assert sorted(needed - set(files)) == []


@pytest.mark.parametrize('action', ACTIONS)
def test_every_shipped_file_exists(action):
    assert [f for f in bpf_files(action) if not os.path.isfile(os.path.join(BPF_DIR, f))] == []


def test_every_program_is_shipped_by_an_action():
    shipped = set()
    for action in ACTIONS:
        shipped |= set(bpf_files(action))
    assert sorted(f for f in os.listdir(BPF_DIR) if f.endswith('.bpf.c') and f not in shipped) == []
