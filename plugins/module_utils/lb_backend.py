# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backend of an xdp_proxy dsr or ipip service, configured: the VIPs on loopback, ARP kept off
them, and for ipip the decapsulation and reverse-path filter.

What a run adds is recorded in a file (STATE_DIR/xdp_lb_backend/<name>.json), so state=absent removes
exactly that: addresses that were there before stay, and sysctls go back to the values they had, unless
someone changed them since. The host agent restores a backend with this class, from the parameters the
module saved under STATE_DIR/lb_backend/ (persistent: true). No import from `ansible.`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_loader, deploy_run
from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError
from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps import ConfigError, usable_ip

DEFAULTS = {'name': 'xdp_lb_backend', 'state': 'present', 'vips': None, 'forwarding': 'dsr', 'interface': 'eth0',
            'container': None, 'netns': None, 'decap': 'auto', 'ipip_device': 'ipip0'}
RECORD_DIR = 'xdp_lb_backend'
# the VIP is on lo: never answer ARP for it (1: only for addresses of the asking interface) and never
# use it as the source of our own ARP requests (2: the best local address for the target)
ARP_SYSCTLS = (('arp_ignore', '1'), ('arp_announce', '2'))
LOOSE_RP_FILTER = '2'


BackendError = DeployError  # the name the lb_backend module and its tests know it by


def record_path(name):
    bpf_loader.validate_name(name)
    return os.path.join(agent_state.STATE_DIR, RECORD_DIR, name + '.json')


def normalize_vips(vips):
    if not isinstance(vips, list) or not vips:
        raise ConfigError('vips must be a non-empty list of the VIPs this backend serves, got %r' % (vips,))
    for n, vip in enumerate(vips):
        usable_ip(vip, 'vips[%d]' % n)
    return sorted(set(vips), key=lambda ip: tuple(int(o) for o in ip.split('.')))


def recorded_vips(record):
    """The VIPs a record says we added, each once (the first version could list one twice)."""
    vips = []
    for vip in record.get('vips_added') or []:
        if vip not in vips:
            vips.append(vip)
    return vips


def sysctl_path(conf, key):
    return '/proc/sys/net/ipv4/conf/%s/%s' % (conf, key)


def read_sysctl(conf, key):
    with open(sysctl_path(conf, key)) as f:
        return f.read().strip()


def write_sysctl(conf, key, value):
    with open(sysctl_path(conf, key), 'w') as f:
        f.write(value)


