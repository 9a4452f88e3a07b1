# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/benchmark/files/bench_report.py: parsing wrk and ratehttp output, CPU per request, the latency rate,
ratios and target verdicts, and which paths count as failed measurements."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPORT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'benchmark', 'files', 'bench_report.py')
spec = importlib.util.spec_from_file_location('bench_report', REPORT)
bench_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_report)

CPU_BEFORE = 'cpu  1000 0 500 9000 10 0 200 0 0 0'
# +300 user, +100 system, +600 idle, +0 iowait, +100 softirq ticks: 500 busy ticks = 5 s of CPU
CPU_AFTER = 'cpu  1300 0 600 9600 10 0 300 0 0 0'


def wrk_text(rps, requests, p50='1.05ms', p99='9.10ms', errors=False, cpu=True):
    text = ('Running 3s test @ http://172.30.0.11:80/\n'
            '  2 threads and 100 connections\n'
            '  Thread Stats   Avg      Stdev     Max   +/- Stdev\n'
            '    Latency     1.20ms    1.00ms  30.00ms   90.00%%\n'
            '  Latency Distribution\n'
            '     50%%    %s\n'
            '     75%%    1.50ms\n'
            '     90%%    2.00ms\n'
            '     99%%    %s\n'
            '  %d requests in 3.00s, 30.00MB read\n' % (p50, p99, requests))
    if errors:
        text += '  Socket errors: connect 0, read 3, write 0, timeout 7\n'
    text += 'Requests/sec:  %s\nTransfer/sec:     10.00MB\n' % rps
    if cpu:
        text = CPU_BEFORE + '\n' + text + CPU_AFTER + '\n'
    return text


def latency_text(p99, errors=0, late=0, due=3000, p50=0.8):
    return json.dumps({'url': 'http://x/', 'offered_rps': 1000.0, 'achieved_rps': 1000.0 if not errors else 990.0,
                       'connections': 50, 'duration_s': 3.0, 'warmup_s': 0.5, 'due': due, 'sent': due, 'ok': due - errors,
                       'recorded': 2500, 'p50_ms': p50, 'p90_ms': p99 / 2, 'p99_ms': p99, 'p999_ms': p99 * 2,
                       'max_ms': p99 * 3, 'mean_ms': 1.0, 'errors': errors,
                       'error_kinds': {'connect': 0, 'broken': errors, 'timeout': 0, 'status': 0, 'parse': 0, 'unsent': 0},
                       'late_sends': late, 'late_ms': 1.0, 'max_send_lag_ms': 0.5, 'reconnects': 0})


def test_wrk_parses_rate_percentiles_and_cpu_per_request():
    r = bench_report.wrk(wrk_text('50000.00', 150000, p50='850.00us', p99='1.20s'))
    assert r['rps'] == 50000.0 and r['requests'] == 150000
    assert r['p50_ms'] == pytest.approx(0.85) and r['p99_ms'] == pytest.approx(1200.0)
    assert r['errors'] is False
    # 500 busy ticks x 10 ms / 150000 requests = 33.33 us; 100 softirq ticks -> 6.67 us
    assert r['cpu_us_per_req'] == pytest.approx(33.33, abs=0.01)
    assert r['softirq_us_per_req'] == pytest.approx(6.67, abs=0.01)


def test_steal_and_guest_time_are_not_the_requests_cpu():
    """On a VM the hypervisor's steal (another machine's time) and guest time (already in user) are not CPU
    this host spent on the requests."""
    text = wrk_text('50000.00', 150000, cpu=False)
    # the same 500 busy ticks as above, plus 400 steal, 50 guest and 20 guest_nice ticks
    text = 'cpu  1000 0 500 9000 10 0 200 0 0 0\n' + text + 'cpu  1300 0 600 9600 10 0 300 400 50 20\n'
    r = bench_report.wrk(text)
    assert r['cpu_us_per_req'] == pytest.approx(33.33, abs=0.01)


