# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import lb_backend as b


def test_vips_are_checked_and_sorted():
    assert b.normalize_vips(['10.0.0.20', '10.0.0.3', '10.0.0.20']) == ['10.0.0.3', '10.0.0.20']


@pytest.mark.parametrize('vips,message', [
    (None, 'non-empty list'), ([], 'non-empty list'), ('10.0.0.1', 'non-empty list'),
    (['10.0.0.1', '127.0.0.1'], r'vips\[1\] 127.0.0.1 is a loopback'), (['x'], 'not an IPv4 address'),
])
def test_bad_vips_are_named(vips, message):
    with pytest.raises(b.ConfigError, match=message):
        b.normalize_vips(vips)


@pytest.mark.parametrize('params,message', [
    ({'name': 'Bad Name'}, "name 'Bad Name' is invalid"),
    ({'name': 'ok', 'forwarding': 'nat', 'vips': ['10.0.0.1']}, "forwarding 'nat': use dsr or ipip"),
    ({'name': 'ok', 'decap': 'gre', 'vips': ['10.0.0.1']}, "decap 'gre': use auto, device or xdp"),
])
def test_bad_input_is_a_backend_error_not_a_traceback(tmp_path, monkeypatch, params, message):
    monkeypatch.setattr(b.agent_state, 'STATE_DIR', str(tmp_path))
    with pytest.raises(b.BackendError, match=message) as err:
        b.LbBackend(params).run()
    assert 'exception' not in err.value.extra
    assert not os.listdir(str(tmp_path)), 'nothing recorded for a refused input'


def test_absent_without_a_record_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(b.agent_state, 'STATE_DIR', str(tmp_path))
    assert b.LbBackend({'name': 'never', 'state': 'absent'}).run()['changed'] is False


class FakeHost(object):
    """`ip`, interfaces and /proc/sys/net/ipv4/conf of one namespace, in memory and a tmp dir."""

    def __init__(self, tmp_path, ipip=True):
        self.sys = tmp_path / 'sys'
        self.lo = set()
        self.links = {'lo': 'loopback', 'eth0': 'veth'}
        self.ipip = ipip  # the kernel can make ipip devices
        self.calls = []
        for conf in ('all', 'eth0'):
            self._conf(conf)
        (self.sys / 'all' / 'rp_filter').write_text(u'1')

    def _conf(self, conf):
        d = self.sys / conf
        d.mkdir(parents=True)
        for key in ('arp_ignore', 'arp_announce', 'rp_filter'):
            (d / key).write_text(u'0')

    def sysctl(self, conf, key):
        return (self.sys / conf / key).read_text().strip()

    def ip(self, *args):
        self.calls.append(args)
        args = list(args)
        if args[:3] == ['-4', '-o', 'addr']:
            return 0, ''.join('1: lo    inet %s scope host lo\n' % a for a in sorted(self.lo)), ''
        if args[:2] == ['addr', 'add']:
            if args[2] in self.lo:
                return 2, '', 'RTNETLINK answers: File exists\n'
            self.lo.add(args[2])
            return 0, '', ''
        if args[:2] == ['addr', 'del']:
            if args[2] not in self.lo:
                return 2, '', 'RTNETLINK answers: Cannot assign requested address\n'
            self.lo.remove(args[2])
            return 0, '', ''
        if args[:2] == ['link', 'add']:
            if not self.ipip:
                return 2, '', 'Error: Unknown device type.\n'
            if args[2] in self.links:
                return 2, '', 'RTNETLINK answers: File exists\n'
            self.links[args[2]] = 'ipip'
            self._conf(args[2])
            return 0, '', ''
        if args[:2] == ['link', 'set']:
            return (0, '', '') if args[2] in self.links else (1, '', 'Cannot find device\n')
        if args[:2] == ['link', 'del']:
            if args[2] not in self.links:
                return 1, '', 'Cannot find device "%s"\n' % args[2]
            del self.links[args[2]]
            import shutil
            shutil.rmtree(str(self.sys / args[2]))
            return 0, '', ''
        raise AssertionError('unexpected ip %s' % ' '.join(args))

    def link_info(self, name):
        return {'ifname': name, 'kind': self.links[name]} if name in self.links else None


