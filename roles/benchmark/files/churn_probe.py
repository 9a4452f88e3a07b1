# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure a churn run on the deployed lab, slice by slice (run on the docker host, as root).

Runs the benchmark's churn load (wrk -t2 -c20, Connection: close, 10 s slices) from the lab client
through the XDP load balancer and records, per slice: the rate, TIME_WAIT counts in the client and
each backend, the TCP counters (/proc/<pid>/net/netstat and snmp) that move in the client and the
backends, the load balancer's global counters (lb_global) and the host's CPU split (/proc/stat).
Prints one JSON document; --table prints a compact table too.

  /usr/bin/python3 roles/benchmark/files/churn_probe.py [--slices 6] [--lb-name xdp_lb] [--table]
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import re
import subprocess
import sys
import time

LAB_LABEL = 'ebpf.networking.lab'
PIN_ROOT = '/sys/fs/bpf/ebpf_networking'
# The counters the table shows (all that moved are in the JSON).
CLIENT_KEYS = ('TcpExtTCPSynRetrans', 'TcpOutRsts', 'TcpAttemptFails', 'TcpExtTWRecycled', 'TcpExtTW',
               'TcpRetransSegs', 'TcpExtTCPTimeouts')
BACKEND_KEYS = ('TcpExtTW', 'TcpExtTWKilled', 'TcpExtPAWSTimewait', 'TcpExtTCPACKSkippedTimeWait',
                'TcpExtTCPChallengeACK', 'TcpExtPAWSEstab', 'TcpExtTCPTimeWaitOverflow', 'TcpInErrs',
                'TcpOutRsts', 'TcpEstabResets', 'TcpExtListenDrops', 'TcpPassiveOpens', 'TcpExtTCPAbortOnData')
LB_KEYS = ('snat_ports_reclaimed', 'snat_port_scans', 'orphan_replies_dropped', 'flows_lost',
           'snat_ports_exhausted')


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False).stdout


