# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The continuous drop counter: pinned once, idempotent, counts a drop in our namespace by reason,
location, namespace and interface, renders Prometheus lines, leaves nothing after absent."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

import pytest

from conftest import read_sources, run_module
from test_skb_drop_trace import del_netns, sh, udp_sender

NAME = 'dt_monitor'
PIN = '/sys/fs/bpf/ebpf_networking/' + NAME
NS = 'dt-mon'
SOURCES = ('drop_monitor.bpf.c', 'drop_monitor.h', 'kernel_layout.h')


def monitor(check_mode=False, **args):
    args.setdefault('name', NAME)
    if args.get('state', 'present') == 'present':
        args.setdefault('bpf_sources', read_sources(SOURCES))
    return run_module('drop_monitor', args, check_mode=check_mode)


@pytest.fixture
def clean_monitor(require_root):
    del_netns(NS)
    monitor(state='absent')
    try:
        sh('ip', 'netns', 'add', NS)
        sh('ip', '-n', NS, 'link', 'set', 'lo', 'up')
        yield
    finally:
        monitor(state='absent')
        del_netns(NS)


def test_counts_drops_continuously_and_renders_metrics(clean_monitor):
    checked = monitor(check_mode=True)
    assert checked['changed'] is True and checked['running'] is False and not os.path.exists(PIN)
    first = monitor(prometheus=True)
    assert not first.get('failed'), first.get('msg')
    assert first['changed'] is True and first['running'] is True and first['prog_id']
    again = monitor()
    assert again['changed'] is False and again['prog_id'] == first['prog_id']
    # the module process is gone: the pinned link keeps counting
    sh(*udp_sender(NS, '127.0.0.1', 9, 5))
    time.sleep(0.5)
    read = monitor(state='read', prometheus=True, max_counts=100000)
    assert read['changed'] is False
    ours = [r for r in read['counts'] if r['netns'] == 'netns:' + NS and r['reason'] == 'NO_SOCKET']
    assert ours and sum(r['count'] for r in ours) >= 5, read['counts'][:10]
    assert ours[0]['interface'] == 'lo' and ours[0]['location'].startswith('__udp4_lib_rcv')
    line = [x for x in read['prometheus'] if 'netns="netns:%s"' % NS in x and 'NO_SOCKET' in x]
    assert line and line[0].startswith('ebpf_networking_drops_total{reason="NO_SOCKET",location="__udp4_lib_rcv')
    assert read['overflow'] == 0
    gone = monitor(state='absent')
    assert gone['changed'] is True and gone['running'] is False and not os.path.exists(PIN)
    assert monitor(state='absent')['changed'] is False


@pytest.mark.parametrize('args,message', [({'name': 'Bad Name'}, 'is invalid'), ({'max_counts': 0}, 'out of range'),
                                          ({'state': 'on'}, 'value of state must be one of'),
                                          ({'bpf_sources': {}}, 'action plugin')])
def test_bad_input_is_named(require_root, args, message):
    result = monitor(**args)
    assert result.get('failed') and message in result['msg'], result
    assert 'exception' not in result and not os.path.exists(PIN)
