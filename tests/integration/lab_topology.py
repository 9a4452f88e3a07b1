# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small lab of network namespaces for integration tests, without docker.

    ebn-cl1, ebn-cl2 (clients) --+
    ebn-lb  (XDP LB, the VIP)  --+-- bridge br0 inside ebn-sw
    ebn-be1..N (backends)      --+

The bridge lives in its own namespace so the host's iptables (dockerd's FORWARD DROP) never sees
it. Addresses are 10.203.0.0/24, used only inside these namespaces.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys
import time

PREFIX = 'ebn-'
SUBNET = '10.203.0.'


def sh(*cmd, **kw):
    check = kw.pop('check', True)
    return subprocess.run(list(cmd), check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kw)


def nsexec(ns, *cmd, **kw):
    return sh('ip', 'netns', 'exec', ns, *cmd, **kw)


class Node(object):
    def __init__(self, name, ip, hostif, prefix=PREFIX):
        self.name = name
        self.ns = prefix + name
        self.ip = ip
        self.hostif = hostif  # the switch-side veth
        self.procs = []

    def run(self, *cmd, **kw):
        return nsexec(self.ns, *cmd, **kw)

    def hold_vip(self, vip):
        """A dsr/ipip backend: accept packets to vip (on lo), never answer ARP for it."""
        self.run('ip', 'addr', 'add', vip + '/32', 'dev', 'lo')
        for conf in ('all', 'eth0'):
            self.run('sysctl', '-qw', 'net.ipv4.conf.%s.arp_ignore=1' % conf)
            self.run('sysctl', '-qw', 'net.ipv4.conf.%s.arp_announce=2' % conf)

    def spawn(self, *cmd):
        p = subprocess.Popen(['ip', 'netns', 'exec', self.ns] + list(cmd), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p


class Topology(object):
    def __init__(self, clients=2, backends=3, checksum_offload=True, prefix=PREFIX, subnet=SUBNET, lbs=1):
        # prefix and subnet: another test file's lab, so both can exist at once
        self.prefix = prefix
        # one LB is 'lb' (host .10); several are lb1, lb2, ... (hosts .10, .11, ...)
        self.lbs = ['lb'] if lbs == 1 else ['lb%d' % (i + 1) for i in range(lbs)]
        self.subnet = subnet
        self.switch = prefix + 'sw'
        self.nodes = {}
        self.clients = ['cl%d' % (i + 1) for i in range(clients)]
        self.backends = ['be%d' % (i + 1) for i in range(backends)]
        self.checksum_offload = checksum_offload

    def ip(self, name):
        return self.nodes[name].ip

    def node(self, name):
        return self.nodes[name]

    def up(self):
        self.down()
        sh('ip', 'netns', 'add', self.switch)
        nsexec(self.switch, 'ip', 'link', 'add', 'br0', 'type', 'bridge')
        nsexec(self.switch, 'ip', 'link', 'set', 'br0', 'up')
        plan = [(lb, 10 + i) for i, lb in enumerate(self.lbs)] + [(c, 100 + i) for i, c in enumerate(self.clients)] + \
               [(b, 20 + i) for i, b in enumerate(self.backends)]
        for i, (name, host) in enumerate(plan):
            ns = self.prefix + name
            hostif = '%ssw%d' % (self.prefix.replace('-', ''), i)
            sh('ip', 'netns', 'add', ns)
            sh('ip', 'link', 'add', hostif, 'netns', self.switch, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
            nsexec(self.switch, 'ip', 'link', 'set', hostif, 'master', 'br0', 'up')
            nsexec(ns, 'ip', 'addr', 'add', '%s%d/24' % (self.subnet, host), 'dev', 'eth0')
            nsexec(ns, 'ip', 'link', 'set', 'eth0', 'up')
            nsexec(ns, 'ip', 'link', 'set', 'lo', 'up')
            # tests bind fixed source ports below this range; curl's own ports must never take them
            nsexec(ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=50000 60999')
            if not self.checksum_offload:
                nsexec(ns, 'ethtool', '-K', 'eth0', 'tx', 'off', 'rx', 'off')
                nsexec(self.switch, 'ethtool', '-K', hostif, 'tx', 'off', 'rx', 'off')
            self.nodes[name] = Node(name, '%s%d' % (self.subnet, host), hostif, self.prefix)
        return self

    def start_backends(self, port=80, udp_port=None):
        server = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'backend_server.py')
        for b in self.backends:
            node = self.nodes[b]
            args = [sys.executable, server, '--name', b, '--port', str(port)]
            if udp_port:
                args += ['--udp-port', str(udp_port)]
            node.spawn(*args)
        deadline = time.time() + 10
        for b in self.backends:
            while time.time() < deadline:
                if self.nodes[b].run('ss', '-ltn', 'sport = :%d' % port).stdout.count('LISTEN'):
                    break
                time.sleep(0.1)

    def down(self):
        for node in self.nodes.values():
            for p in node.procs:
                p.kill()
                p.wait()
        self.nodes = {}
        out = sh('ip', 'netns', 'list', check=False).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ''
            if name.startswith(self.prefix):
                sh('ip', 'netns', 'del', name, check=False)
