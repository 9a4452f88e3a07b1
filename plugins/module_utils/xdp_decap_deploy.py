# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPIP decapsulation in XDP on a backend (bpf/xdp_decap.bpf.c): compile, pin, configure, attach, detach.

For backends of an xdp_proxy service with forwarding ipip whose kernel has no ipip device. No import
from `ansible.`: the xdp_decap module wraps this. Pins under /sys/fs/bpf/ebpf_networking/<name>/ are
the state: a later run compares the source digest, the attachment and the addresses before changing
anything.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall, deploy_run
from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError
from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import ConfigError, ip_str, usable_ip

MAIN_SOURCE = 'xdp_decap.bpf.c'
PROG = 'xdp_decap'
MAP_NAMES = ('decap_dsts', 'decap_count', 'decap_meta')
META = struct.Struct('=32sIB3xQ16s96s')
MODES = {1: 'native', 2: 'generic'}
MODE_IDS = dict((v, k) for k, v in MODES.items())
MAX_ADDRESSES = 64
U32 = struct.Struct('=I')

DEFAULTS = {'name': 'ipip_decap', 'state': 'present', 'interface': None, 'container': None, 'netns': None,
            'addresses': None, 'mode': 'auto', 'force': False, 'bpf_sources': None}


def normalize_addresses(addresses, interface_addrs):
    """The outer destinations to decapsulate, sorted: the given ones, else the interface's addresses."""
    if addresses is None:
        addresses = interface_addrs
        if not addresses:
            raise ConfigError('the interface has no IPv4 address and no addresses were given: give the '
                              'addresses the load balancer sends IPIP packets to (the backend\'s own)')
    if not isinstance(addresses, list) or not addresses:
        raise ConfigError('addresses must be a non-empty list of IPv4 addresses, got %r' % (addresses,))
    if len(addresses) > MAX_ADDRESSES:
        raise ConfigError('addresses lists %d addresses: at most %d' % (len(addresses), MAX_ADDRESSES))
    for n, ip in enumerate(addresses):
        usable_ip(ip, 'addresses[%d]' % n)
    return sorted(set(addresses), key=lambda ip: tuple(int(o) for o in ip.split('.')))


class Pinned(object):
    """Open fds of a pinned decap deployment."""

    def __init__(self, pins):
        self.fds = {}
        try:
            for name in MAP_NAMES:
                self.fds[name] = pins.open_map(name)
        except bpf_syscall.BpfError:
            self.close()
            raise

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def meta(self):
        raw = bpf_syscall.map_lookup(self.fds['decap_meta'], U32.pack(0), META.size)
        digest, ifindex, mode, ino, ifname, netns = META.unpack(raw)
        return {'digest': digest, 'ifindex': ifindex, 'mode': MODES.get(mode), 'netns_ino': ino,
                'ifname': ifname.split(b'\0', 1)[0].decode(), 'netns': netns.split(b'\0', 1)[0].decode()}

    def addresses(self):
        keys = bpf_syscall.map_keys(self.fds['decap_dsts'], 4, limit=MAX_ADDRESSES * 2)
        return sorted((ip_str(k) for k in keys), key=lambda ip: tuple(int(o) for o in ip.split('.')))

    def set_addresses(self, wanted):
        have = set(self.addresses())
        for ip in wanted:
            if ip not in have:
                bpf_syscall.map_update(self.fds['decap_dsts'], usable_ip(ip, 'address'), U32.pack(1))
        for ip in have - set(wanted):
            bpf_syscall.map_delete(self.fds['decap_dsts'], usable_ip(ip, 'address'))

    def write_meta(self, digest, link, mode, ino, label):
        raw = META.pack(digest, link['ifindex'], MODE_IDS.get(mode, 0), ino, link['ifname'].encode()[:15],
                        label.encode()[:95])
        bpf_syscall.map_update(self.fds['decap_meta'], U32.pack(0), raw)

    def decapsulated(self):
        ncpus = bpf_syscall.possible_cpus()
        raw = bpf_syscall.map_lookup(self.fds['decap_count'], U32.pack(0), 8 * ncpus)
        return sum(struct.unpack('=%dQ' % ncpus, raw)) if raw else 0