def test_wrk_errors_and_missing_cpu_lines():
    r = bench_report.wrk(wrk_text('100.00', 300, errors=True, cpu=False))
    assert r['errors'] is True
    assert r['cpu_us_per_req'] is None and r['softirq_us_per_req'] is None
    assert bench_report.wrk('wrk: connection refused')['rps'] == 0.0


def test_latency_run_without_output_is_an_error_and_missing_percentiles_are_none():
    assert bench_report.latency('')['errors'] == 1
    r = bench_report.latency(json.dumps({'p50_ms': -1, 'p90_ms': -1, 'p99_ms': -1, 'p999_ms': -1, 'max_ms': -1,
                                         'errors': 5, 'late_sends': 0, 'due': 5}))
    assert r['p99_ms'] is None


def test_the_latency_rate_is_a_fraction_of_the_slowest_paths_median():
    pairs = []
    for rep in range(3):
        pairs += [('direct', wrk_text(str(70000 + rep), 210000)), ('nginx', wrk_text(str([30000, 20000, 34000][rep]), 90000)),
                  ('xdp_nat', wrk_text('50000', 150000))]
    rate, slowest = bench_report.pick_rate(pairs, 0.5)
    assert slowest == 'nginx' and rate == 15000  # median of 30000, 20000, 34000 is 30000


def test_no_rate_can_be_picked_when_a_path_measured_nothing():
    with pytest.raises(ValueError, match='dnat'):
        bench_report.pick_rate([('direct', wrk_text('70000', 1)), ('dnat', 'connection refused')], 0.5)


def measured(rps, p99s, late=None, errors=None):
    h = bench_report.http_summary(dict((t, [wrk_text(str(v), int(v) * 3)]) for t, v in rps.items()))
    lat = bench_report.latency_summary(dict((t, [latency_text(v, errors=(errors or {}).get(t, 0), late=(late or {}).get(t, 0))])
                                            for t, v in p99s.items()))
    return h, lat


RPS = {'direct': 70000, 'nginx': 30000, 'dnat': 45000, 'xdp_nat': 50000, 'xdp_dsr': 66500, 'xdp_ipip': 60000}
P99 = {'direct': 1.0, 'nginx': 4.0, 'dnat': 2.0, 'xdp_nat': 2.5, 'xdp_dsr': 1.5, 'xdp_ipip': 1.9}


def test_ratios_and_verdicts():
    h, lat = measured(RPS, P99)
    ratios = bench_report.path_ratios(h, lat)
    assert ratios['xdp_dsr_over_direct_rps'] == 0.95
    assert ratios['xdp_nat_over_dnat_rps'] == 1.111
    assert ratios['xdp_nat_over_dnat_p99_at_rate'] == 1.25
    verdicts = dict((c['target'], c['met']) for c in bench_report.targets(ratios))
    assert verdicts['XDP dsr >= 0.9x direct requests/s'] is True
    assert verdicts['XDP nat >= 1.2x netfilter DNAT requests/s'] is False
    assert verdicts['XDP nat p99 <= nginx p99 at equal offered load'] is True
    assert verdicts['XDP nat p99 <= dnat p99 at equal offered load'] is False
    assert verdicts['XDP dsr p99 <= dnat p99 at equal offered load'] is True
    assert verdicts['XDP ipip p99 <= dnat p99 at equal offered load'] is True
    # a ratio that could not be computed is not met
    assert verdicts['sockmap >= 1.3x plain TCP request/response'] is False


def test_a_path_with_errors_is_a_failed_measurement_a_missed_target_is_not():
    h, lat = measured(RPS, P99)
    assert bench_report.broken_paths(h, lat) == []
    h, lat = measured(RPS, P99, errors={'dnat': 3})
    assert bench_report.broken_paths(h, lat) == ['dnat latency']
    assert lat['dnat']['error_kinds']['broken'] == 3
    del lat['xdp_ipip']
    assert 'xdp_ipip latency (not run)' in bench_report.broken_paths(h, lat)


