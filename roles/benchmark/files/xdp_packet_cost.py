# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-packet cost of the XDP load balancer's program, in ns, through BPF_PROG_TEST_RUN.

    /usr/bin/python3 roles/benchmark/files/xdp_packet_cost.py [--runs 1000] [--rounds 5] [--json OUT]
        [--compare-with DIR]   (another collection, e.g. main, measured in alternating rounds)

Paths: a TCP SYN of a new flow (every run a new 5-tuple), an established client packet, a backend's
reply, and a packet to an address that is not a VIP. Every run is one packet (repeat=1) on a fresh
copy of the frame: `repeat N` would rerun the program on its own rewritten output, another path.
The kernel's duration of each run is taken, the median over rounds x runs reported, minus the median
of an empty XDP program (return XDP_PASS) measured the same way. Rounds interleave the paths so a
busy neighbour on the machine hits all of them alike.

The program is compiled and filled by the collection's own code (module_utils/xdp_testbed.py:
compile_and_load with xdp_proxy's flags, LbMaps.apply) in a private namespace `xh-cost-PID`. Needs root
and bcc. --collection points at the collection (default: the one this file is in).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Katran's balancer measured the same way on this machine (issue 10), and the datapath before issue 10
# (main at 7fd4046) measured with this script; --baseline FILE (a --json output) replaces the latter.
KATRAN_NS = {'new_flow': 384, 'established': 150, 'reply': 150, 'non_vip': 61}
# median of 4 runs interleaved with 4 of issue-10's datapath, 17:15 UTC, on a busy machine
BASELINE_NS = {'new_flow': 1638, 'established': 134, 'reply': 120, 'non_vip': 110}
BASELINE_FROM = 'main 7fd4046, docs/performance.md "Per-packet cost"'
BUDGET_RATIO = 1.5
BUDGET_BYTES_PER_CONNECTION = 128
PATHS = ('new_flow', 'established', 'reply', 'non_vip')


