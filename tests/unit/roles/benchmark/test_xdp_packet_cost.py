# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/benchmark/files/xdp_packet_cost.py: which Katran figures the verdicts use, the like-for-like ipip
line, and a Katran checkout that is not one. (The measurement itself needs root and bcc: the benchmark.)"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'benchmark', 'files',
                      'xdp_packet_cost.py')
spec = importlib.util.spec_from_file_location('xdp_packet_cost', SCRIPT)
cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cost)

EMPTY = 100


def samples(ours, katran=None, ipip=None):
    """Raw run durations as measure() returns them: every path's ns plus the empty program's."""
    out = dict((path, [ns + EMPTY] * 5) for path, ns in ours.items())
    out['empty'] = [EMPTY] * 5
    for path, ns in (katran or {}).items():
        out['katran_' + path] = [ns + EMPTY] * 5
    for path, ns in (ipip or {}).items():
        out[path] = [ns + EMPTY] * 5
    return out


OURS = {'new_flow': 500, 'established': 120, 'reply': 130, 'non_vip': 10}


def test_katran_measured_in_the_same_rounds_replaces_the_recorded_figures():
    result = cost.summarize(samples(OURS, katran={'new_flow': 600, 'established': 250, 'non_vip': 90}), 127, {}, 5)
    assert result['katran_from'] == 'measured in the same rounds'
    assert result['katran_ns'] == {'new_flow': 600, 'established': 250, 'reply': 250, 'non_vip': 90}
    verdicts = cost.verdicts(result, {})
    # 500 ns is above the recorded 384 but below Katran measured in the same rounds
    assert verdicts['new_flow']['below_katran'] is True
    assert 'measured in the same rounds' in cost.report(result, {})


def test_without_katran_the_recorded_figures_decide():
    result = cost.summarize(samples(OURS), 127, {}, 5)
    assert result['katran_ns'] == cost.KATRAN_NS and result['katran_from'] == cost.KATRAN_FROM
    verdicts = cost.verdicts(result, {})
    assert verdicts['new_flow']['below_katran'] is False  # 500 > 384
    assert verdicts['established']['below_katran'] is True  # 120 < 150


def test_baseline_ratio_and_memory_verdicts():
    result = cost.summarize(samples(OURS), 129, {}, 5)
    verdicts = cost.verdicts(result, {'new_flow': 300, 'established': 100})
    assert verdicts['new_flow']['within_ratio'] is False  # 500 > 1.5 x 300
    assert verdicts['established']['within_ratio'] is True  # 120 <= 150
    assert verdicts['reply']['within_ratio'] is None  # no baseline for it
    assert verdicts['bytes_per_connection'] is False  # 129 > 128


def test_the_ipip_line_compares_like_for_like_only_when_measured():
    katran = {'new_flow': 600, 'established': 250, 'non_vip': 90}
    with_ipip = cost.summarize(samples(OURS, katran, ipip={'new_flow_ipip': 450, 'established_ipip': 140}), 127, {}, 5)
    text = cost.report(with_ipip, {})
    assert 'forwarding ipip' in text and 'new flow 450 ns, Katran 600' in text and 'established 140 ns, Katran 250' in text
    without = cost.summarize(samples(OURS, katran), 127, {}, 5)
    assert 'forwarding ipip' not in cost.report(without, {})


def test_a_directory_that_is_not_a_katran_checkout_is_named(tmp_path):
    with pytest.raises(SystemExit) as err:
        cost.KatranPeer(str(tmp_path), None, 1024)
    assert str(tmp_path) in str(err.value) and 'katran/lib/bpf/balancer.bpf.c' in str(err.value)


def test_a_path_of_a_few_clock_steps_is_judged_within_one_step():
    # non-VIP measured at 20 ns in the baseline run and 40 ns in ours: one 10 ns step above 1.5 x 20
    assert cost.within_budget(40, 20) is True
    assert cost.within_budget(50, 20) is False
    assert cost.within_budget(1650, 1100) is True and cost.within_budget(1661, 1100) is False
    assert cost.within_budget(40, None) is None
    # the report's column says the same: non-VIP at 10 ns against a baseline of 4 is one step above 6
    line = [x for x in cost.report(cost.summarize(samples(OURS), 100, {}, 5), {'non_vip': 4}).splitlines()
            if x.startswith('non_vip')][0]
    assert line.split()[-1] == 'yes'