def lab_containers():
    out = run(['docker', 'ps', '--filter', 'label=%s' % LAB_LABEL, '--format',
               '{{.Names}} {{.Label "%s"}}' % LAB_LABEL])
    roles = {}
    for line in out.splitlines():
        name, role = (line.split(' ', 1) + [''])[:2]
        pid = run(['docker', 'inspect', '-f', '{{.State.Pid}}', name]).strip()
        ip = run(['docker', 'inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name]).strip()
        roles.setdefault(role, []).append({'name': name, 'pid': int(pid), 'ip': ip})
    return roles


def snmp(pid):
    """Every counter of /proc/<pid>/net/netstat and snmp, as nstat names them (TcpExt..., Tcp...)."""
    values = {}
    for path in ('/proc/%d/net/netstat' % pid, '/proc/%d/net/snmp' % pid):
        with open(path) as f:
            lines = f.read().splitlines()
        for names, nums in zip(lines[0::2], lines[1::2]):
            prefix, names = names.split(':', 1)
            for key, value in zip(names.split(), nums.partition(':')[2].split()):
                try:
                    values[prefix + key] = int(value)
                except ValueError:
                    pass
    return values


def time_waits(pid):
    out = run(['nsenter', '-t', str(pid), '-n', 'ss', '-Htan', 'state', 'time-wait'])
    return len(out.splitlines())


def global_counter_names():
    """GLOBAL_COUNTERS of xdp_lb_maps.py, read as text (it imports ansible_collections)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'plugins', 'module_utils', 'xdp_lb_maps.py')
    with open(path) as f:
        text = f.read()
    body = re.search(r'GLOBAL_COUNTERS = \((.*?)\)', text, re.S).group(1)
    return re.findall(r"'(\w+)'", body)


def little_endian(value):
    """bpftool -j gives a number (with BTF) or a list of hex bytes (without)."""
    if isinstance(value, list):
        return int(''.join(reversed([str(b).replace('0x', '').zfill(2) for b in value])) or '0', 16)
    return int(value)


def lb_global(lb_name):
    path = os.path.join(PIN_ROOT, lb_name, 'map_lb_global')
    if not os.path.exists(path):
        return {}
    try:
        rows = json.loads(run(['bpftool', '-j', 'map', 'dump', 'pinned', path]) or '[]')
    except ValueError:
        return {}
    names = global_counter_names()
    counters = {}
    for row in rows:
        index = little_endian(row.get('key'))
        total = sum(little_endian(v.get('value', 0)) for v in row.get('values', []))
        name = names[index] if names and index < len(names) else 'counter_%d' % index
        counters[name] = total
    return counters


def cpu():
    with open('/proc/stat') as f:
        fields = f.readline().split()[1:]
    names = ('user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal')
    return dict(zip(names, (int(x) for x in fields)))


def process_ticks():
    """pid -> (command, utime + stime) for every process: who else used the CPU during a slice."""
    ticks = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                stat = f.read()
        except (IOError, OSError):
            continue
        comm = stat[stat.find('(') + 1:stat.rfind(')')]
        fields = stat[stat.rfind(')') + 2:].split()
        ticks[int(pid)] = (comm, int(fields[11]) + int(fields[12]))
    return ticks


def top_processes(before, after, count=6):
    used = {}
    for pid, (comm, total) in after.items():
        spent = total - before.get(pid, (comm, 0))[1]
        if spent > 0:
            used[comm] = used.get(comm, 0) + spent
    return sorted(used.items(), key=lambda item: -item[1])[:count]


def snapshot(roles, lb_name):
    snap = {'time': time.time(), 'cpu': cpu(), 'lb': lb_global(lb_name), 'procs': process_ticks()}
    for role in ('client', 'backend'):
        for c in roles.get(role, []):
            snap[c['name']] = {'tw': time_waits(c['pid']), 'snmp': snmp(c['pid'])}
    return snap


def delta(before, after):
    return dict((k, after[k] - before.get(k, 0)) for k in after if after[k] - before.get(k, 0))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--slices', type=int, default=6)
    parser.add_argument('--seconds', type=int, default=10)
    parser.add_argument('--lb-name', default='xdp_lb')
    parser.add_argument('--table', action='store_true')
    args = parser.parse_args()
    roles = lab_containers()
    client = roles['client'][0]
    lb_ip = roles['lb'][0]['ip']
    backends = [c['name'] for c in roles.get('backend', [])]
    slices = []
    before = snapshot(roles, args.lb_name)
    for dummy in range(args.slices):
        out = run(['docker', 'exec', client['name'], 'wrk', '--latency', '-t2', '-c20', '-d%ds' % args.seconds, '-H',
                   'Connection: close', 'http://%s/' % lb_ip])
        after = snapshot(roles, args.lb_name)
        requests = 0
        for line in out.splitlines():
            if 'requests in' in line:
                requests = int(line.split()[0])
        entry = {'requests': requests, 'rate': requests / float(args.seconds),
                 'errors': [line.strip() for line in out.splitlines() if 'errors' in line or 'Non-2xx' in line],
                 # request latency after connect (wrk does not time the handshake): avg, stdev, max, percentiles
                 'latency': [' '.join(line.split()) for line in out.splitlines()
                             if line.strip().startswith('Latency') or line.strip()[:3] in ('50%', '75%', '90%', '99%')],
                 'seconds': after['time'] - before['time'], 'lb': delta(before['lb'], after['lb'])}
        ticks = delta(before['cpu'], after['cpu'])
        total = float(sum(ticks.values())) or 1.0
        entry['cpu_percent'] = dict((k, round(100 * v / total, 1)) for k, v in ticks.items())
        entry['top_processes_ticks'] = top_processes(before['procs'], after['procs'])
        for name in [client['name']] + backends:
            entry[name] = {'tw_end': after[name]['tw'], 'snmp': delta(before[name]['snmp'], after[name]['snmp'])}
        slices.append(entry)
        before = after
    result = {'client': client['name'], 'backends': backends, 'slices': slices}
    print(json.dumps(result))
    if args.table:
        table(result)


def latency_max(entry):
    return ''.join(x.split()[3] for x in entry['latency'] if x.startswith('Latency') and len(x.split()) > 3)


def table(result):
    """The slices side by side, on stderr: one row per measure."""
    client, backends = result['client'], result['backends']
    rows = [('rate/s', ['%.0f' % s['rate'] for s in result['slices']]),
            ('cpu idle %', [s['cpu_percent'].get('idle', 0) for s in result['slices']]),
            ('cpu steal %', [s['cpu_percent'].get('steal', 0) for s in result['slices']]),
            ('cpu softirq %', [s['cpu_percent'].get('softirq', 0) for s in result['slices']]),
            ('client TW', [s[client]['tw_end'] for s in result['slices']]),
            ('request latency max', [latency_max(s) for s in result['slices']]),
            ('busiest processes (ticks)', [','.join('%s:%d' % (c[:8], t) for c, t in s['top_processes_ticks'][:2])
                                           for s in result['slices']])]
    rows += [('client ' + k, [s[client]['snmp'].get(k, 0) for s in result['slices']]) for k in CLIENT_KEYS]
    for b in backends:
        rows.append(('%s TW' % b, [s[b]['tw_end'] for s in result['slices']]))
        rows += [('%s %s' % (b, k), [s[b]['snmp'].get(k, 0) for s in result['slices']]) for k in BACKEND_KEYS]
    rows += [('lb ' + k, [s['lb'].get(k, 0) for s in result['slices']]) for k in LB_KEYS]
    for label, values in rows:
        sys.stderr.write('%-40s %s\n' % (label, ' '.join('%9s' % v for v in values)))


if __name__ == '__main__':
    main()
