# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xdp_testbed's per-run names: concurrent runs never share one, and only dead runs' leftovers are removed."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.ebpf.networking.plugins.module_utils import xdp_testbed

DEAD_PID = 2 ** 22 + 7  # above the default pid_max: no such process


def test_run_name_carries_the_pid():
    assert xdp_testbed.run_name('xh-dp') == 'xh-dp-%d' % os.getpid()
    assert xdp_testbed.run_name('xh-dp', 42) == 'xh-dp-42'


def test_stale_names_are_only_those_of_dead_runs_with_the_same_base():
    names = ['xh-dp-%d' % DEAD_PID, 'xh-dp-%d' % os.getpid(), 'xh-dpt-%d' % DEAD_PID, 'xh-dp', 'other-%d' % DEAD_PID,
             'xh-dp-%dx' % DEAD_PID]
    assert xdp_testbed.stale_names('xh-dp', names) == ['xh-dp-%d' % DEAD_PID]
    assert xdp_testbed.stale_names('xh-dpt', names) == ['xh-dpt-%d' % DEAD_PID]
