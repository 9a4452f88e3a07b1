# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A sockmap_redirect deployment: load, attach, change and remove it from a plain params dict.

No import from ansible: the sockmap_redirect module wraps this, and a host agent can re-apply a
saved deployment with it on hosts without Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import time

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall, pin_kinds
from ansible_collections.ebpf.networking.plugins.module_utils import sockmap_keys as sk
from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError

SOCKOPS = 'ebn_sockops'
SKMSG = 'ebn_sk_msg'
MAPS = ('sockmap_socks', 'sockmap_ports', 'sockmap_cidrs', 'sockmap_config', 'sockmap_stats', 'sockmap_meta')
# maps a deployment of an older version (4-tuple keys) lacks: it is reloaded, not refused
NEW_MAPS = ('sockmap_state',)
MAX_DRAIN_TIMEOUT = 60
U32 = struct.Struct('=I')
U64 = struct.Struct('=Q')


class SockmapError(Exception):
    """A failure with a message for the user: what is wrong and how to fix it."""


class SockmapDeployment(object):
    """One deployment: params as the module takes them (a plain dict), check_mode, and run_command
    (args -> (rc, stdout, stderr), only needed to find a docker container). Raises SockmapError (or
    bpf_loader.LoaderError / sockmap_keys.SockmapConfigError) with the message for the user;
    self.changes says what was done up to then."""

    def __init__(self, params, check_mode=False, run_command=None):
        bpf_loader.validate_name(params.get('name'))
        self.p = params
        self.check_mode = check_mode
        self.run_command = run_command
        self.pins = bpf_loader.PinSet(self.p['name'])
        self.changes = []
        self.drained_seconds = None

    def fail(self, msg):
        raise SockmapError(msg)

    def apply(self):
        pin_kinds.refuse_foreign(self.pins, 'sockmap_redirect')
        return self.present() if self.p.get('state', 'present') == 'present' else self.absent()

    # -- reading the pins --
    def open_maps(self, base=None):
        fds = {}
        try:
            for name in MAPS:
                fds[name] = bpf_syscall.obj_get(self.pins.map_path(name, base))
        except bpf_syscall.BpfError:
            close_all(fds)
            return None
        for name in NEW_MAPS:
            try:
                fds[name] = bpf_syscall.obj_get(self.pins.map_path(name, base))
            except bpf_syscall.BpfError:
                pass
        return fds

    def read_state(self, fds):
        meta = bpf_syscall.map_lookup(fds['sockmap_meta'], U32.pack(0), sk.META.size)
        digest, cgroup = sk.META.unpack(meta)
        ports = sorted(U32.unpack(k)[0] for k in bpf_syscall.map_keys(fds['sockmap_ports'], 4))
        cidr_keys = bpf_syscall.map_keys(fds['sockmap_cidrs'], sk.CIDR_KEY.size)
        cidrs = sk.normalize_cidrs(sk.cidr_from_key(k) for k in cidr_keys)
        return {'digest': digest, 'cgroup': cgroup.split(b'\0', 1)[0].decode(), 'ports': ports, 'cidrs': cidrs}

    def attached_ids(self, cgroup):
        try:
            return bpf_loader.cgroup_query(cgroup, bpf_loader.ATTACH_CGROUP_SOCK_OPS)
        except (OSError, bpf_syscall.BpfError):
            return []

    # -- present --
    def present(self):
        p = self.p
        if not p['bpf_sources'] or 'sockops.bpf.c' not in p['bpf_sources']:
            self.fail('bpf_sources has no sockops.bpf.c: run this module through its action plugin (the '
                      'ebpf.networking collection must be installed on the controller)')
        if not 1 <= p['max_sockets'] <= 1048576:
            self.fail('max_sockets %d is out of range: use 1-1048576' % p['max_sockets'])
        self.check_drain_timeout()
        ports = sk.normalize_ports(p['ports'])
        cidrs = sk.normalize_cidrs(p['cidrs'])
        cgroup = bpf_loader.resolve_cgroup(p.get('cgroup'), p.get('container'), self.run_command)
        if not ports and not cidrs and p.get('scope', 'filtered') != 'all':
            self.fail('ports and cidrs are both empty: that would accelerate every TCP connection of the cgroup '
                      '(and skip netfilter for them). Give ports or cidrs, or scope=all to really mean every one')
        if (ports or cidrs) and p.get('scope') == 'all':
            self.fail('scope=all contradicts the ports/cidrs given: drop scope or the filters')
        bpf_loader.require_bpffs()
        bpf_loader.require_bcc()
        sizes = ['-DSOCKMAP_MAX_SOCKETS=%d' % p['max_sockets'], '-DSOCKMAP_MAX_PORTS=%d' % max(64, len(ports)),
                 '-DSOCKMAP_MAX_CIDRS=%d' % max(64, len(cidrs))]
        digest = bpf_loader.source_digest(p['bpf_sources'], sizes)

        if os.path.isdir(self.pins.staging):
            self.changes.append('remove half-pinned staging directory left by an interrupted run')
            if not self.check_mode:
                self.pins.clear_staging()
        fds = self.open_maps() if self.pins.exists() else None
        state = self.read_state(fds) if fds else None
        complete = (fds is not None and all(n in fds for n in NEW_MAPS) and self.pins.has_prog(SOCKOPS)
                    and self.pins.has_prog(SKMSG))
        older = fds is not None and not all(n in fds for n in NEW_MAPS)
        if older:
            self.changes.append('replace pins of an older version (4-tuple keys)')
        elif self.pins.exists() and not complete:
            self.changes.append('replace damaged pins')
        reload = not complete or state['digest'] != digest
        if complete and reload:
            self.changes.append('reload programs (source or sizes changed)')
        elif not complete:
            self.changes.append('load and pin programs in %s' % self.pins.path)
        old_id = self.pins.prog_id(SOCKOPS)
        attached_here = bool(old_id) and old_id in self.attached_ids(cgroup)
        old_cgroup = state['cgroup'] if state else None
        if old_cgroup and old_cgroup != cgroup and old_id in self.attached_ids(old_cgroup):
            self.changes.append('detach sock_ops from %s' % old_cgroup)
        if not attached_here or reload:
            self.changes.append('attach sock_ops to %s' % cgroup)
        filters_before = {'ports': state['ports'], 'cidrs': state['cidrs']} if state else None
        filters_after = {'ports': ports, 'cidrs': cidrs}
        if filters_before != filters_after or reload:
            self.changes.append('filters: ports %s, cidrs %s (new connections; established ones keep their path)'
                                % (ports or 'any', cidrs or 'any'))
        before = dict(state='present', cgroup=old_cgroup, **filters_before) if state else {'state': 'absent'}
        after = dict(state='present', cgroup=cgroup, **filters_after)
        result = dict(changed=bool(self.changes), changes=self.changes, cgroup=cgroup, pin_path=self.pins.path,
                      ports=ports, cidrs=cidrs, diff={'before': before, 'after': after}, drained_seconds=None)
        if self.check_mode or not self.changes:
            if fds:
                result.update(self.report(fds))
                close_all(fds)
            return result

        try:
            if reload:
                if fds:
                    close_all(fds)
                    fds = None
                self.reload(sizes, digest, cgroup, ports, cidrs, old_id, old_cgroup)
            else:
                if filters_before != filters_after:
                    # sockets already in the map stay: removing one could discard bytes already redirected
                    # into it, and a direction that stopped redirecting could not start again in order
                    self.write_filters(fds, ports, cidrs)
                if not attached_here:
                    prog_fd = self.pins.open_prog(SOCKOPS)
                    try:
                        bpf_loader.cgroup_attach(cgroup, prog_fd, bpf_loader.ATTACH_CGROUP_SOCK_OPS)
                    finally:
                        os.close(prog_fd)
                    self.write_meta(fds, state['digest'], cgroup)
                if old_cgroup and old_cgroup != cgroup:
                    self.detach_sockops(old_cgroup, old_id)
        finally:
            if fds:
                close_all(fds)
        result['drained_seconds'] = self.drained_seconds
        fds = self.open_maps()
        try:
            result.update(self.report(fds))
        finally:
            close_all(fds)
        return result

    def reload(self, sizes, digest, cgroup, ports, cidrs, old_id, old_cgroup):
        self.pins.clear_staging()
        if not os.path.isdir(self.pins.root):
            os.mkdir(self.pins.root, 0o700)
        os.mkdir(self.pins.staging, 0o700)
        pin_flag = ['-DSOCKMAP_PIN_DIR="%s"' % self.pins.staging]
        attached = []
        loaded = []
        try:
            # bcc creates and pins the maps (BPF_TABLE_PINNED) when compiling sockops; sockredir opens them
            pinned = dict((n, self.pins.map_path(n, self.pins.staging)) for n in MAPS + NEW_MAPS)
            ops = bpf_loader.load_programs(self.p['bpf_sources'], 'sockops.bpf.c', sizes + pin_flag,
                                           {SOCKOPS: 'sock_ops'}, maps=MAPS + NEW_MAPS, pinned_maps=pinned)
            loaded.append(ops)
            msg = bpf_loader.load_programs(self.p['bpf_sources'], 'sockredir.bpf.c', sizes + pin_flag,
                                           {SKMSG: 'sk_msg'}, pinned_maps=pinned)
            loaded.append(msg)
            self.changes.append('sock_ops program %s; sk_msg program %s' % (ops.note, msg.note))
            ops_fds, msg_fds = ops.prog_fds, msg.prog_fds
            bpf_syscall.obj_pin(ops_fds[SOCKOPS], self.pins.prog_path(SOCKOPS, self.pins.staging))
            bpf_syscall.obj_pin(msg_fds[SKMSG], self.pins.prog_path(SKMSG, self.pins.staging))
            fds = self.open_maps(self.pins.staging)
            if fds is None:
                raise LoaderError('bcc did not pin the maps under %s' % self.pins.staging)
            try:
                self.write_filters(fds, ports, cidrs)
                self.write_meta(fds, digest, cgroup)
                bpf_syscall.prog_attach(fds['sockmap_socks'], msg_fds[SKMSG], bpf_loader.ATTACH_SK_MSG_VERDICT)
                bpf_loader.cgroup_attach(cgroup, ops_fds[SOCKOPS], bpf_loader.ATTACH_CGROUP_SOCK_OPS)
                attached.append((cgroup, ops_fds[SOCKOPS]))
            finally:
                close_all(fds)
            # the old program goes only once the new one is in place: no gap for new connections
            if old_id:
                self.detach_sockops(old_cgroup or cgroup, old_id)
                self.drain(self.pins.path)  # those sockets go back to the normal path
        except Exception:
            for path, fd in attached:
                bpf_loader.cgroup_detach(path, fd, bpf_loader.ATTACH_CGROUP_SOCK_OPS)
            self.pins.clear_staging()
            raise
        finally:
            for programs in loaded:
                programs.close()
        self.pins.commit_staging()

    def write_filters(self, fds, ports, cidrs):
        bpf_syscall.map_clear(fds['sockmap_ports'], 4)
        bpf_syscall.map_clear(fds['sockmap_cidrs'], sk.CIDR_KEY.size)
        for port in ports:
            bpf_syscall.map_update(fds['sockmap_ports'], U32.pack(port), b'\x01')
        for cidr in cidrs:
            bpf_syscall.map_update(fds['sockmap_cidrs'], sk.cidr_key(cidr), b'\x01')
        bpf_syscall.map_update(fds['sockmap_config'], U32.pack(0),
                               sk.CONFIG.pack(1 if ports else 0, 1 if cidrs else 0, 1, 0))

    def check_drain_timeout(self):
        timeout = self.p.get('drain_timeout', 1.0)
        if timeout is None or not 0 <= timeout <= MAX_DRAIN_TIMEOUT:
            self.fail('drain_timeout %s is out of range: use 0-%d seconds' % (timeout, MAX_DRAIN_TIMEOUT))

    def drain(self, base):
        """Take every socket of a deployment out of its SOCKHASH without losing bytes a reader takes
        in time: first stop new redirects (the sk_msg program then sends through TCP, which the peer
        reads after what was already redirected to it), wait drain_timeout for receivers to read
        what was redirected, then empty the map. What a receiver has not read by then is discarded."""
        path = self.pins.map_path('sockmap_config', base)
        if os.path.exists(path):
            fd = bpf_syscall.obj_get(path)
            try:
                info = bpf_syscall.map_info(fd)
                raw = bpf_syscall.map_lookup(fd, U32.pack(0), info['value_size'])
                if info['value_size'] == sk.CONFIG.size and raw:
                    fields = list(sk.CONFIG.unpack(raw))
                    fields[2] = 0
                    bpf_syscall.map_update(fd, U32.pack(0), sk.CONFIG.pack(*fields))
                    timeout = self.p.get('drain_timeout', 1.0)
                    if timeout and self.socket_count(base):
                        time.sleep(timeout)
                        self.drained_seconds = timeout
            finally:
                os.close(fd)
        self.clear_sockets(base)

    def socket_count(self, base):
        path = self.pins.map_path('sockmap_socks', base)
        if not os.path.exists(path):
            return 0
        fd = bpf_syscall.obj_get(path)
        try:
            return len(bpf_syscall.map_keys(fd, bpf_syscall.map_info(fd)['key_size'], limit=1))
        finally:
            os.close(fd)

    def write_meta(self, fds, digest, cgroup):
        bpf_syscall.map_update(fds['sockmap_meta'], U32.pack(0), sk.META.pack(digest, cgroup.encode()[:255]))

    def detach_sockops(self, cgroup, prog_id):
        if not prog_id or prog_id not in self.attached_ids(cgroup):
            return False
        fd = bpf_syscall.prog_fd_by_id(prog_id)
        try:
            bpf_loader.cgroup_detach(cgroup, fd, bpf_loader.ATTACH_CGROUP_SOCK_OPS)
        finally:
            os.close(fd)
        return True

    def report(self, fds):
        ncpus = bpf_syscall.possible_cpus()
        raw_stats = {}
        for i, name in enumerate(sk.COUNTERS):
            raw = bpf_syscall.map_lookup(fds['sockmap_stats'], U32.pack(i), 8 * ncpus)
            raw_stats[name] = sum(U64.unpack_from(raw, 8 * c)[0] for c in range(ncpus)) if raw else 0
        keys = bpf_syscall.map_keys(fds['sockmap_socks'], sk.KEY.size, limit=self.p.get('max_sockets') or 65535)
        return dict(prog_ids={'sock_ops': self.pins.prog_id(SOCKOPS), 'sk_msg': self.pins.prog_id(SKMSG)},
                    sockets=len(keys), socket_sample=[sk.decode_key(k) for k in keys[:20]], counters=raw_stats,
                    sockhash=bpf_syscall.map_info(fds['sockmap_socks']))

    # -- absent --
    def absent(self):
        self.check_drain_timeout()
        fds = self.open_maps() if self.pins.exists() else None
        state = self.read_state(fds) if fds else None
        if fds:
            close_all(fds)
        # where our sock_ops may be attached: the recorded cgroup, and the v2 root (the default)
        cgroups = [c for c in ((state or {}).get('cgroup'), bpf_loader.cgroup2_root()) if c]
        ours = set(i for i in (self.pins.prog_id(SOCKOPS),) if i)
        for cgroup in dict.fromkeys(cgroups):
            for prog_id in self.attached_ids(cgroup):
                if prog_id in ours or (not ours and self.is_orphan(prog_id)):
                    self.changes.append('detach sock_ops program %d from %s' % (prog_id, cgroup))
                    if not self.check_mode:
                        if not self.pins.exists() or not os.path.exists(self.pins.map_path('sockmap_socks')):
                            self.clear_sockhash_of(prog_id)  # pins lost: find the map through the program
                        self.detach_sockops(cgroup, prog_id)
        if self.pins.exists() or os.path.isdir(self.pins.staging):
            self.changes.append('remove pins %s (the SOCKHASH and its sk_msg attachment go with them)'
                                % self.pins.path)
            if not self.check_mode:
                self.drain(self.pins.path)
                self.detach_sk_msg()
                self.pins.remove()
        before = dict(state='present', **state) if state else {'state': 'absent'}
        before.pop('digest', None)
        return dict(changed=bool(self.changes), changes=self.changes, pin_path=self.pins.path,
                    cgroup=(state or {}).get('cgroup'), drained_seconds=self.drained_seconds,
                    diff={'before': before, 'after': {'state': 'absent'}})

    def is_orphan(self, prog_id):
        """A sock_ops program of ours whose pins are gone (a crash): ours by name, pinned nowhere."""
        try:
            fd = bpf_syscall.prog_fd_by_id(prog_id)
        except bpf_syscall.BpfError:
            return False
        try:
            info = bpf_syscall.prog_info(fd)
        finally:
            os.close(fd)
        if info['name'] != SOCKOPS[:15]:
            return False
        for other in bpf_loader.list_deployments():
            if other != self.p['name'] and bpf_loader.PinSet(other).prog_id(SOCKOPS) == prog_id:
                return False
        return True

    def clear_sockets(self, base):
        """Empty a SOCKHASH. Each socket in it holds the sk_msg program, which holds the map: without
        this, unpinning leaves that cycle (and the accelerated sockets) alive."""
        path = self.pins.map_path('sockmap_socks', base)
        if not os.path.exists(path):
            return
        fd = bpf_syscall.obj_get(path)
        try:
            bpf_syscall.map_clear(fd, bpf_syscall.map_info(fd)['key_size'])
        finally:
            os.close(fd)

    def clear_sockhash_of(self, prog_id):
        fd = bpf_syscall.prog_fd_by_id(prog_id)
        try:
            map_ids = bpf_syscall.prog_map_ids(fd)
        finally:
            os.close(fd)
        for map_id in map_ids:
            mfd = bpf_syscall.map_fd_by_id(map_id)
            try:
                if bpf_syscall.map_info(mfd)['name'] == 'sockmap_socks':
                    bpf_syscall.map_clear(mfd, bpf_syscall.map_info(mfd)['key_size'])
            finally:
                os.close(mfd)

    def detach_sk_msg(self):
        if not (self.pins.has_prog(SKMSG) and os.path.exists(self.pins.map_path('sockmap_socks'))):
            return
        prog_fd = self.pins.open_prog(SKMSG)
        map_fd = self.pins.open_map('sockmap_socks')
        try:
            bpf_syscall.prog_detach(map_fd, prog_fd, bpf_loader.ATTACH_SK_MSG_VERDICT)
        except bpf_syscall.BpfError:
            pass  # not attached: nothing to undo
        finally:
            os.close(prog_fd)
            os.close(map_fd)


def close_all(fds):
    for fd in fds.values():
        os.close(fd)
    fds.clear()
