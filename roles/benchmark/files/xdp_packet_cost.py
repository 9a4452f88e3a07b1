# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-packet cost of the XDP load balancer's program, in ns, through BPF_PROG_TEST_RUN.

    /usr/bin/python3 roles/benchmark/files/xdp_packet_cost.py [--runs 1000] [--rounds 5] [--json OUT]
        [--compare-with DIR]   (another collection, e.g. main, measured in alternating rounds)
        [--katran DIR]         (a Katran checkout: its balancer is built, loaded and measured in the
                                same rounds; without it the Katran column is the issue's recorded figure)

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
import atexit
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Katran's balancer measured the same way on this machine when issue 10 was written (--katran measures it
# in the same run instead), and the datapath before issue 10 (main at 7fd4046) measured with this
# script; --baseline FILE (a --json output) replaces the latter.
KATRAN_NS = {'new_flow': 384, 'established': 150, 'reply': 150, 'non_vip': 61}
KATRAN_FROM = 'recorded in issue 10'
KATRAN_PATHS = ('new_flow', 'established', 'non_vip')  # Katran never sees replies (direct return)
# median of 4 runs interleaved with 4 of issue-10's datapath, 17:15 UTC, on a busy machine
BASELINE_NS = {'new_flow': 1638, 'established': 134, 'reply': 120, 'non_vip': 110}
BASELINE_FROM = 'main 7fd4046, docs/performance.md "Per-packet cost"'
BUDGET_RATIO = 1.5
# BPF_PROG_TEST_RUN's durations move in steps of about 10 ns here: a 20 ns path measured at 40 ns is one
# step away from 30, not twice as slow, so the ratio budget allows one step on top
CLOCK_STEP_NS = 10
BUDGET_BYTES_PER_CONNECTION = 128
PATHS = ('new_flow', 'established', 'reply', 'non_vip')
# the same two paths through a forwarding: ipip service, which does what Katran does (encapsulate, no
# SNAT port, replies bypass the LB): the like-for-like comparison with Katran
IPIP_PATHS = ('new_flow_ipip', 'established_ipip')
IPIP_PORT = 9100


def import_collection(path):
    """Make `ansible_collections.ebpf.networking` importable from a checkout or an installed copy."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    if parts[-3:] == ['ansible_collections', 'ebpf', 'networking']:
        sys.path.insert(0, os.sep.join(parts[:-3]) or os.sep)
    else:
        root = tempfile.mkdtemp(prefix='xhb_')
        atexit.register(shutil.rmtree, root, True)
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
    smac = tb.mac_of(src) if smac is None else smac
    dmac = tb.mac_of(dst) if dmac is None else dmac
    eth = bytes(bytearray(int(x, 16) for x in (dmac + ':' + smac).split(':'))) + b'\x08\x00'
    tcp = struct.pack('!HHIIBBHHH', sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', ipv4_checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    ip = ip[:10] + struct.pack('!H', ipv4_checksum(ip)) + ip[12:]
    return eth + ip + tcp


SYN, ACK = 0x02, 0x10


class Bench(object):
    def __init__(self, tb, maps_mod, deploy_mod, syscall):
        self.tb = tb
        self.syscall = syscall
        self.deploy = deploy_mod
        self.vip = tb.LAN + str(tb.LB_HOST)
        self.limits = maps_mod.Limits()
        self.bed = tb.XdpTestBed('xh-cost', os.path.join(COLLECTION, 'bpf'), self.limits)
        self.flow_serial = 0
        self.katran = None
        # forwarding ipip arrived with issue 13: a baseline collection before it has no such service
        self.ipip = 'ipip' in getattr(maps_mod, 'FORWARDING', {})

    def setup(self, katran_source=None):
        self.bed.up()
        self.bed.load()
        backends = [self.tb.LAN + str(self.tb.BACKEND_HOSTS[0]), self.tb.LAN + str(self.tb.BACKEND_HOSTS[1])]
        services = [{'vip': self.vip, 'port': 80, 'backends': backends}]
        if self.ipip:
            services.append({'vip': self.vip, 'port': IPIP_PORT, 'forwarding': 'ipip', 'tunnel_source': self.vip,
                             'backends': backends})
        self.bed.apply(services)
        if katran_source:
            self.katran = KatranPeer(katran_source, self.syscall, self.limits.max_flows)
            self.katran.configure(self.vip, 80, backends, self.tb.mac_of(backends[0]))
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
        if self.ipip:
            self.frames['established_ipip'] = tcp_frame(self.tb, client, self.vip, 1025, IPIP_PORT, ACK)
            verdict, out = self.bed.run(tcp_frame(self.tb, client, self.vip, 1025, IPIP_PORT, SYN))
            if verdict not in ('TX', 'REDIRECT') or out[23:24] != b'\x04':
                raise SystemExit('the program did not encapsulate a SYN to the ipip service (verdict %s)' % verdict)
        if self.katran:
            self.check_katran(client)

    def check_katran(self, client):
        """Katran must do the work it is measured for: encapsulate and send back a SYN and an established
        packet to a backend, pass a packet that is not for its VIP."""
        backends = set(socket.inet_aton(self.tb.LAN + str(h)) for h in self.tb.BACKEND_HOSTS[:2])
        for name, frame, want in (('SYN', tcp_frame(self.tb, client, self.vip, 1025, 80, SYN), 'TX'),
                                  ('established packet', self.frames['established'], 'TX'),
                                  ('non-VIP packet', self.frames['non_vip'], 'PASS')):
            verdict, out = self.bed.run(frame, prog_fd=self.katran.prog_fd)
            # IPIP: outer IPv4 header (protocol 4) to a backend, then the client's packet unchanged
            sent = want == 'PASS' or (out[23:24] == b'\x04' and out[30:34] in backends and out[34:] == frame[14:])
            if verdict != want or not sent:
                raise SystemExit('Katran did not handle a %s as it should (verdict %s, wanted %s): nothing to compare '
                                 'with' % (name, verdict, want))

    def new_flow_frames(self, count, port=80):
        """count SYNs, each a 5-tuple never seen before (client address x source port)."""
        frames = []
        clients = list(self.tb.CLIENT_HOSTS)
        for _flow in range(count):
            self.flow_serial += 1
            client = self.tb.LAN + str(clients[self.flow_serial % len(clients)])
            sport = 2000 + self.flow_serial // len(clients)
            frames.append(tcp_frame(self.tb, client, self.vip, sport, port, SYN))
        return frames

    def forget_new_flows(self, ipip=True):
        """Empty the flow state between rounds so new flows never meet a full table or port range; the
        first flow is made again (and its twin through the ipip service unless ipip is False), as
        established and reply frames need it."""
        self.bed.reset_flows()
        client = self.tb.LAN + str(self.tb.CLIENT_HOSTS[0])
        syn = tcp_frame(self.tb, client, self.vip, 1025, 80, SYN)
        self.bed.run(syn)
        if self.ipip and ipip:
            self.bed.run(tcp_frame(self.tb, client, self.vip, 1025, IPIP_PORT, SYN))
        if self.katran:
            self.katran.forget_flows()
            self.bed.durations([syn], prog_fd=self.katran.prog_fd)

    def measure(self, runs, rounds):
        samples = dict((p, []) for p in PATHS + ('empty',) + tuple('katran_' + k for k in KATRAN_PATHS))
        for _round in range(rounds):
            syns = self.new_flow_frames(runs)
            samples['new_flow'] += self.bed.durations(syns)
            if self.katran:  # the same SYNs, each new to Katran too
                samples['katran_new_flow'] += self.bed.durations(syns, prog_fd=self.katran.prog_fd)
            if self.ipip:
                ipip_syns = self.new_flow_frames(runs, IPIP_PORT)
                samples.setdefault('new_flow_ipip', []).extend(self.bed.durations(ipip_syns))
            self.forget_new_flows()
            if self.ipip:
                samples.setdefault('established_ipip', []).extend(
                    self.bed.durations([self.frames['established_ipip']] * runs))
            for path in ('established', 'reply', 'non_vip'):
                samples[path] += self.bed.durations([self.frames[path]] * runs)
                if self.katran and path in KATRAN_PATHS:
                    samples['katran_' + path] += self.bed.durations([self.frames[path]] * runs,
                                                                    prog_fd=self.katran.prog_fd)
            samples['empty'] += self.bed.durations([self.frames['established']] * runs, prog_fd=self.empty_fd)
        return samples

    def bytes_per_connection(self):
        """Map memory one connection holds, counted on an empty table with one connection: its entries
        in the flow hash maps (key + value + kernel overhead each) and, where ports have a slot array,
        that array's size divided by the flow table's capacity (it is allocated whole)."""
        self.forget_new_flows(ipip=False)
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
        if self.katran:
            self.katran.close()
        self.bed.down()


class KatranPeer(object):
    """Katran's balancer (lib/bpf/balancer.bpf.c of a Katran checkout), set up as Katran's own user space
    sets it up, so both load balancers are measured on the same frames in the same rounds.

    Built with clang, loaded with bpftool (maps pinned in a private bpffs directory, removed at the
    end). Like KatranLb: one LRU flow table per CPU (lru_mapping), together as large as our flow
    table; one IPv4 VIP (our VIP:80/TCP) with our two backends as reals on its consistent-hash ring;
    the default router's MAC in ctl_array. Katran encapsulates in IPIP and never sees replies.
    The measuring process stays on one CPU, as a flow does with RSS: Katran's flow table is per CPU.
    """

    RING_SIZE = 65537   # Katran's default consistent-hash ring
    FLOW_KEY_SIZE = 40  # struct flow_key
    LRU_VALUE_SIZE = 16  # struct real_pos_lru
    PIN_BASE = '/sys/fs/bpf/ebn-bench-katran'

    def __init__(self, source, syscall, max_flows):
        program = os.path.join(source, 'katran', 'lib', 'bpf', 'balancer.bpf.c')
        if not os.path.isfile(program):
            raise SystemExit('--katran %s: no katran/lib/bpf/balancer.bpf.c there (give the top of a Katran '
                             'checkout, e.g. git clone https://github.com/facebookincubator/katran)' % source)
        for tool in ('clang', 'bpftool'):
            if shutil.which(tool) is None:
                raise SystemExit('--katran needs %s on PATH (Debian: apt-get install clang bpftool)' % tool)
        self.syscall = syscall
        self.max_flows = max_flows
        for stale in glob.glob(self.PIN_BASE + '-*'):  # left by a run that was killed: its maps hold memory
            if not os.path.exists('/proc/' + stale.rsplit('-', 1)[1]):
                shutil.rmtree(stale, ignore_errors=True)
        self.pins = '%s-%d' % (self.PIN_BASE, os.getpid())
        self.fds = []
        self.lru_fds = []
        self.work = tempfile.mkdtemp(prefix='xhb_katran_')
        try:
            self._load(source, program)
        except BaseException:
            self.close()  # nothing left pinned or built
            raise

    def _load(self, source, program):
        # BPF targets have no 32-bit glibc stubs; Katran's includes pull in <string.h>
        os.makedirs(os.path.join(self.work, 'gnu'))
        open(os.path.join(self.work, 'gnu', 'stubs-32.h'), 'w').close()
        obj = os.path.join(self.work, 'balancer.o')
        self._run(['clang', '-O2', '-g', '-target', 'bpf', '-I', source, '-I', self.work,
                   '-I', '/usr/include/%s-linux-gnu' % os.uname()[4], '-Wno-compare-distinct-pointer-types',
                   '-c', program, '-o', obj], 'build Katran\'s balancer')
        os.makedirs(self.pins)
        self._run(['bpftool', 'prog', 'loadall', obj, self.pins + '/prog', 'type', 'xdp',
                   'pinmaps', self.pins + '/maps'], 'load Katran\'s balancer')
        self.prog_fd = self._get('prog/balancer_ingress')

    @staticmethod
    def _run(argv, what):
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False)
        if proc.returncode != 0:
            raise SystemExit('could not %s (%s):\n%s' % (what, ' '.join(argv), proc.stdout[-3000:]))

    def _get(self, name):
        fd = self.syscall.obj_get(os.path.join(self.pins, name))
        self.fds.append(fd)
        return fd

    def configure(self, vip, port, backends, router_mac):
        cpus = self.syscall.possible_cpus()
        lru_mapping = self._get('maps/lru_mapping')
        for cpu in range(cpus):
            fd = self.syscall.map_create(9, self.FLOW_KEY_SIZE, self.LRU_VALUE_SIZE,  # BPF_MAP_TYPE_LRU_HASH
                                         max(64, self.max_flows // cpus), name='katran_lru%d' % cpu)
            self.lru_fds.append(fd)
            self.syscall.map_update(lru_mapping, struct.pack('=I', cpu), struct.pack('=I', fd))
        # struct vip_definition {vip or vipv6[4]; __u16 port (network order); __u8 proto} -> vip_meta
        vip_key = socket.inet_aton(vip) + b'\0' * 12 + struct.pack('!H', port) + b'\x06\0'
        self.syscall.map_update(self._get('maps/vip_map'), vip_key, struct.pack('=II', 0, 0))
        reals = self._get('maps/reals')
        for index, backend in enumerate(backends, 1):  # struct real_definition {dst or dstv6[4]; __u8 flags}
            self.syscall.map_update(reals, struct.pack('=I', index), socket.inet_aton(backend) + b'\0' * 16)
        ch_rings = self._get('maps/ch_rings')
        for position in range(self.RING_SIZE):  # vip_num 0's ring: the reals in turn
            self.syscall.map_update(ch_rings, struct.pack('=I', position),
                                    struct.pack('=I', 1 + position % len(backends)))
        mac = bytes(bytearray(int(x, 16) for x in router_mac.split(':')))
        self.syscall.map_update(self._get('maps/ctl_array'), struct.pack('=I', 0), mac + b'\0\0')

    def forget_flows(self):
        for fd in self.lru_fds:
            self.syscall.map_clear(fd, self.FLOW_KEY_SIZE)

    def close(self):
        for fd in self.fds + self.lru_fds:
            os.close(fd)
        self.fds, self.lru_fds = [], []
        shutil.rmtree(self.pins, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


COLLECTION = None


def within_budget(ns, base):
    """Within BUDGET_RATIO of the baseline, give or take one clock step; None without a baseline."""
    return None if base is None else ns <= BUDGET_RATIO * max(base, 1) + CLOCK_STEP_NS


def report(result, baseline):
    katran = result['katran_ns']
    lines = ['XDP per-packet cost, ns per packet (median of %d runs each, minus an empty XDP program at %.0f ns; '
             'Katran: %s)' % (result['runs_per_path'], result['empty_ns'], result['katran_from']),
             '%-12s %8s %10s %8s %10s %8s' % ('path', 'ns', 'Katran', 'below', 'baseline', '<=1.5x')]
    for path in PATHS:
        ns = result['ns'][path]
        base = baseline.get(path)
        ratio_ok = {None: '-', True: 'yes', False: 'NO'}[within_budget(ns, base)]
        lines.append('%-12s %8.0f %10.0f %8s %10s %8s' % (path, ns, katran[path], 'yes' if ns < katran[path] else 'NO',
                                                          '-' if base is None else '%.0f' % base, ratio_ok))
    if result.get('ipip_ns'):
        lines.append('like for like with Katran, forwarding ipip (encapsulation, no SNAT port, replies bypass the LB): '
                     + '; '.join('%s %.0f ns, Katran %.0f' % (path[:-len('_ipip')].replace('_', ' '), ns,
                                                              katran[path[:-len('_ipip')]])
                                 for path, ns in sorted(result['ipip_ns'].items(), reverse=True)))
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
    katran, katran_from = dict(KATRAN_NS), KATRAN_FROM
    if samples.get('katran_new_flow'):
        katran = dict((p, max(0.0, statistics.median(samples['katran_' + p]) - empty)) for p in KATRAN_PATHS)
        katran['reply'] = katran['established']  # the reply is held to the established budget
        katran_from = 'measured in the same rounds'
    return {'runs_per_path': runs, 'empty_ns': empty,
            'raw_median_ns': dict((p, statistics.median(samples[p])) for p in samples if samples[p]),
            'ns': dict((p, max(0.0, statistics.median(samples[p]) - empty)) for p in PATHS),
            'ipip_ns': dict((p, max(0.0, statistics.median(samples[p]) - empty)) for p in IPIP_PATHS if samples.get(p)),
            'bytes_per_connection': per_conn, 'flow_maps': detail,
            'katran_ns': katran, 'katran_from': katran_from, 'budget_ratio': BUDGET_RATIO}


def verdicts(result, baseline):
    """Per path: below Katran's (measured in the same rounds when it was), within BUDGET_RATIO of the
    baseline; and the map memory budget."""
    out = dict((p, {'below_katran': result['ns'][p] < result['katran_ns'][p],
                    'within_ratio': within_budget(result['ns'][p], baseline.get(p))})
               for p in PATHS)
    out['bytes_per_connection'] = result['bytes_per_connection'] <= BUDGET_BYTES_PER_CONNECTION
    return out


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
    parser.add_argument('--katran', metavar='DIR',
                        help='a Katran checkout: build its balancer and measure it in the same rounds (needs clang '
                             'and bpftool); without it the Katran column is the figure recorded in issue 10')
    parser.add_argument('--serve', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    # an Ansible timeout (SIGTERM) still runs the clean-up in the finally blocks
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit('stopped by SIGTERM'))
    if args.katran:
        # one CPU for the whole measurement (the --serve peer inherits it): Katran's flow table is per CPU,
        # as a flow stays on one CPU with RSS; the last CPU, usually the one with the fewest interrupts
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print('measuring on CPU %d' % cpu)
    COLLECTION = os.path.abspath(args.collection)
    import_collection(COLLECTION)
    # pylint: disable=import-outside-toplevel
    from ansible_collections.ebpf.networking.plugins.module_utils import bpf_syscall, xdp_deploy, xdp_lb_maps
    from ansible_collections.ebpf.networking.plugins.module_utils import xdp_testbed

    bench = Bench(xdp_testbed, xdp_lb_maps, xdp_deploy, bpf_syscall)
    peer = None
    try:
        bench.setup(None if args.serve else args.katran)
        if args.serve:
            serve(bench, args.runs)
            return
        if args.compare_with:
            peer = Peer(args.compare_with, args.runs)
        samples, peer_samples = {}, {}
        for _round in range(args.rounds):
            for path, values in bench.measure(args.runs, 1).items():
                samples.setdefault(path, []).extend(values)
            if peer:
                for path, values in peer.ask('round').items():
                    peer_samples.setdefault(path, []).extend(values)
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
    result['verdicts'] = verdicts(result, baseline)
    print(report(result, baseline))
    if peer_memory:
        print('%s: empty program %.0f ns, map memory per connection %d bytes' % (
            args.compare_with, result['compared_with']['empty_ns'], result['compared_with']['bytes_per_connection']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main()