@pytest.fixture
def host(tmp_path, monkeypatch):
    fake = FakeHost(tmp_path)
    monkeypatch.setattr(b.agent_state, 'STATE_DIR', str(tmp_path / 'state'))
    monkeypatch.setattr(b, '_ip', fake.ip)
    monkeypatch.setattr(b, 'sysctl_path', lambda conf, key: str(fake.sys / conf / key))
    monkeypatch.setattr(b.bpf_loader, 'link_info', fake.link_info)
    monkeypatch.setattr(b.bpf_loader, 'link_names', lambda: sorted(fake.links))
    return fake


def backend(state='present', check_mode=False, **params):
    return b.LbBackend(dict(dict(name='qf', vips=['10.0.0.10']) if state == 'present' else dict(name='qf'),
                            state=state, **params), check_mode=check_mode).run()


def record_of(name='qf'):
    return b.agent_state.read_json(b.record_path(name))


def test_present_twice_is_idempotent_and_absent_restores(host):
    assert backend()['changed'] is True
    assert host.lo == {'10.0.0.10/32'} and host.sysctl('eth0', 'arp_ignore') == '1'
    assert backend()['changed'] is False
    assert backend('absent')['changed'] is True
    assert host.lo == set() and host.sysctl('eth0', 'arp_ignore') == '0' and host.sysctl('all', 'arp_announce') == '0'
    assert not os.path.exists(b.record_path('qf'))


def test_arp_sysctls_are_set_before_a_vip_goes_on_lo(host):
    """With arp_ignore/arp_announce still 0 a backend holding the VIP answers ARP for it, and may ARP with the
    VIP as its source: a router that learns the backend's MAC for the VIP bypasses the LB. After a reboot the
    host agent runs this on default sysctls, so the order matters every time, not just on the first run."""
    seen = []
    add = host.ip

    def ip(*args):
        if list(args[:2]) == ['addr', 'add']:
            seen.append((args[2], host.sysctl('all', 'arp_ignore'), host.sysctl('eth0', 'arp_ignore'),
                         host.sysctl('all', 'arp_announce'), host.sysctl('eth0', 'arp_announce')))
        return add(*args)
    b._ip = ip
    backend(vips=['10.0.0.10', '10.0.0.11'])
    assert seen == [('10.0.0.10/32', '1', '1', '2', '2'), ('10.0.0.11/32', '1', '1', '2', '2')], seen


def test_check_mode_reports_each_change_once_and_changes_nothing(host):
    changes = backend(check_mode=True)['changes']
    assert len(changes) == len(set(changes)) == 5, changes  # 4 ARP sysctls, 1 VIP
    assert host.lo == set() and host.sysctl('eth0', 'arp_ignore') == '0'


def test_a_vip_lost_and_readded_is_recorded_once_and_absent_completes(host):
    backend()
    host.lo.clear()  # e.g. `ip addr flush dev lo`, or a restart of networking
    assert backend()['changed'] is True
    assert host.lo == {'10.0.0.10/32'}
    assert record_of()['vips_added'] == ['10.0.0.10']
    backend('absent')
    assert host.lo == set() and host.sysctl('eth0', 'arp_ignore') == '0'
    assert not os.path.exists(b.record_path('qf'))


def test_absent_completes_with_a_duplicate_record_of_older_versions(host):
    backend()
    record = record_of()
    record['vips_added'] = ['10.0.0.10', '10.0.0.10']
    b.agent_state.write_atomic(b.record_path('qf'), b.json.dumps(record))
    assert backend('absent')['changed'] is True
    assert host.lo == set() and host.sysctl('eth0', 'arp_ignore') == '0'
    assert not os.path.exists(b.record_path('qf'))


def test_absent_tolerates_a_vip_removed_by_someone_else(host):
    backend()
    host.lo.clear()
    assert backend('absent')['changed'] is True
    assert host.sysctl('eth0', 'arp_ignore') == '0' and not os.path.exists(b.record_path('qf'))


def test_decap_xdp_then_device_switches_and_reports_it(host):
    assert backend(forwarding='ipip', decap='xdp')['decap'] == 'xdp'
    assert 'ipip0' not in host.links
    result = backend(forwarding='ipip', decap='device')
    assert result['changed'] is True and result['decap'] == 'device'
    assert host.links.get('ipip0') == 'ipip' and host.sysctl('ipip0', 'rp_filter') == '2'
    assert record_of()['decap'] == 'device'
    backend('absent')
    assert 'ipip0' not in host.links and host.sysctl('all', 'rp_filter') == '1'