def _ip(*args):
    proc = subprocess.run(['ip'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def lo_addresses():
    rc, out, err = _ip('-4', '-o', 'addr', 'show', 'dev', 'lo')
    if rc != 0:
        raise LoaderError('ip addr show dev lo failed: %s' % err.strip())
    return set(line.split()[3] for line in out.splitlines() if len(line.split()) > 3)


class LbBackend(object):
    """Make one backend match params (see plugins/modules/lb_backend.py)."""

    def __init__(self, params, run_command=None, check_mode=False):
        self.p = dict(DEFAULTS, **dict((k, v) for k, v in params.items() if v is not None))
        self.run_command = run_command
        self.check_mode = check_mode
        self.changes = []

    def fail(self, msg, **kw):
        raise BackendError(msg, changes=self.changes, **kw)

    def run(self):
        """Apply the desired state; returns the result dict. Raises BackendError with the user's message."""
        return deploy_run.reported(self._apply, self.fail, (LoaderError, ConfigError, agent_state.StateError),
                                   os_error_note='nothing more was changed; rerun after fixing it')

    def _apply(self):
        path = record_path(self.p['name'])
        record = agent_state.read_json(path) if os.path.exists(path) else None
        if record is not None and not isinstance(record, dict):
            record = None
        if self.p['state'] == 'present':
            return self.present(path, record or {})
        return self.absent(path, record)

    def _netns(self):
        return bpf_loader.resolve_netns(self.p['container'], self.p['netns'], self.run_command)

    def present(self, path, record):
        p = self.p
        if p['forwarding'] not in ('dsr', 'ipip'):
            self.fail('forwarding %r: use dsr or ipip (nat backends need no configuration)' % (p['forwarding'],))
        if p['decap'] not in ('auto', 'device', 'xdp'):
            self.fail('decap %r: use auto, device or xdp' % (p['decap'],))
        vips = normalize_vips(p['vips'])
        netns_path, label = self._netns()
        if record.get('netns') not in (None, label):
            self.fail('this backend configuration (%s) was applied in %s: remove it there first (state: absent) '
                      'or use another name' % (p['name'], record['netns']))
        # what this run adds is recorded even when a later step fails, so absent can still undo it
        state = {'netns': label, 'vips_added': recorded_vips(record),
                 'sysctls': dict(record.get('sysctls', {})), 'decap': record.get('decap'),
                 'ipip_device': record.get('ipip_device'), 'ipip_device_added': bool(record.get('ipip_device_added')),
                 'forwarding': p['forwarding']}
        try:
            self._configure(netns_path, label, vips, state)
        finally:
            state['vips_added'] = sorted(state['vips_added'])
            # written on a first run too, even one that found everything in place: the decision of decap auto
            # is kept there, so a check-mode run (the host agent's check) need not probe again
            if not self.check_mode and (self.changes or state != record):
                agent_state.write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + '\n')
        return dict(changed=bool(self.changes), changes=self.changes, vips=vips,
                    decap=state['decap'] if p['forwarding'] == 'ipip' else None, record=path, netns=label)

    def _configure(self, netns_path, label, vips, state):
        p = self.p
        added_vips = state['vips_added']
        saved = state['sysctls']
        with bpf_loader.in_netns(netns_path):
            if bpf_loader.link_info(p['interface']) is None:
                self.fail('interface %s does not exist in %s (it has: %s)'
                          % (p['interface'], label, ', '.join(bpf_loader.link_names())))
            # ARP sysctls first: a VIP on lo with arp_ignore/arp_announce still 0 answers ARP for the VIP and may
            # ARP from it, and a router that learns this backend's MAC for the VIP bypasses the LB
            for conf in ('all', p['interface']):
                for key, value in ARP_SYSCTLS:
                    self._set_sysctl(saved, conf, key, value)
            have = lo_addresses()
            for vip in vips:
                if vip + '/32' not in have:
                    self.changes.append('add %s/32 to lo' % vip)
                    if not self.check_mode:
                        self._ip_or_fail('addr', 'add', vip + '/32', 'dev', 'lo')
                        if vip not in added_vips:  # added by us before, then lost: recorded already
                            added_vips.append(vip)
            for vip in [v for v in added_vips if v not in vips]:
                self.changes.append('remove %s/32 from lo (no longer a VIP here)' % vip)
                if not self.check_mode:
                    if vip + '/32' in have:
                        self._ip_or_fail('addr', 'del', vip + '/32', 'dev', 'lo')
                    added_vips.remove(vip)
            wanted = [(conf, key, value) for conf in ('all', p['interface']) for key, value in ARP_SYSCTLS]
            # the configuration asked for now wins over what an earlier run recorded (decap, forwarding, device)
            state['decap'] = self._decap_kind(state) if p['forwarding'] == 'ipip' else None
            device = p['ipip_device'] if state['decap'] == 'device' else None
            if state['ipip_device_added'] and state['ipip_device'] != device:
                if bpf_loader.link_info(state['ipip_device']):
                    self.changes.append('remove ipip device %s (no longer used)' % state['ipip_device'])
                    if not self.check_mode:
                        self._ip_or_fail('link', 'del', state['ipip_device'])
                if not self.check_mode:
                    state['ipip_device'], state['ipip_device_added'] = None, False
            if device:
                if not bpf_loader.link_info(device):
                    self.changes.append('add ipip device %s (external: any remote)' % device)
                    if not self.check_mode:
                        self._ip_or_fail('link', 'add', device, 'type', 'ipip', 'external')
                        state['ipip_device'], state['ipip_device_added'] = device, True
                        self._ip_or_fail('link', 'set', device, 'up')
                # decapsulated packets arrive on the ipip device, the route back to the client leaves
                # elsewhere: strict reverse-path filtering would drop them
                wanted.append((device, 'rp_filter', LOOSE_RP_FILTER))
                strict = read_sysctl('all', 'rp_filter')
                if strict == '1' or saved.get('all/rp_filter', {}).get('set') == strict:  # strict, or loose by us
                    wanted.append(('all', 'rp_filter', LOOSE_RP_FILTER))
            unwanted = set(saved) - set('%s/%s' % (conf, key) for conf, key, _value in wanted)
            for where in sorted(unwanted):  # e.g. ipip -> dsr, or another interface
                self._restore(where, saved[where], ', no longer needed')
                if not self.check_mode:
                    del saved[where]
            for conf, key, value in wanted:
                if self.check_mode and not os.path.exists(sysctl_path(conf, key)):
                    continue  # the ipip device does not exist yet
                self._set_sysctl(saved, conf, key, value)

    def _set_sysctl(self, saved, conf, key, value):
        """Set one sysctl, recording the value it had the first time we changed it (absent puts that back)."""
        old = read_sysctl(conf, key)
        change = 'set net.ipv4.conf.%s.%s = %s (was %s)' % (conf, key, value, old)
        if old != value and change not in self.changes:  # check mode meets the ARP sysctls twice
            self.changes.append(change)
            if not self.check_mode:
                write_sysctl(conf, key, value)
                saved.setdefault('%s/%s' % (conf, key), {'old': old, 'set': value})

    def _restore(self, where, entry, why=''):
        """Put back a sysctl we set, unless someone changed it since (or its device is gone)."""
        conf, key = where.split('/')
        if os.path.exists(sysctl_path(conf, key)) and read_sysctl(conf, key) == entry['set']:
            self.changes.append('set net.ipv4.conf.%s.%s = %s (as before%s)' % (conf, key, entry['old'], why))
            if not self.check_mode:
                write_sysctl(conf, key, entry['old'])

    def _decap_kind(self, state):
        """Who decapsulates IPIP: an ipip device where the kernel has one, else XDP (the xdp_decap module)."""
        if self.p['decap'] != 'auto':
            return self.p['decap']
        info = bpf_loader.link_info(self.p['ipip_device'])
        if info and info.get('kind') == 'ipip':
            return 'device'  # the kernel makes ipip devices
        if self.check_mode:
            # probing means creating a device: decide from what an earlier run found, else only say so
            if state.get('decap') == 'xdp':  # still the recorded value here
                return 'xdp'
            self.changes.append('would probe whether the kernel has ipip devices (decap: auto)')
            return None
        probe = 'ebnprobe%d' % (os.getpid() % 10000)
        rc, _out, _err = _ip('link', 'add', probe, 'type', 'ipip', 'external')
        if rc == 0:
            _ip('link', 'del', probe)
            return 'device'
        return 'xdp'

    def _ip_or_fail(self, *args):
        rc, _out, err = _ip(*args)
        if rc != 0:
            self.fail('ip %s failed: %s' % (' '.join(args), err.strip()))

    def absent(self, path, record):
        if record is None:
            return dict(changed=False, changes=[], record=path)
        try:
            netns_path, label = bpf_loader.resolve_netns(*self._place(record['netns']), run_command=self.run_command)
        except LoaderError:
            netns_path = label = None  # the namespace is gone, and what was added with it
        if label is not None:
            with bpf_loader.in_netns(netns_path):
                for vip in recorded_vips(record):
                    if vip + '/32' in lo_addresses():  # read again: someone may have removed it meanwhile
                        self.changes.append('remove %s/32 from lo' % vip)
                        if not self.check_mode:
                            self._ip_or_fail('addr', 'del', vip + '/32', 'dev', 'lo')
                for where, entry in sorted(record.get('sysctls', {}).items()):
                    self._restore(where, entry)
                device = record.get('ipip_device')
                if record.get('ipip_device_added') and device and bpf_loader.link_info(device):
                    self.changes.append('remove ipip device %s' % device)
                    if not self.check_mode:
                        self._ip_or_fail('link', 'del', device)
        self.changes.append('forget %s' % path)
        if not self.check_mode:
            os.unlink(path)
        return dict(changed=True, changes=self.changes, record=path)

    @staticmethod
    def _place(label):
        """(container, netns) from a label resolve_netns gave."""
        if label.startswith('container:'):
            return label.split(':', 1)[1], None
        if label.startswith('netns:'):
            return None, label.split(':', 1)[1]
        return None, None
