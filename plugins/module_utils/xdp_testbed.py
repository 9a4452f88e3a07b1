# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The XDP load balancer's program on a bench: crafted frames in, rewritten frames and verdicts out.

A private network namespace holds two veth pairs with static neighbours, so bpf_fib_lookup finds
routes and MACs without any traffic. The program is compiled and loaded by
bpf_loader.compile_and_load with the same -D flags as xdp_proxy (Limits.cflags), and services are
written by LbMaps.apply, so what runs here is what the module ships. Frames go through
BPF_PROG_TEST_RUN (bpf_syscall.prog_test_run) with ingress_ifindex set to a device of that
namespace; the test run happens inside it, as the kernel resolves the ifindex and the FIB there.

Used by the packet-level tests (tests/integration/xdp_datapath/) and by the per-packet cost
benchmark (roles/benchmark/files/xdp_packet_cost.py).

    lan0  10.204.0.10/24  the LB's own address (VIP and SNAT address); clients .100-.163 and
                          backends .20-.35 are neighbours here: their packets come back with XDP_TX
    srv0  10.204.1.10/24  backends .20-.35 here sit behind another device: XDP_REDIRECT
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import struct
import subprocess

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall
from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_maps
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import LbMaps, MAP_NAMES, normalize_services

# maps holding per-connection state (the datapath before issue 10 had only lb_conntrack; the cost
# benchmark still measures that version for its baseline)
FLOW_MAPS = getattr(xdp_lb_maps, 'FLOW_MAPS', ('lb_conntrack',))
CACHE_MAPS = ('lb_nexthops',)  # state the program keeps for itself, not per connection
MAIN_SOURCE = 'xdp_proxy.bpf.c'
PROG = 'xdp_lb'
XDP_VERDICTS = {0: 'ABORTED', 1: 'DROP', 2: 'PASS', 3: 'TX', 4: 'REDIRECT'}
LAN = '10.204.0.'
SRV = '10.204.1.'
LB_HOST = 10
CLIENT_HOSTS = range(100, 164)
BACKEND_HOSTS = range(20, 36)


def mac_of(ip):
    """The static MAC the bench gives a neighbour (or an LB device): 02:00 + the IPv4 address."""
    return '02:00:' + ':'.join('%02x' % int(o) for o in ip.split('.'))


def run_name(base, pid=None):
    """base-PID: a name of this process's own, so runs by several people at once never collide."""
    return '%s-%d' % (base, pid or os.getpid())


def stale_names(base, names):
    """Those of names made by run_name(base) for a process that no longer exists (a run killed hard)."""
    pattern = re.compile(re.escape(base) + r'-(\d+)$')
    return [n for n in names if pattern.match(n) and not os.path.exists('/proc/' + pattern.match(n).group(1))]


