# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The churn benchmark's rate verdict (roles/benchmark/files/churn_client.py), on slices measured on the lab."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import os

CLIENT = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'benchmark', 'files', 'churn_client.py')
_spec = importlib.util.spec_from_file_location('churn_client', CLIENT)
churn_client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(churn_client)


def slices(rates, busy, steal):
    return [{'rate': r, 'cpu': {'busy': b, 'idle': round(100 - b - s, 1), 'steal': s}}
            for r, b, s in zip(rates, busy, steal)]


def test_a_run_slowed_by_the_hypervisor_taking_cpu_is_met_per_busy_cpu():
    # measured 00:06 UTC (docs/xdp-load-balancer.md): the rate fell as steal time rose, 52-54/s per busy %
    run = slices([4776, 4755, 4379, 4158, 3555, 3041], [88.5, 87.6, 83.8, 79.3, 68.7, 58.1],
                 [0.2, 0.6, 3.2, 3.6, 13.6, 23.4])
    assert churn_client.judge(run) == 'MISSED on raw rates, met per busy CPU'


def test_a_load_balancer_that_slows_down_with_the_same_cpu_is_missed():
    run = slices([4776, 4755, 4379, 3000, 2500, 2000], [88.5, 87.6, 88.0, 88.2, 88.4, 88.1], [0.2] * 6)
    assert churn_client.judge(run) == 'MISSED'


def test_a_dip_that_recovers_is_missed():
    run = slices([4000, 3900, 400, 3900, 4000, 4000], [88.0] * 6, [0.1] * 6)
    assert churn_client.judge(run) == 'MISSED'


def test_a_steady_run_is_met():
    assert churn_client.judge(slices([3917, 3875, 4211, 3917, 3694, 3752], [90.0] * 6, [0.0] * 6)) == 'met'


def test_cpu_split_counts_steal_apart_from_idle_and_busy():
    before = dict.fromkeys(churn_client.CPU_FIELDS, 0)
    after = dict(before, user=50, system=20, softirq=10, idle=10, iowait=0, steal=10)
    assert churn_client.cpu_split(before, after) == {'busy': 80.0, 'idle': 10.0, 'steal': 10.0}