class XdpDecapDeployment(object):
    def __init__(self, params, run_command=None, check_mode=False):
        self.p = dict(DEFAULTS, **dict((k, v) for k, v in params.items() if v is not None))
        self.run_command = run_command
        self.check_mode = check_mode
        self.pins = None
        self.changes = []

    def fail(self, msg, **kw):
        raise DeployError(msg, changes=self.changes, **kw)

    def run(self):
        """Apply the desired state; returns the result dict. Raises DeployError with the user's message."""
        return deploy_run.reported(lambda: deploy_run.run_pinned(self, 'xdp_decap'), self.fail,
                                   (LoaderError, ConfigError))

    def _open(self):
        """(Pinned, meta) of intact pins, else (None, None)."""
        if not self.pins.exists() or not self.pins.has_prog(PROG):
            return None, None
        try:
            pinned = Pinned(self.pins)
        except bpf_syscall.BpfError:
            return None, None
        try:
            return pinned, pinned.meta()
        except Exception:  # pylint: disable=broad-except
            pinned.close()
            return None, None

    def present(self):
        p = self.p
        if not p['interface']:
            self.fail('interface is required with state=present (the backend interface IPIP packets arrive on)')
        bpf_loader.require_source(p['bpf_sources'], MAIN_SOURCE)
        bpf_loader.require_bpffs()
        netns_path, label = bpf_loader.resolve_netns(p['container'], p['netns'], self.run_command)
        with bpf_loader.in_netns(netns_path):
            link = bpf_loader.link_info(p['interface'])
            if link is None:
                self.fail('interface %s does not exist in %s (it has: %s)'
                          % (p['interface'], label, ', '.join(bpf_loader.link_names())))
            addresses = normalize_addresses(p['addresses'], bpf_loader.ipv4_addresses(link['ifindex']))
        ino = bpf_loader.netns_inode(netns_path)
        digest = bpf_loader.source_digest(p['bpf_sources'], [])
        pinned, meta = self._open()
        try:
            prog_id = self.pins.prog_id(PROG) if pinned else None
            attached_here = bool(pinned) and link['xdp_prog_id'] == prog_id and meta['netns_ino'] == ino
            foreign = bool(link['xdp_prog_id']) and link['xdp_prog_id'] != prog_id
            if foreign and not p['force']:
                self.fail('interface %s in %s already has XDP program id %d attached that is not this deployment\'s. '
                          'Remove it (ip link set dev %s xdp off), or set force: true to replace it.'
                          % (link['ifname'], label, link['xdp_prog_id'], link['ifname']))
            need_load = pinned is None or meta['digest'] != digest
            if pinned is None:
                self.changes.append('load and pin program %s' % self.pins.path)
            elif need_load:
                self.changes.append('reload program (source changed)')
            if pinned is not None and not attached_here and meta['ifindex']:
                self.changes.append('detach from %s in %s' % (meta['ifname'], meta['netns']))
            if not attached_here:
                self.changes.append('attach to %s in %s' % (link['ifname'], label))
            if p['mode'] != 'auto' and attached_here and link['xdp_mode'] != p['mode']:
                self.changes.append('switch attach mode %s -> %s' % (link['xdp_mode'], p['mode']))
                attached_here = False
            before = pinned.addresses() if pinned else []
            if before != addresses:
                self.changes.append('decapsulate IPIP to %s' % ', '.join(addresses))
            result = dict(changed=bool(self.changes), changes=self.changes, addresses=addresses,
                          pin_path=self.pins.path, interface={'name': link['ifname'], 'netns': label},
                          diff={'before': {'addresses': before}, 'after': {'addresses': addresses}})
            if self.check_mode or not self.changes:
                if pinned is not None:
                    result.update(prog_id=prog_id, decapsulated=pinned.decapsulated())
                return result
            old_place = meta if pinned is not None and not attached_here else None
            if need_load:
                if pinned is not None:
                    pinned.close()
                    pinned = None
                self.load(digest, addresses, netns_path, label, link, ino, old_place)
            else:
                if old_place:
                    self.detach(old_place)
                pinned.set_addresses(addresses)
                if not attached_here:
                    fd = self.pins.open_prog(PROG)
                    try:
                        mode = self.attach(fd, netns_path, link)
                    finally:
                        os.close(fd)
                    pinned.write_meta(digest, link, mode, ino, label)
            if pinned is None:
                pinned, meta = self._open()
            result.update(prog_id=self.pins.prog_id(PROG), decapsulated=pinned.decapsulated(),
                          attach_mode=pinned.meta()['mode'])
            return result
        finally:
            if pinned is not None:
                pinned.close()

    def load(self, digest, addresses, netns_path, label, link, ino, old_place):
        bpf, fds = bpf_loader.compile_and_load(self.p['bpf_sources'], MAIN_SOURCE, [], {PROG: 'xdp'})
        try:
            self.pins.pin_staging(fds, dict((n, bpf_loader.table_fd(bpf, n)) for n in MAP_NAMES))
        except Exception:
            self.pins.clear_staging()
            raise
        staged = Pinned.__new__(Pinned)
        staged.fds = dict((n, self.pins.staged_map_fd(n)) for n in MAP_NAMES)
        try:
            staged.set_addresses(addresses)
            if old_place:
                self.detach(old_place)
            mode = self.attach(fds[PROG], netns_path, link)
            staged.write_meta(digest, link, mode, ino, label)
        except Exception:
            staged.close()
            self.pins.clear_staging()
            raise
        staged.close()
        self.pins.commit_staging()
        del bpf

    def attach(self, prog_fd, netns_path, link):
        return bpf_loader.xdp_attach_replacing(netns_path, link, prog_fd, bpf_loader.xdp_modes(self.p['mode'], link))

    def detach(self, meta):
        """Take our program off where meta says it was attached, if it is still ours there."""
        path = None
        if meta['netns'].startswith('netns:') or meta['netns'].startswith('container:'):
            try:
                kind, value = meta['netns'].split(':', 1)
                path = bpf_loader.resolve_netns(value if kind == 'container' else None,
                                                value if kind == 'netns' else None, self.run_command)[0]
            except LoaderError:
                return  # the namespace is gone, and the attachment with it
        try:
            with bpf_loader.in_netns(path):
                link = bpf_loader.link_by_index(meta['ifindex'])
                if link and link['xdp_prog_id'] and link['xdp_prog_id'] == self.pins.prog_id(PROG):
                    bpf_loader.xdp_detach(link['ifindex'], link['xdp_mode'])
        except (OSError, LoaderError):
            pass

    def absent(self):
        pinned, meta = self._open()
        if pinned is None and not self.pins.exists():
            return dict(changed=False, changes=[], pin_path=self.pins.path)
        try:
            if meta is not None and meta['ifindex']:
                self.changes.append('detach from %s in %s' % (meta['ifname'], meta['netns']))
            self.changes.append('remove pins %s' % self.pins.path)
            if not self.check_mode:
                if meta is not None:
                    self.detach(meta)
                if pinned is not None:
                    pinned.close()
                    pinned = None
                self.pins.remove()
        finally:
            if pinned is not None:
                pinned.close()
        return dict(changed=True, changes=self.changes, pin_path=self.pins.path)
