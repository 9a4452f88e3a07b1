# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run in the lab client: short HTTP connections (one request each, Connection: close) with wrk in
10-second slices until at least TOTAL have been made. Prints JSON: per slice the requests, the rate,
the failures (socket errors and non-2xx/3xx answers) and the machine's CPU split (busy, idle, steal);
and the rate target's verdict (judge()).

  churn_client.py URL TOTAL [SLICE_SECONDS] [--control URL [CONTROL_SECONDS]]

--control: before the first slice and after each one, the same load runs for CONTROL_SECONDS (default 5)
against another URL (the benchmark gives one backend directly). Those runs are the peer measured in the
same minutes: each slice's rate is also taken relative to the control runs on either side of it, which
the machine's speed (steal time, other processes) changes as much as the slice, and the load balancer
does not."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re
import subprocess
import sys


CPU_FIELDS = ('user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal')


def cpu_ticks(path='/proc/stat'):
    """The machine's CPU time split (/proc/stat is not namespaced: a container sees the whole VM)."""
    with open(path) as f:
        return dict(zip(CPU_FIELDS, (int(x) for x in f.readline().split()[1:9])))


def cpu_split(before, after):
    """Percentages of the slice: busy (user, system, irq, softirq), idle (with iowait), steal (time the
    hypervisor gave to other machines)."""
    spent = dict((k, after.get(k, 0) - before.get(k, 0)) for k in CPU_FIELDS)
    total = float(sum(spent.values())) or 1.0
    idle = spent['idle'] + spent['iowait']
    return {'busy': round(100 * (total - idle - spent['steal']) / total, 1), 'idle': round(100 * idle / total, 1),
            'steal': round(100 * spent['steal'] / total, 1)}


def relative_rates(slices, controls):
    """Each slice's rate over the mean of the control runs before and after it; None when a control run
    is missing or made no request (then nothing can be said relative to it)."""
    if len(controls) != len(slices) + 1 or min(controls or [0]) <= 0:
        return None
    return [s['rate'] * 2.0 / (controls[i] + controls[i + 1]) for i, s in enumerate(slices)]


def judge(slices, controls=None):
    """The rate target (last slice >= 90% of the first, none below half) on the raw rates; then relative
    to the control runs (the same load to a backend directly, between the slices), and per busy CPU:
    the load is CPU-bound on a small VM, so a slice where the hypervisor stole CPU (steal) or other
    processes took it is slower for reasons outside the load balancer, and so are the control runs
    next to it when the slowdown lasts. A load balancer that gets slower itself misses all three."""
    def met(rates):
        return len(rates) > 1 and rates[-1] >= 0.9 * rates[0] and min(rates) >= 0.5 * rates[0]
    raw = [s['rate'] for s in slices]
    relative = relative_rates(slices, controls) if controls is not None else None
    per_cpu = [s['rate'] / max(s['cpu']['busy'], 1.0) for s in slices if 'cpu' in s]
    if met(raw):
        return 'met'
    if relative is not None and met(relative):
        return 'met relative to direct in the same run (MISSED on raw rates)'
    # the control runs bracket a slice but do not overlap it: a burst of steal inside one slice only
    # shows in that slice's own CPU split
    if len(per_cpu) == len(raw) and met(per_cpu):
        return 'MISSED on raw rates, met per busy CPU'
    return 'MISSED'


def slice_once(url, seconds, threads, connections):
    # --timeout 10s: a SYN the backend rejects twice (PAWS in its TIME_WAIT, retransmits at 1 s and 3 s) is
    # slow, not lost; wrk's default of 2 s counted it as a failed connection
    out = subprocess.run(['wrk', '-t%d' % threads, '-c%d' % connections, '-d%ds' % seconds, '--timeout', '10s',
                          '-H', 'Connection: close', url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         check=False).stdout
    done = re.search(r'(\d+) requests in ([\d.]+)(\w+)', out)
    socket_errors = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', out)
    non_2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if not done:
        return {'requests': 0, 'rate': 0.0, 'failures': 1, 'output': out[-500:]}
    requests = int(done.group(1))
    return {'requests': requests, 'rate': requests / float(seconds),
            'failures': (sum(int(x) for x in socket_errors.groups()) if socket_errors else 0)
            + (int(non_2xx.group(1)) if non_2xx else 0),
            'socket_errors': socket_errors.group(0) if socket_errors else None}


def parse_args(argv):
    args = list(argv)
    control, control_seconds = None, 5
    if '--control' in args:
        at = args.index('--control')
        control = args[at + 1]
        rest = args[at + 2:]
        if rest and rest[0].isdigit():
            control_seconds = int(rest[0])
        args = args[:at]
    url, total = args[0], int(args[1])
    seconds = int(args[2]) if len(args) > 2 else 10
    return url, total, seconds, control, control_seconds


def main():
    url, total, seconds, control, control_seconds = parse_args(sys.argv[1:])
    slices, controls = [], []
    made = 0

    def control_run():
        if control:
            # not counted in the total, nor in the failures: a peer, not the load balancer
            controls.append(slice_once(control, control_seconds, 2, 20)['rate'])

    control_run()
    while made < total and len(slices) < 1000:
        before = cpu_ticks()
        entry = slice_once(url, seconds, 2, 20)
        entry['cpu'] = cpu_split(before, cpu_ticks())
        entry['rate_per_busy_cpu'] = round(entry['rate'] / max(entry['cpu']['busy'], 1.0), 1)
        entry['cpu_busy_idle_steal'] = '%(busy)s/%(idle)s/%(steal)s' % entry['cpu']
        slices.append(entry)
        made += entry['requests']
        control_run()
        if entry['requests'] == 0:
            break
    rates = [s['rate'] for s in slices]
    lowest = rates.index(min(rates))
    relative = relative_rates(slices, controls) if control else None
    print(json.dumps({'connections': made, 'failures': sum(s['failures'] for s in slices), 'slices': slices,
                      'first_rate': rates[0], 'last_rate': rates[-1] if len(slices) > 1 else 0.0,
                      # a dip in the middle recovers before the end: the last slice alone misses it
                      'min_rate': rates[lowest], 'min_slice': lowest + 1, 'slice_seconds': seconds,
                      'control_rates': controls, 'control_seconds': control_seconds if control else 0,
                      'relative_rates': [round(r, 3) for r in relative] if relative else None,
                      'target': judge(slices, controls if control else None)}))


if __name__ == '__main__':
    main()