def remove_stale_namespaces(base):
    names = os.listdir('/var/run/netns') if os.path.isdir('/var/run/netns') else []
    for name in stale_names(base, names):
        subprocess.run(['ip', 'netns', 'del', name], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bpf_sources(bpf_dir):
    """The program and every header next to it, as the xdp_proxy action plugin ships them."""
    names = [MAIN_SOURCE] + sorted(n for n in os.listdir(bpf_dir) if n.endswith('.h'))
    sources = {}
    for name in names:
        with open(os.path.join(bpf_dir, name)) as f:
            sources[name] = f.read()
    return sources


class XdpTestBed(object):
    """One namespace and one loaded program. Use as a context manager, or call up() and down().
    The namespace is named base-PID (run_name); up() also removes those of runs killed hard."""

    def __init__(self, base, bpf_dir, limits):
        self.base = base
        self.netns = run_name(base)
        self.netns_path = '/var/run/netns/' + self.netns
        self.bpf_dir = bpf_dir
        self.limits = limits
        self.bpf = None
        self.prog_fd = None
        self.maps = None
        self.ifindex = {}

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def _ip(self, *args, **kw):
        return subprocess.run(['ip'] + list(args), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, **kw)

    def up(self):
        remove_stale_namespaces(self.base)
        self.down()
        self._ip('netns', 'add', self.netns)
        lines = ['link set lo up']
        for dev, net in (('lan0', LAN), ('srv0', SRV)):
            lb_ip = net + str(LB_HOST)
            lines += ['link add %s address %s type veth peer name %sp' % (dev, mac_of(lb_ip), dev),
                      'link set %s up' % dev, 'link set %sp up' % dev,
                      'addr add %s/24 dev %s' % (lb_ip, dev)]
            hosts = list(BACKEND_HOSTS) + (list(CLIENT_HOSTS) if net == LAN else [])
            lines += ['neigh replace %s%d lladdr %s dev %s nud permanent' % (net, h, mac_of(net + str(h)), dev)
                      for h in hosts]
        self._ip('-n', self.netns, '-batch', '-', input='\n'.join(lines) + '\n')
        # bpf_fib_lookup answers FWD_DISABLED unless the ingress device forwards
        subprocess.run(['ip', 'netns', 'exec', self.netns, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1'],
                       check=True)
        with bpf_loader.in_netns(self.netns_path):
            for dev in ('lan0', 'srv0'):
                self.ifindex[dev] = bpf_loader.link_info(dev)['ifindex']
        return self

    def load(self, sources=None):
        """Compile and load the program (again): a fresh program with fresh maps."""
        self.unload()
        sources = sources or bpf_sources(self.bpf_dir)
        self.bpf, fds = bpf_loader.compile_and_load(sources, MAIN_SOURCE, self.limits.cflags(), {PROG: 'xdp'})
        self.prog_fd = fds[PROG]
        # bcc owns these fds: never close them through LbMaps
        self.maps = LbMaps(dict((n, bpf_loader.table_fd(self.bpf, n)) for n in MAP_NAMES), self.limits)
        return self

    def apply(self, services, snat_ip=None, neighbour_mac=None):
        """Write services (as a user gives them to xdp_proxy); returns the normalized list.
        neighbour_mac(ip) gives the fallback MAC xdp_proxy reads from the neighbour table."""
        desired = normalize_services(services, self.limits, snat_ip or LAN + str(LB_HOST))
        self.maps.apply(desired, neighbour_mac)
        return desired

    def reset_flows(self):
        """Forget every flow, as a freshly loaded program would have none: the maps holding
        per-connection state are emptied (hash maps) or zeroed (arrays), and so is the program's
        next-hop cache (lb_nexthops, where the collection has it)."""
        for name in FLOW_MAPS + CACHE_MAPS:
            fd = self.maps.fds.get(name)
            if fd is None:
                continue
            info = bpf_syscall.map_info(fd)
            if info['type'] in ('array', 'percpu_array'):
                # per CPU: one 8-byte aligned value for each possible CPU
                size = info['value_size'] if info['type'] == 'array' else \
                    (info['value_size'] + 7) // 8 * 8 * bpf_syscall.possible_cpus()
                zero = b'\0' * size
                for index in range(info['max_entries']):
                    bpf_syscall.map_update(fd, struct.pack('=I', index), zero)
            else:
                bpf_syscall.map_clear(fd, info['key_size'])

    def run(self, frame, dev='lan0', prog_fd=None):
        """One frame through the program as if received on dev: (verdict name, output frame bytes)."""
        with bpf_loader.in_netns(self.netns_path):
            retval, out, _ns = bpf_syscall.prog_test_run(self.prog_fd if prog_fd is None else prog_fd, bytes(frame),
                                                         ctx={'ingress_ifindex': self.ifindex[dev]})
        return XDP_VERDICTS.get(retval, str(retval)), out

    def durations(self, frames, dev='lan0', prog_fd=None):
        """Kernel-measured ns of one run each, every frame a fresh buffer (repeat=1): a list."""
        fd = self.prog_fd if prog_fd is None else prog_fd
        ctx = {'ingress_ifindex': self.ifindex[dev]}
        with bpf_loader.in_netns(self.netns_path):
            return [bpf_syscall.prog_test_run(fd, frame, ctx=ctx)[2] for frame in frames]

    def unload(self):
        if self.bpf is not None:
            self.bpf.cleanup()
        self.bpf = self.prog_fd = self.maps = None

    def down(self):
        self.unload()
        if os.path.exists(self.netns_path):
            subprocess.run(['ip', 'netns', 'del', self.netns], check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
