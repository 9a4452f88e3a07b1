# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.ebpf.networking.plugins.module_utils import drop_trace, xdp_drops
from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_maps as m


def raw(kind=1, action=0, err=0):
    return xdp_drops.EVENT_HEAD.pack(5, kind, 42, action, err, b'dt_abort') + drop_trace.WHERE.pack(7, 3, b'veth0', 1,
                                                                                                    3, 0, 0)


def test_layout_matches_the_c_header():
    assert xdp_drops.event_size() == 68  # struct xdp_drop_event before its tail padding (sizeof 72)


def test_exception_is_named_with_program_and_interface():
    ev = xdp_drops.decode_event(raw())
    assert (ev['event'], ev['action'], ev['prog_id'], ev['prog_name']) == ('xdp_exception', 'XDP_ABORTED', 42,
                                                                           'dt_abort')
    assert (ev['ifname'], ev['ifindex'], ev['netns_inode']) == ('veth0', 3, 7)
    assert ev['reason'] == 'XDP_EXCEPTION' and 'dt_abort' in ev['location'] and ev['process'] is None
    assert xdp_drops.decode_event(raw(action=9))['action'] == 'invalid action 9'


def test_failed_redirect_carries_the_error():
    ev = xdp_drops.decode_event(raw(kind=2, action=4, err=-6))
    assert ev['event'] == 'xdp_redirect_err' and ev['error'] == -6 and ev['errno']


class FakeMaps(object):
    GLOBAL_COUNTERS = ('passed', 'no_backend', 'no_neighbour')

    class META(object):
        size = 192

    class Limits(object):
        pass

    class LbMaps(object):
        def __init__(self, fds, limits):
            self.fds = fds

        def global_counters(self):
            return {'passed': 10, 'no_backend': 3, 'no_neighbour': 1}

        def read_meta(self):
            return {'ifname': 'eth0', 'netns': 'container:lb'}


def test_lb_counters_are_read_and_missing_maps_tolerated(tmp_path, monkeypatch):
    (tmp_path / 'lb1').mkdir()
    (tmp_path / 'lb1' / 'map_lb_global').write_text('')
    (tmp_path / 'lb1' / 'map_lb_meta').write_text('')
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'map_lb_global').write_text('')
    (tmp_path / 'sockmap').mkdir()  # not a load balancer: skipped

    opened = {}

    def obj_get(path):
        if 'broken' in path:
            raise OSError(2, 'No such file')
        fd = os.open(path, os.O_RDONLY)
        opened[fd] = path
        return fd
    monkeypatch.setattr(xdp_drops.bpf_syscall, 'obj_get', obj_get)
    monkeypatch.setattr(xdp_drops.bpf_syscall, 'map_info', lambda fd: {
        'value_size': 192 if opened[fd].endswith('meta') else 8, 'max_entries': 6})
    got = xdp_drops.lb_drop_counters(str(tmp_path), maps_module=FakeMaps)
    assert got['lb1'] == {'counters': {'passed': 10, 'no_backend': 3, 'no_neighbour': 1}, 'ifname': 'eth0',
                          'netns': 'container:lb'}
    assert 'cannot read the counters of broken' in got['broken']['error']
    assert 'sockmap' not in got
    assert xdp_drops.lb_drop_counters(str(tmp_path / 'absent'), maps_module=FakeMaps) == {}


def test_lb_counters_of_another_layout_are_not_read(tmp_path, monkeypatch):
    (tmp_path / 'lb2').mkdir()
    (tmp_path / 'lb2' / 'map_lb_global').write_text('')
    monkeypatch.setattr(xdp_drops.bpf_syscall, 'obj_get', lambda path: os.open(path, os.O_RDONLY))
    monkeypatch.setattr(xdp_drops.bpf_syscall, 'map_info', lambda fd: {'value_size': 48, 'max_entries': 6})
    got = xdp_drops.lb_drop_counters(str(tmp_path), maps_module=FakeMaps)
    assert 'another datapath version' in got['lb2']['error']


def test_lb_counters_of_a_version_with_fewer_counters_are_read(tmp_path, monkeypatch):
    """Pins of the version before a counter was added (lb_global has fewer entries): still our layout."""
    (tmp_path / 'lb3').mkdir()
    (tmp_path / 'lb3' / 'map_lb_global').write_text('')
    monkeypatch.setattr(xdp_drops.bpf_syscall, 'obj_get', lambda path: os.open(path, os.O_RDONLY))
    monkeypatch.setattr(xdp_drops.bpf_syscall, 'map_info', lambda fd: {
        'value_size': 8, 'max_entries': len(FakeMaps.GLOBAL_COUNTERS) - 1})
    got = xdp_drops.lb_drop_counters(str(tmp_path), maps_module=FakeMaps)
    assert 'error' not in got['lb3'] and 'counters' in got['lb3']


def test_lb_delta_counts_drops_not_passes():
    before = {'lb1': {'counters': {'passed': 10, 'no_backend': 3}}}
    after = {'lb1': {'counters': {'passed': 15, 'no_backend': 7}, 'ifname': 'eth0'}, 'x': {'error': 'gone'}}
    delta = xdp_drops.lb_counter_delta(before, after)
    assert delta['lb1']['during_trace'] == {'passed': 5, 'no_backend': 4}
    assert delta['lb1']['drops_during_trace'] == 4 and delta['x'] == {'error': 'gone'}


def test_lb_delta_sums_only_counters_of_dropped_packets():
    """An answered too-big packet counts in encap_too_big_dropped and icmp_too_big_sent: one drop, not two;
    reclaims, scans, moves and translations are events, not drops."""
    events = dict((k, 3) for k in xdp_drops.NOT_DROP_COUNTERS)
    after = {'lb1': {'counters': dict(events, encap_too_big_dropped=5, flows_lost=1)}}
    delta = xdp_drops.lb_counter_delta({}, after)
    assert delta['lb1']['drops_during_trace'] == 6
    assert set(xdp_drops.NOT_DROP_COUNTERS) < set(m.GLOBAL_COUNTERS), 'every name is a real counter'