def import_collection(path):
    """Make `ansible_collections.ebpf.networking` importable from a checkout or an installed copy."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    if parts[-3:] == ['ansible_collections', 'ebpf', 'networking']:
        sys.path.insert(0, os.sep.join(parts[:-3]) or os.sep)
    else:
        root = tempfile.mkdtemp(prefix='xhb_')
        os.makedirs(os.path.join(root, 'ansible_collections', 'ebpf'))
        os.symlink(path, os.path.join(root, 'ansible_collections', 'ebpf', 'networking'))
        sys.path.insert(0, root)


def ipv4_checksum(header):
    total = sum(struct.unpack('!%dH' % (len(header) // 2), header))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def tcp_frame(tb, src, dst, sport, dport, flags, smac=None, dmac=None):
    """Ethernet + IPv4 + TCP (no payload), checksums right: what a NIC hands to XDP."""
    def addr(ip):
        return bytes(bytearray(int(o) for o in ip.split('.')))
    smac = tb.mac_of(src) if smac is None else smac
    dmac = tb.mac_of(dst) if dmac is None else dmac
    eth = bytes(bytearray(int(x, 16) for x in (dmac + ':' + smac).split(':'))) + b'\x08\x00'
    tcp = struct.pack('!HHIIBBHHH', sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = addr(src) + addr(dst) + struct.pack('!BBH', 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', ipv4_checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, addr(src), addr(dst))
    ip = ip[:10] + struct.pack('!H', ipv4_checksum(ip)) + ip[12:]
    return eth + ip + tcp


SYN, ACK = 0x02, 0x10


class Bench(object):
    def __init__(self, tb, maps_mod, deploy_mod, syscall):
        self.tb = tb
        self.syscall = syscall
        self.deploy = deploy_mod
        self.vip = tb.LAN + str(tb.LB_HOST)
        self.bed = tb.XdpTestBed('xh-cost', os.path.join(COLLECTION, 'bpf'), maps_mod.Limits())
        self.flow_serial = 0

    def setup(self):
        self.bed.up()
        self.bed.load()
        self.bed.apply([{'vip': self.vip, 'port': 80,
                         'backends': [self.tb.LAN + str(self.tb.BACKEND_HOSTS[0]),
                                      self.tb.LAN + str(self.tb.BACKEND_HOSTS[1])]}])
        self.empty_fd = self.syscall.prog_load_return(6, 2)  # BPF_PROG_TYPE_XDP, return XDP_PASS
        client = self.tb.LAN + str(self.tb.CLIENT_HOSTS[0])
        verdict, out = self.bed.run(tcp_frame(self.tb, client, self.vip, 1025, 80, SYN))
        if verdict not in ('TX', 'REDIRECT'):
            raise SystemExit('the program did not forward a SYN to the VIP (verdict %s): nothing to measure' % verdict)
        # the rewritten SYN tells the backend and the SNAT port: its reply goes to exactly there
        snat = '.'.join(str(b) for b in bytearray(out[26:30]))
        backend = '.'.join(str(b) for b in bytearray(out[30:34]))
        lport, bport = struct.unpack('!HH', out[34:38])
        self.frames = {
            'established': tcp_frame(self.tb, client, self.vip, 1025, 80, ACK),
            'reply': tcp_frame(self.tb, backend, snat, bport, lport, ACK),
            'non_vip': tcp_frame(self.tb, client, self.tb.LAN + '99', 1025, 22, ACK,
                                 dmac=self.tb.mac_of(self.vip)),
        }

    def new_flow_frames(self, count):
        """count SYNs, each a 5-tuple never seen before (client address x source port)."""
        frames = []
        clients = list(self.tb.CLIENT_HOSTS)
        for _flow in range(count):
            self.flow_serial += 1
            client = self.tb.LAN + str(clients[self.flow_serial % len(clients)])
            sport = 2000 + self.flow_serial // len(clients)
            frames.append(tcp_frame(self.tb, client, self.vip, sport, 80, SYN))
        return frames

    def forget_new_flows(self):
        """Empty the flow state between rounds so new flows never meet a full table or port range; the
        first flow is made again, as established and reply frames need it."""
        self.bed.reset_flows()
        client = self.tb.LAN + str(self.tb.CLIENT_HOSTS[0])
        self.bed.run(tcp_frame(self.tb, client, self.vip, 1025, 80, SYN))

    def measure(self, runs, rounds):
        samples = dict((p, []) for p in PATHS + ('empty',))
        for _round in range(rounds):
            samples['new_flow'] += self.bed.durations(self.new_flow_frames(runs))
            self.forget_new_flows()
            for path in ('established', 'reply', 'non_vip'):
                samples[path] += self.bed.durations([self.frames[path]] * runs)
            samples['empty'] += self.bed.durations([self.frames['established']] * runs, prog_fd=self.empty_fd)
        return samples

    def bytes_per_connection(self):
        """Map memory one connection holds, counted on an empty table with one connection: its entries
        in the flow hash maps (key + value + kernel overhead each) and, where ports have a slot array,
        that array's size divided by the flow table's capacity (it is allocated whole)."""
        self.forget_new_flows()
        total = 0
        detail = {}
        for name in self.tb.FLOW_MAPS:
            fd = self.bed.maps.fds.get(name)
            if fd is None:
                continue
            info = self.syscall.map_info(fd)
            if info['type'] == 'array':
                # preallocated whatever the traffic: its whole size shared by the flow table's capacity,
                # as xdp_stats counts per_connection_bytes
                capacity = self.syscall.map_info(self.bed.maps.fds['lb_conntrack'])['max_entries']
                entries, per_entry = 1, info['max_entries'] * ((info['value_size'] + 7) // 8 * 8) // capacity
            else:
                entries = len(self.syscall.map_keys(fd, info['key_size']))
                per_entry = self.deploy.map_memory_estimate(info, self.bed.maps.ncpus) // info['max_entries']
            detail[name] = {'entries': entries, 'key_size': info['key_size'], 'value_size': info['value_size'],
                            'bytes_per_entry': per_entry}
            total += entries * per_entry
        return total, detail

    def teardown(self):
        self.bed.down()


COLLECTION = None


def report(result, baseline):
    lines = ['XDP per-packet cost, ns per packet (median of %d runs each, minus an empty XDP program at %.0f ns)'
             % (result['runs_per_path'], result['empty_ns']),
             '%-12s %8s %10s %8s %10s %8s' % ('path', 'ns', 'Katran', 'below', 'baseline', '<=1.5x')]
    for path in PATHS:
        ns = result['ns'][path]
        base = baseline.get(path)
        ratio_ok = '-' if base is None else ('yes' if ns <= BUDGET_RATIO * max(base, 1) else 'NO')
        lines.append('%-12s %8.0f %10d %8s %10s %8s' % (path, ns, KATRAN_NS[path],
                                                        'yes' if ns < KATRAN_NS[path] else 'NO',
                                                        '-' if base is None else '%.0f' % base, ratio_ok))
    lines.append('map memory per connection: %d bytes (budget %d): %s; %s' % (
        result['bytes_per_connection'], BUDGET_BYTES_PER_CONNECTION,
        'yes' if result['bytes_per_connection'] <= BUDGET_BYTES_PER_CONNECTION else 'NO',
        ', '.join('%s %d x %d B' % (name, m['entries'], m['bytes_per_entry'])
                  for name, m in sorted(result['flow_maps'].items()))))
    lines.append('(reply is held to the established budget; baseline from %s; timings are noisy on a shared '
                 'machine: compare medians of several runs)' % baseline.get('from', BASELINE_FROM))
    return '\n'.join(lines)


def summarize(samples, per_conn, detail, runs):
    empty = statistics.median(samples['empty'])
    return {'runs_per_path': runs, 'empty_ns': empty,
            'raw_median_ns': dict((p, statistics.median(samples[p])) for p in samples),
            'ns': dict((p, max(0.0, statistics.median(samples[p]) - empty)) for p in PATHS),
            'bytes_per_connection': per_conn, 'flow_maps': detail,
            'katran_ns': KATRAN_NS, 'budget_ratio': BUDGET_RATIO}


def serve(bench, runs):
    """--serve: measure one round per 'round' line on stdin, answer with the samples as one JSON line."""
    print('ready')
    sys.stdout.flush()
    for line in sys.stdin:
        command = line.strip()
        if command == 'round':
            print(json.dumps(bench.measure(runs, 1)))
        elif command == 'memory':
            print(json.dumps(bench.bytes_per_connection()))
        else:
            break
        sys.stdout.flush()


class Peer(object):
    """This script serving another collection (--compare-with), measured round by round with ours."""

    def __init__(self, collection, runs):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--collection', collection, '--serve',
                                      '--runs', str(runs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True)
        if self.proc.stdout.readline().strip() != 'ready':
            raise SystemExit('the baseline collection %s could not be set up (see above)' % collection)

    def ask(self, command):
        self.proc.stdin.write(command + '\n')
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.flush()
            self.proc.wait()


def main():
    global COLLECTION
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--collection', default=os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
    parser.add_argument('--runs', type=int, default=1000, help='runs per path per round')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--json', help='write the numbers here')
    parser.add_argument('--baseline', help='a --json output to compare with instead of the recorded baseline')
    parser.add_argument('--compare-with', metavar='DIR',
                        help='measure the collection in DIR too (e.g. main with this branch\'s xdp_testbed.py and '
                             'bpf_syscall.py copied in), alternating rounds with this one, and compare with it')
    parser.add_argument('--serve', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    COLLECTION = os.path.abspath(args.collection)
    import_collection(COLLECTION)
    # pylint: disable=import-outside-toplevel
    from ansible_collections.ebpf.networking.plugins.module_utils import bpf_syscall, xdp_deploy, xdp_lb_maps
    from ansible_collections.ebpf.networking.plugins.module_utils import xdp_testbed

    bench = Bench(xdp_testbed, xdp_lb_maps, xdp_deploy, bpf_syscall)
    peer = None
    try:
        bench.setup()
        if args.serve:
            serve(bench, args.runs)
            return
        if args.compare_with:
            peer = Peer(args.compare_with, args.runs)
        samples = dict((p, []) for p in PATHS + ('empty',))
        peer_samples = dict((p, []) for p in PATHS + ('empty',))
        for _round in range(args.rounds):
            for path, values in bench.measure(args.runs, 1).items():
                samples[path] += values
            if peer:
                for path, values in peer.ask('round').items():
                    peer_samples[path] += values
        per_conn, detail = bench.bytes_per_connection()
        peer_memory = peer.ask('memory') if peer else None
    finally:
        if peer:
            peer.close()
        bench.teardown()
    result = summarize(samples, per_conn, detail, args.runs * args.rounds)
    baseline = dict(BASELINE_NS, **{'from': BASELINE_FROM})
    if args.baseline:
        with open(args.baseline) as f:
            baseline = dict(json.load(f)['ns'], **{'from': args.baseline})
    if peer_memory:
        compared = summarize(peer_samples, peer_memory[0], peer_memory[1], args.runs * args.rounds)
        result['compared_with'] = dict(compared, collection=args.compare_with)
        baseline = dict(compared['ns'], **{'from': '%s, measured in alternating rounds' % args.compare_with})
    result['baseline_ns'] = baseline
    result['verdicts'] = dict(
        (p, {'below_katran': result['ns'][p] < KATRAN_NS[p],
             'within_ratio': None if baseline.get(p) is None else result['ns'][p] <= BUDGET_RATIO * max(baseline[p], 1)})
        for p in PATHS)
    result['verdicts']['bytes_per_connection'] = per_conn <= BUDGET_BYTES_PER_CONNECTION
    print(report(result, baseline))
    if peer_memory:
        print('%s: empty program %.0f ns, map memory per connection %d bytes' % (
            args.compare_with, result['compared_with']['empty_ns'], result['compared_with']['bytes_per_connection']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main()