def test_decap_device_then_xdp_removes_the_device_and_loose_rp_filter(host):
    backend(forwarding='ipip', decap='device')
    assert host.sysctl('all', 'rp_filter') == '2'
    result = backend(forwarding='ipip', decap='xdp')
    assert result['changed'] is True and result['decap'] == 'xdp'
    assert 'ipip0' not in host.links and host.sysctl('all', 'rp_filter') == '1'
    assert record_of()['decap'] == 'xdp' and not record_of()['ipip_device_added']
    assert backend(forwarding='ipip', decap='xdp')['changed'] is False


def test_ipip_then_dsr_removes_the_ipip_device_and_loose_rp_filter(host):
    backend(forwarding='ipip', decap='auto')
    assert host.links.get('ipip0') == 'ipip'
    result = backend(forwarding='dsr')
    assert result['changed'] is True and result['decap'] is None
    assert 'ipip0' not in host.links and host.sysctl('all', 'rp_filter') == '1'
    assert host.sysctl('eth0', 'arp_ignore') == '1', 'what dsr needs stays'
    assert set(record_of()['sysctls']) == {'all/arp_ignore', 'all/arp_announce', 'eth0/arp_ignore',
                                           'eth0/arp_announce'}
    assert backend(forwarding='dsr')['changed'] is False
    backend('absent')
    assert host.sysctl('eth0', 'arp_ignore') == '0' and host.sysctl('all', 'rp_filter') == '1'


def test_ipip_is_idempotent_with_loose_rp_filter_kept(host):
    backend(forwarding='ipip', decap='device')
    assert backend(forwarding='ipip', decap='device')['changed'] is False
    assert host.sysctl('all', 'rp_filter') == '2'


def test_a_renamed_ipip_device_replaces_the_one_we_added(host):
    backend(forwarding='ipip', decap='device')
    backend(forwarding='ipip', decap='device', ipip_device='qfipip1')
    assert 'ipip0' not in host.links and host.links.get('qfipip1') == 'ipip'
    backend('absent')
    assert 'qfipip1' not in host.links and host.sysctl('all', 'rp_filter') == '1'


def test_an_interface_change_restores_the_old_interfaces_arp_sysctls(host):
    host.links['eth1'] = 'veth'
    host._conf('eth1')
    backend()
    backend(interface='eth1')
    assert host.sysctl('eth0', 'arp_ignore') == '0' and host.sysctl('eth1', 'arp_ignore') == '1'


@pytest.mark.parametrize('ipip', [True, False])
def test_check_mode_with_decap_auto_creates_nothing(host, ipip):
    host.ipip = ipip
    result = backend(forwarding='ipip', decap='auto', check_mode=True)
    assert result['changed'] is True
    assert [c for c in host.calls if c[0] not in ('-4',)] == [], 'check mode ran %r' % host.calls
    assert not os.path.exists(b.record_path('qf'))


def test_check_mode_with_decap_auto_decides_from_an_existing_ipip_device(host):
    backend(forwarding='ipip', decap='auto')
    del host.calls[:]
    result = backend(forwarding='ipip', decap='auto', check_mode=True)
    assert result['changed'] is False and result['decap'] == 'device'
    assert [c for c in host.calls if c[0] not in ('-4',)] == []


def test_decap_auto_falls_back_to_xdp_without_ipip_devices(host):
    host.ipip = False
    assert backend(forwarding='ipip', decap='auto')['decap'] == 'xdp'
    assert 'ipip0' not in host.links


def test_check_mode_with_decap_auto_keeps_an_earlier_xdp_decision(host):
    host.ipip = False
    backend(forwarding='ipip', decap='auto')
    del host.calls[:]
    result = backend(forwarding='ipip', decap='auto', check_mode=True)
    assert result['changed'] is False and result['decap'] == 'xdp'
    assert [c for c in host.calls if c[0] not in ('-4',)] == []


def test_an_rp_filter_changed_by_the_admin_is_left_alone(host):
    backend(forwarding='ipip', decap='device')
    (host.sys / 'all' / 'rp_filter').write_text(u'0')
    assert backend(forwarding='ipip', decap='device')['changed'] is False
    assert host.sysctl('all', 'rp_filter') == '0' and 'all/rp_filter' not in record_of()['sysctls']
    backend('absent')
    assert host.sysctl('all', 'rp_filter') == '0'
