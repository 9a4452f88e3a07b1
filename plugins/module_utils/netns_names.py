# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network namespace inodes (what the BPF programs record) to names a user knows: `host`, the
`ip netns` name, or the docker container whose namespace it is. No ansible import: the host agent
labels its metrics with it too."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

NETNS_DIR = '/run/netns'


def _inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def docker_netns(run=subprocess.run):
    """{netns inode: container name} of running docker containers; {} without docker."""
    try:
        ids = run(['docker', 'ps', '-q'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                  timeout=10, check=False)
        if ids.returncode != 0 or not ids.stdout.split():
            return {}
        out = run(['docker', 'inspect'] + ids.stdout.split(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                  universal_newlines=True, timeout=20, check=False)
        containers = json.loads(out.stdout or '[]')
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    found = {}
    for c in containers:
        pid = (c.get('State') or {}).get('Pid')
        ino = _inode('/proc/%s/ns/net' % pid) if pid else None
        if ino:
            found[ino] = (c.get('Name') or '').lstrip('/')
    return found


class NetnsNames(object):
    """Labels for namespace inodes: host, netns:NAME, container:NAME, or the bare inode."""

    def __init__(self, netns_dir=NETNS_DIR, containers=None):
        self.host = _inode('/proc/1/ns/net')
        self.named = {}
        if os.path.isdir(netns_dir):
            for name in sorted(os.listdir(netns_dir)):
                ino = _inode(os.path.join(netns_dir, name))
                if ino:
                    self.named.setdefault(ino, name)
        self.containers = docker_netns() if containers is None else containers

    def describe(self, inode):
        """{'inode', 'name', 'container'?} for a record."""
        out = {'inode': inode, 'name': self.label(inode)}
        if inode in self.containers:
            out['container'] = self.containers[inode]
        return out

    def label(self, inode):
        if not inode:
            return 'unknown'
        if inode == self.host:
            return 'host'
        if inode in self.containers:
            return 'container:' + self.containers[inode]
        if inode in self.named:
            return 'netns:' + self.named[inode]
        return 'netns:%d' % inode


def resolve(spec, netns_dir=NETNS_DIR, containers=None):
    """Inode of the namespace a user named: `host`, a container name, an `ip netns` name, or a path
    (/proc/PID/ns/net, /run/netns/NAME). Raises ValueError saying what exists."""
    spec = (spec or '').strip()
    if not spec:
        raise ValueError('namespace is empty: give a container name, an ip netns name, a path, or host')
    if spec == 'host':
        return _inode('/proc/1/ns/net')
    if spec.startswith('/'):
        ino = _inode(spec)
        if ino is None:
            raise ValueError('namespace path %s does not exist' % spec)
        return ino
    named = _inode(os.path.join(netns_dir, spec)) if '/' not in spec else None
    if named:
        return named
    containers = docker_netns() if containers is None else containers
    for ino, name in containers.items():
        if name == spec:
            return ino
    known = sorted(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else []
    raise ValueError('namespace %r is neither a running container (%s) nor an ip netns name (%s) nor a path'
                     % (spec, ', '.join(sorted(containers.values())) or 'none running',
                        ', '.join(known) or 'none'))
