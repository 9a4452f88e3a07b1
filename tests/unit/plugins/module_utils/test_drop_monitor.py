# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.module_utils import drop_monitor


def rows():
    key = (0xffffffff81000010, 3, 4026531840, 1, b'lo' + b'\0' * 14, 0)
    other = (0xffffffff81000020, 12, 7, 0, b'\0' * 16, 0)
    return [(other, 2), (key, 5)]


def describe():
    return drop_monitor.describe_counts(rows(), {3: 'NO_SOCKET', 12: 'NETFILTER_DROP'}, lambda a: 'f+0x%x' % (a & 0xff),
                                        lambda ino: 'host' if ino == 4026531840 else 'netns:%d' % ino)


def test_key_layout_matches_the_c_header():
    assert drop_monitor.KEY.size == 40  # struct drop_count_key


def test_counts_are_named_and_sorted():
    counts = describe()
    assert counts[0] == {'reason': 'NO_SOCKET', 'reason_code': 3, 'location': 'f+0x10', 'netns': 'host',
                         'netns_inode': 4026531840, 'interface': 'lo', 'ifindex': 1, 'count': 5}
    assert counts[1]['interface'] is None and counts[1]['netns'] == 'netns:7'


def test_prometheus_lines():
    lines = drop_monitor.prometheus_lines({'counts': describe(), 'overflow': 1})
    assert lines[1] == '# TYPE ebpf_networking_drops_total counter'
    assert lines[2] == 'ebpf_networking_drops_total{reason="NO_SOCKET",location="f+0x10",netns="host",interface="lo"} 5'
    assert lines[3].endswith('interface=""} 2')
    assert lines[-1] == 'ebpf_networking_drops_uncounted_total 1'


def test_label_values_are_escaped():
    r = dict(describe()[0], netns='container:"x"\\y')
    line = drop_monitor.prometheus_lines({'counts': [r]})[2]
    assert 'netns="container:\\"x\\"\\\\y"' in line


def test_status_of_nothing_pinned(tmp_path):
    st = drop_monitor.status(str(tmp_path / 'none'))
    assert st['running'] is False and len(st['missing']) == 4 and st['prog_id'] is None
