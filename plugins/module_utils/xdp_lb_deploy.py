# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The XDP load balancer's desired state applied to a host: compile, pin, configure, attach, detach.

No import from `ansible.`: the xdp_proxy module wraps this, and a host agent re-applies a saved
desired state with it without Ansible. A failure raises DeployError carrying the user's message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, deploy_run, xdp_deploy
from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError
from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import (
    FLOW_MAPS, TIMEOUT_NAMES, ConfigError, LbMaps, Limits, diff_services, normalize_services)

MAIN_SOURCE = 'xdp_proxy.bpf.c'

# the module's option defaults, for callers that pass only what they set
DEFAULTS = {
    'name': 'xdp_lb', 'state': 'present', 'interface': None, 'container': None, 'netns': None, 'mode': 'auto',
    'force': False, 'services': None, 'max_services': 16, 'max_backends': 64, 'ring_size': 4099,
    'max_flows': 65536, 'snat_port_range': [20000, 29999], 'bpf_sources': None, 'max_snat_ips': 2,
    'timeouts': None,
}


class XdpLbDeployment(object):
    """Make one deployment (pins under /sys/fs/bpf/ebpf_networking/<name>) match params.

    params: the module's parameters (see plugins/modules/xdp_proxy.py), defaults filled in.
    run_command(argv) -> (rc, stdout, stderr), used to ask docker about a container when its SDK is
    missing. check_mode: report, change nothing. warn(text) is called for each warning after a
    successful run; they also collect in self.warnings.
    """

    def __init__(self, params, run_command=None, check_mode=False, warn=None):
        self.p = dict(DEFAULTS, **dict((k, v) for k, v in params.items() if v is not None))
        self.run_command = run_command or bpf_loader.run_command
        self.warn = warn
        self.check_mode = check_mode
        self.pins = None
        self.changes = []
        self.warnings = []

    def run(self):
        """Apply the desired state; returns the result dict. Raises DeployError with the user's message."""
        return deploy_run.reported(self._apply, self.fail, (LoaderError, ConfigError))

    def _apply(self):
        result = deploy_run.run_pinned(self, 'xdp_proxy')
        if self.warn:
            for w in self.warnings:
                self.warn(w)
        return result

    # -- helpers --
    def fail(self, msg, **kw):
        raise DeployError(msg, changes=self.changes, pin_path=self.pins.path if self.pins else None, **kw)

    def resolve_target(self):
        path, label = bpf_loader.resolve_netns(self.p['container'], self.p['netns'], self.run_command)
        with bpf_loader.in_netns(path):
            link = bpf_loader.link_info(self.p['interface'])
            if link is None:
                names = bpf_loader.link_names()
                raise LoaderError('interface %s does not exist in %s (it has: %s)'
                                  % (self.p['interface'], label, ', '.join(names)))
            addrs = bpf_loader.ipv4_addresses(link['ifindex'])
            ino = bpf_loader.netns_inode(path)
        return path, label, link, addrs, ino

    # -- present --
    def present(self):
        p = self.p
        if not p['interface']:
            self.fail('interface is required with state=present (e.g. interface: eth0)')
        bpf_loader.require_source(p['bpf_sources'], MAIN_SOURCE)
        rng = p['snat_port_range']
        if not isinstance(rng, list) or len(rng) != 2 or rng[0] > rng[1]:
            self.fail('snat_port_range must be [first, last] with first <= last, got %s' % (rng,))
        if p['timeouts'] is not None and not isinstance(p['timeouts'], dict):
            self.fail('timeouts must be a dict (%s in seconds), got %r' % (', '.join(TIMEOUT_NAMES), p['timeouts']))
        limits = Limits(p['max_services'], p['max_backends'], p['ring_size'], p['max_flows'], rng[0], rng[1],
                        p['max_snat_ips'], p['timeouts'])
        bpf_loader.require_bpffs()
        netns_path, label, link, addrs, ino = self.resolve_target()
        desired = normalize_services(p['services'], limits, addrs[0] if addrs else None)
        self.check_direct_backends(desired, netns_path, label, link)
        digest = bpf_loader.source_digest(p['bpf_sources'], limits.cflags())

        if os.path.isdir(self.pins.staging):
            self.changes.append('removed half-pinned staging directory left by an interrupted run')
            if not self.check_mode:
                self.pins.clear_staging()
        maps, meta = xdp_deploy.load_existing(self.pins)
        if maps is None and self.pins.exists():
            self.changes.append('replace damaged pins: %s: %d live flows will be reset'
                                % (meta, xdp_deploy.pinned_flow_count(self.pins)))
        before = []
        try:
            need_reload = maps is None or meta['digest'] != digest or maps.limits.cflags() != limits.cflags()
            consistent = True
            attached_here = False
            old_place = None
            keep_flows = None
            # our program, even when the maps around it are damaged: it is not a foreign one
            prog_id = self.pins.prog_id(xdp_deploy.PROG)
            if maps is not None:
                before, consistent = maps.read_config()
                attached_here = (link['xdp_prog_id'] == prog_id and meta['ifname'] == link['ifname']
                                 and meta['netns_ino'] == ino)
                if not attached_here:
                    old_place = xdp_deploy.attachment(meta, prog_id)
                if need_reload and maps.limits.flow_layout() == limits.flow_layout():
                    keep_flows = maps
                    self.changes.append('reload program (source or options changed), keeping the flow table '
                                        '(%d flows)' % maps.flow_count(limit=maps.limits.max_flows))
                elif need_reload:
                    self.changes.append('reload program with a new flow-table layout: %d live flows will be reset'
                                        % maps.flow_count(limit=maps.limits.max_flows))
            else:
                self.changes.append('load and pin program %s' % self.pins.path)
            foreign = bool(link['xdp_prog_id']) and link['xdp_prog_id'] != prog_id
            if foreign and not p['force']:
                self.fail('interface %s in %s already has XDP program id %d attached (mode %s) that is not this '
                          'deployment\'s. Remove it (ip link set dev %s xdp off), pick another interface, or set '
                          'force: true to replace it.' % (link['ifname'], label, link['xdp_prog_id'],
                                                          link['xdp_mode'], link['ifname']))
            if foreign:
                self.changes.append('replace foreign XDP program id %d on %s' % (link['xdp_prog_id'], link['ifname']))
            if old_place:
                self.changes.append('detach from %s in %s' % (old_place['link']['ifname'], old_place['netns']))
            if not attached_here:
                self.changes.append('attach to %s in %s' % (link['ifname'], label))
            config_changes = diff_services(before, desired)
            if not consistent and not config_changes:
                config_changes = ['rewrite inconsistent Maglev tables left by an interrupted run']
            self.changes.extend(config_changes)
            wanted_mode = p['mode']
            if attached_here and wanted_mode != 'auto' and link['xdp_mode'] != wanted_mode:
                self.changes.append('switch attach mode %s -> %s' % (link['xdp_mode'], wanted_mode))
                attached_here = False

            diff = {'before': {'services': before, 'limits': maps.limits.as_dict() if maps is not None else None,
                               'interface': {'name': meta['ifname'], 'netns': meta['netns'], 'mode': meta['mode']}
                               if maps is not None else None},
                    'after': {'services': desired, 'limits': limits.as_dict(),
                              'interface': {'name': link['ifname'], 'netns': label,
                                            'mode': link['xdp_mode'] if attached_here else p['mode']}}}
            if self.check_mode or not self.changes:
                result = dict(changed=bool(self.changes), changes=self.changes, services=desired,
                              pin_path=self.pins.path, diff=diff,
                              interface={'name': link['ifname'], 'ifindex': link['ifindex'], 'netns': label})
                if not self.check_mode and maps is not None:
                    result.update(self.report(maps, link, label))
                return result

            if need_reload:
                carried = keep_flows.export_config() if keep_flows is not None else None
                if maps is not None:
                    maps.close()
                    maps = None
                self.reload(limits, digest, desired, netns_path, label, link, ino, old_place,
                            meta if isinstance(meta, dict) else None, carried)
            else:
                if old_place:
                    self.detach(old_place['netns_path'], old_place['link'], meta)
                if not attached_here:
                    prog_fd = self.pins.open_prog(xdp_deploy.PROG)
                    try:
                        mode, peer = self.attach(prog_fd, netns_path, link)
                    finally:
                        os.close(prog_fd)
                    self.drop_stale_peer(meta, peer)
                    maps.write_meta(digest, link['ifindex'], peer, ino, mode, link['ifname'], label)
                if config_changes:
                    maps.apply(desired, self.mac_lookup(netns_path, link))
                maps.close()
            maps, meta = xdp_deploy.load_existing(self.pins)
            with bpf_loader.in_netns(netns_path):
                link = bpf_loader.link_info(link['ifname'])
            result = dict(changed=True, changes=self.changes, services=desired, pin_path=self.pins.path, diff=diff)
            result.update(self.report(maps, link, label))
            return result
        finally:
            if maps is not None:
                maps.close()

    def check_direct_backends(self, desired, netns_path, label, link):
        """dsr reaches a backend by its MAC: it must be a neighbour (a route without gateway) of the
        load balancer's namespace. ipip needs any route to the backend and a local tunnel source."""
        with bpf_loader.in_netns(netns_path):
            local = bpf_loader.local_ipv4_addresses()
            for svc in desired:
                where = 'service %s:%d/%s' % (svc['vip'], svc['port'], svc['protocol'])
                if svc['forwarding'] == 'ipip' and svc['tunnel_source'] not in local:
                    self.fail('%s: tunnel_source %s is not an address of %s (it has %s): give one of them, the '
                              'backends answer ICMP errors to it' % (where, svc['tunnel_source'], label,
                                                                     ', '.join(local) or 'none'))
                if svc['forwarding'] == 'nat':
                    continue
                for be in svc['backends']:
                    route = bpf_loader.route_to(be['ip'])
                    if route is None:
                        self.fail('%s: backend %s has no route in %s: add one (forwarding %s sends to it by '
                                  'its route)' % (where, be['ip'], label, svc['forwarding']))
                    if svc['forwarding'] == 'dsr' and route['gateway']:
                        self.fail('%s: backend %s is reached through gateway %s (device %s), not on a directly '
                                  'connected L2 segment of %s: forwarding dsr rewrites only the destination MAC, '
                                  'so backends must be neighbours. Put the backend on the segment of %s, or use '
                                  'forwarding: ipip' % (where, be['ip'], route['gateway'],
                                                        (bpf_loader.link_by_index(route['ifindex']) or {}).get(
                                                            'ifname', route['ifindex']),
                                                        link['ifname'], link['ifname']))

    def mac_lookup(self, netns_path, link):
        """Backend MACs from the neighbour table, priming ARP first: the program's fallback when the FIB
        lookup finds no neighbour."""
        def lookup(ip):
            with bpf_loader.in_netns(netns_path):
                mac = bpf_loader.neighbour_mac(ip, link['ifindex'])
                if mac is None:
                    bpf_loader.prime_neighbour(ip)
                    for _attempt in range(10):
                        time.sleep(0.05)
                        mac = bpf_loader.neighbour_mac(ip, link['ifindex'])
                        if mac:
                            break
                return mac
        return lookup

    def reload(self, limits, digest, desired, netns_path, label, link, ino, old_place, old_meta, carried=None):
        """Load a new program set. With carried (the old configuration rows), the new program opens the
        pinned flow tables of the running one (BPF_TABLE_PINNED on the live pins) so connections survive."""
        cflags = list(limits.cflags())
        pinned = None
        if carried is not None:
            cflags.append('-DLB_FLOWS_PIN="%s"' % self.pins.path)
            pinned = dict((n, self.pins.map_path(n)) for n in FLOW_MAPS)
        loaded = bpf_loader.load_programs(self.p['bpf_sources'], MAIN_SOURCE, cflags,
                                          {xdp_deploy.PROG: 'xdp', xdp_deploy.PEER_PROG: 'xdp'},
                                          maps=xdp_deploy.MAP_NAMES, pinned_maps=pinned)
        self.changes.append('program %s' % loaded.note)
        fds = loaded.prog_fds
        try:
            self.pins.pin_staging(fds, loaded.map_fds)
        except Exception:
            self.pins.clear_staging()
            loaded.close()
            raise
        staged = LbMaps(xdp_deploy.open_maps(self.pins, staged=True), limits)
        try:
            if carried is not None:
                staged.import_config(carried)
            staged.apply(desired, self.mac_lookup(netns_path, link))
            if old_place:
                self.detach(old_place['netns_path'], old_place['link'], None)
            mode, peer = self.attach(fds[xdp_deploy.PROG], netns_path, link, peer_fd=fds[xdp_deploy.PEER_PROG])
            self.drop_stale_peer(old_meta, peer)
            staged.write_meta(digest, link['ifindex'], peer, ino, mode, link['ifname'], label)
        except Exception:
            staged.close()
            self.pins.clear_staging()
            loaded.close()
            raise
        staged.close()
        self.pins.commit_staging()
        loaded.close()

    def attach(self, prog_fd, netns_path, link, peer_fd=None):
        """Attach, atomically replacing what runs there now (ours, or a foreign program with force, both
        checked before). Returns (mode, peer ifindex given the pass program, or 0)."""
        mode = bpf_loader.xdp_attach_replacing(netns_path, link, prog_fd, bpf_loader.xdp_modes(self.p['mode'], link))
        peer = 0
        if mode == 'native' and link['kind'] == 'veth':
            peer = self.attach_peer(netns_path, link, peer_fd)
        return mode, peer

    def attach_peer(self, netns_path, link, peer_fd):
        """Give the veth's peer the XDP_PASS program so XDP_TX frames are delivered (native mode)."""
        found = bpf_loader.find_veth_peer(link, netns_path)
        if found is None:
            self.warnings.append('native XDP on veth %s: its peer was not found in this or a named namespace, so '
                                 'XDP_TX frames may not be delivered; use mode: generic if traffic stalls'
                                 % link['ifname'])
            return 0
        peer_path, peer = found
        own_fd = peer_fd if peer_fd is not None else self.pins.open_prog(xdp_deploy.PEER_PROG)
        expected_fd = None
        try:
            own_id = bpf_loader.bpf_syscall.prog_info(own_fd)['id']
            if peer['xdp_prog_id'] == own_id:
                return peer['ifindex']
            if peer['xdp_prog_id'] and peer['xdp_prog_id'] == self.pins.prog_id(xdp_deploy.PEER_PROG):
                expected_fd = bpf_loader.bpf_syscall.prog_fd_by_id(peer['xdp_prog_id'])  # ours, older
            elif peer['xdp_prog_id']:
                self.warnings.append('veth peer %s already runs XDP program %d; leaving it' %
                                     (peer['ifname'], peer['xdp_prog_id']))
                return 0
            with bpf_loader.in_netns(peer_path):
                bpf_loader.xdp_attach(peer['ifindex'], own_fd, 'native', expected_fd)
        finally:
            if peer_fd is None:
                os.close(own_fd)
            if expected_fd is not None:
                os.close(expected_fd)
        return peer['ifindex']

    def drop_stale_peer(self, old_meta, peer):
        """After an attach, remove our pass program from a veth peer that no longer needs it (now generic
        mode, or another interface)."""
        if old_meta and old_meta.get('peer_ifindex') and old_meta['peer_ifindex'] != peer:
            self.detach_peer(old_meta)

    def detach(self, netns_path, link, meta):
        with bpf_loader.in_netns(netns_path):
            bpf_loader.xdp_detach(link['ifindex'], link['xdp_mode'])
        self.detach_peer(meta)

    def detach_peer(self, meta):
        """Remove our pass program from wherever the recorded peer ifindex runs it."""
        if not meta or not meta.get('peer_ifindex') or not self.pins.has_prog(xdp_deploy.PEER_PROG):
            return
        own_id = self.pins.prog_id(xdp_deploy.PEER_PROG)
        for path in bpf_loader.candidate_netns():
            try:
                with bpf_loader.in_netns(path):
                    peer = bpf_loader.link_by_index(meta['peer_ifindex'])
                    if peer and peer['xdp_prog_id'] == own_id:
                        bpf_loader.xdp_detach(peer['ifindex'], peer['xdp_mode'])
                        return
            except (LoaderError, OSError):
                continue

    def report(self, maps, link, label):
        config = maps.read_config()[0]
        meta = maps.read_meta()
        return dict(prog_id=self.pins.prog_id(xdp_deploy.PROG), attach_mode=link['xdp_mode'],
                    interface={'name': link['ifname'], 'ifindex': link['ifindex'], 'netns': label,
                               'peer_ifindex': meta['peer_ifindex']},
                    maps=xdp_deploy.map_report(maps), counters=maps.counters(config),
                    global_counters=maps.global_counters(), flows=maps.flow_count(limit=maps.limits.max_flows),
                    limits=maps.limits.as_dict())

    # -- absent --
    def absent(self):
        staging = os.path.isdir(self.pins.staging)
        if not self.pins.exists():
            if staging:
                self.changes.append('remove staging pins %s' % self.pins.staging)
                if not self.check_mode:
                    self.pins.clear_staging()
            return dict(changed=bool(self.changes), changes=self.changes, pin_path=self.pins.path)
        maps, meta = xdp_deploy.load_existing(self.pins)
        before = []
        before_iface = None
        if maps is not None:
            before = maps.read_config()[0]
            before_iface = {'name': meta['ifname'], 'netns': meta['netns'], 'mode': meta['mode']}
            flows = maps.flow_count(limit=maps.limits.max_flows)
            if flows:
                self.changes.append('%d flows in the connection table end with it' % flows)
            place = xdp_deploy.attachment(meta, self.pins.prog_id(xdp_deploy.PROG))
            if place:
                self.changes.append('detach from %s in %s' % (place['link']['ifname'], place['netns']))
                if not self.check_mode:
                    self.detach(place['netns_path'], place['link'], meta)
            elif not self.check_mode:
                self.detach_peer(meta)
            maps.close()
        else:
            # damaged pins: no record of where we are attached, so look everywhere for our programs
            ours = [self.pins.prog_id(xdp_deploy.PROG), self.pins.prog_id(xdp_deploy.PEER_PROG)]
            for path, link in bpf_loader.find_xdp_attachments(ours):
                self.changes.append('detach program %d from %s (netns %s)'
                                    % (link['xdp_prog_id'], link['ifname'], path or 'host'))
                if not self.check_mode:
                    with bpf_loader.in_netns(path):
                        bpf_loader.xdp_detach(link['ifindex'], link['xdp_mode'])
        self.changes.append('remove pins %s' % self.pins.path)
        if not self.check_mode:
            self.pins.remove()
        return dict(changed=True, changes=self.changes, pin_path=self.pins.path,
                    diff={'before': {'services': before, 'interface': before_iface},
                          'after': {'services': [], 'interface': None}})