def test_the_rate_is_held_when_achieved_and_nothing_unsent_late_sends_are_shown_only():
    h, lat = measured(RPS, P99, late={'nginx': 310})
    assert lat['nginx']['rate_held'] is True and lat['nginx']['late_share'] == pytest.approx(0.1033, abs=1e-4)
    short = json.loads(latency_text(2.0))
    short.update({'achieved_rps': 900.0, 'due': 3000})
    unsent = json.loads(latency_text(2.0))
    unsent['error_kinds']['unsent'] = 1
    lat = bench_report.latency_summary({'direct': [json.dumps(short)], 'dnat': [json.dumps(unsent)]})
    assert lat['direct']['rate_held'] is False and lat['dnat']['rate_held'] is False
    assert bench_report.broken_paths(h, dict((t, lat[t]) for t in ('direct',))) == \
        ['%s latency (not run)' % t for t in RPS if t != 'direct']


def raw_file(tmp_path, latency_errors=0):
    http, latency = [], []
    for rep in range(3):
        for t in bench_report.PATHS:
            http.append([t, wrk_text(str(RPS[t]), RPS[t] * 3)])
            latency.append([t, latency_text(P99[t], errors=latency_errors if t == 'xdp_dsr' else 0)])
    local = [json.dumps({'mode': m, 'transport': tr, 'ops_per_sec': 20000.0, 'mbytes_per_sec': 4000.0})
             for m in ('rr', 'bulk') for tr in ('tcp', 'unix')]
    sockmap = [json.dumps({'mode': m, 'transport': 'tcp', 'ops_per_sec': 25000.0, 'mbytes_per_sec': 6000.0})
               for m in ('rr', 'bulk')]
    raw = {'profile': 'quick', 'settings': {'wrk_connections': 100, 'message_bytes': 64}, 'kernel': '6.18', 'cpus': 2,
           'xdp_mode': 'native', 'http': http, 'latency': latency, 'latency_rate': 15000,
           'paths': dict((t, '172.30.0.%d' % i) for i, t in enumerate(bench_report.PATHS)),
           'plain': local, 'sockmap': sockmap, 'sockmap_counters': {}, 'xdp_memory': {}, 'xdp_limits': {},
           'trace': [{'untraced': wrk_text('70000', 210000), 'traced': wrk_text('69000', 207000), 'drops_seen': 3}]}
    path = tmp_path / 'raw.json'
    path.write_text(json.dumps(raw))
    return str(path)


def run_report(*args):
    return subprocess.run([sys.executable, REPORT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)


def test_report_end_to_end(tmp_path):
    p = run_report(raw_file(tmp_path), str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'MISSED XDP nat >= 1.2x netfilter DNAT requests/s: 1.111 (>= 1.2)' in p.stdout
    assert 'met    XDP dsr >= 0.9x direct requests/s: 0.95 (>= 0.9)' in p.stdout
    result = json.loads((tmp_path / 'result.json').read_text())
    assert result['summary']['latency']['nginx']['p99_ms'] == 4.0
    assert result['summary']['http']['xdp_dsr']['rps'] == 66500
    assert result['latency_rate'] == 15000
    chart = (tmp_path / 'chart.svg').read_text()
    for t in bench_report.PATHS:
        assert '>%s</text>' % t in chart
    assert 'p99 at 15000 requests/s' in chart


def test_report_fails_when_a_path_errors(tmp_path):
    p = run_report(raw_file(tmp_path, latency_errors=2), str(tmp_path))
    assert p.returncode == 1
    assert "FAILED measurements: ['xdp_dsr latency']" in p.stdout


def test_pick_rate_command(tmp_path):
    runs = tmp_path / 'runs.json'
    runs.write_text(json.dumps([[t, wrk_text(str(RPS[t]), RPS[t] * 3)] for t in bench_report.PATHS]))
    p = run_report('--pick-rate', '0.5', str(runs))
    assert p.returncode == 0 and p.stdout.strip() == '15000', p.stderr
    runs.write_text(json.dumps([['direct', 'wrk: failed']]))
    p = run_report('--pick-rate', '0.5', str(runs))
    assert p.returncode == 1 and 'cannot pick the latency rate' in p.stderr
