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


def test_a_run_slowed_with_the_direct_runs_next_to_it_is_met_relative_to_direct():
    # the direct runs fell as the slices did (steal rising over a minute), while the busy CPU did not show it
    run = slices([3967, 3441, 3149, 3186, 3611, 3400], [80.0] * 6, [5.4, 10.1, 16.6, 16.9, 7.7, 12.0])
    controls = [7400, 6700, 6300, 5900, 6100, 6400, 6200]
    assert churn_client.judge(run, controls) == 'met relative to direct in the same run (MISSED on raw rates)'
    assert churn_client.judge(run) == 'MISSED'


def test_a_load_balancer_slower_at_the_end_than_direct_next_to_it_is_missed():
    # the direct runs keep their rate and so does the CPU: the slowdown is the load balancer's
    run = slices([3967, 3900, 3800, 3600, 3400, 3300], [80.0] * 6, [5.0] * 6)
    controls = [7400] * 7
    assert churn_client.judge(run, controls) == 'MISSED'


def test_a_burst_of_steal_inside_one_slice_is_judged_by_its_cpu_split():
    # measured 28 Nov 10:50 UTC on the lab: slice 2 had 34.7 % steal, the direct runs either side far less;
    # relative to them slice 2 fell to 0.68 of slice 1 and the last slice, in a quiet minute, was met on raw
    rates = [3955, 2419, 3553, 4080, 4277, 3500]
    run = slices(rates, [76.7, 48.4, 70.4, 83.0, 82.6, 68.0], [10.5, 34.7, 12.7, 1.5, 0.6, 15.0])
    controls = [8199, 6087, 6791, 7604, 8072, 7446, 8534]
    assert churn_client.relative_rates(run, controls)[-1] < 0.9 * churn_client.relative_rates(run, controls)[0]
    assert churn_client.judge(run, controls) == 'MISSED on raw rates, met per busy CPU'


def test_a_dip_against_steady_direct_runs_is_missed():
    run = slices([4000, 3900, 1500, 3900, 4000, 3700], [88.0] * 6, [0.1] * 6)
    assert churn_client.judge(run, [7400, 7300, 7500, 7400, 7400, 7300, 7600]) == 'MISSED'


def test_without_usable_control_runs_the_verdict_falls_back_to_busy_cpu():
    run = slices([4776, 4755, 4379, 4158, 3555, 3041], [88.5, 87.6, 83.8, 79.3, 68.7, 58.1],
                 [0.2, 0.6, 3.2, 3.6, 13.6, 23.4])
    # a control run that made no request, and a list of the wrong length: neither can be used
    assert churn_client.relative_rates(run, [7000, 0, 7000, 7000, 7000, 7000, 7000]) is None
    assert churn_client.relative_rates(run, [7000] * 3) is None
    assert churn_client.judge(run, [7000] * 3) == 'MISSED on raw rates, met per busy CPU'


def test_each_slice_is_taken_relative_to_the_control_runs_on_either_side():
    run = slices([4000, 3000], [80.0] * 2, [0.0] * 2)
    assert churn_client.relative_rates(run, [8000, 4000, 6000]) == [4000 * 2.0 / 12000, 3000 * 2.0 / 10000]


def test_the_control_url_and_its_seconds_are_read_from_the_command_line():
    assert churn_client.parse_args(['http://lb/', '200000']) == ('http://lb/', 200000, 10, None, 5)
    assert churn_client.parse_args(['http://lb/', '1000', '5', '--control', 'http://be/', '3']) == (
        'http://lb/', 1000, 5, 'http://be/', 3)
    assert churn_client.parse_args(['http://lb/', '1000', '--control', 'http://be/']) == ('http://lb/', 1000, 10, 'http://be/', 5)
