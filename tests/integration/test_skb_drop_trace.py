# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""skb_drop_trace against drops we cause in a namespace of our own (no docker)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess

import pytest

from conftest import read_sources, run_module

NS = 'ebn-drop'
TARGET = '10.204.0.2'
SOURCES = ('skb_drop.bpf.c', 'skb_drop.h')
CURL = ['ip', 'netns', 'exec', NS, 'curl', '-s', '-m', '2', 'http://%s:8080/' % TARGET]


def sh(*cmd):
    return subprocess.run(list(cmd), check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout


@pytest.fixture(scope='module')
def dropping_netns(require_root):
    """A namespace whose OUTPUT chain drops TCP to TARGET:8080 (TARGET lies behind a veth of its own)."""
    subprocess.run(['ip', 'netns', 'del', NS], stderr=subprocess.DEVNULL, check=False)
    sh('ip', 'netns', 'add', NS)
    sh('ip', '-n', NS, 'link', 'set', 'lo', 'up')
    sh('ip', '-n', NS, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1')  # no dummy module here
    sh('ip', '-n', NS, 'link', 'set', 'd1', 'up')
    sh('ip', '-n', NS, 'addr', 'add', '10.204.0.1/24', 'dev', 'd0')
    sh('ip', '-n', NS, 'link', 'set', 'd0', 'up')
    sh('ip', 'netns', 'exec', NS, 'iptables', '-I', 'OUTPUT', '-d', TARGET, '-p', 'tcp', '--dport', '8080', '-j', 'DROP')
    yield
    sh('ip', 'netns', 'del', NS)


def trace(check_mode=False, **args):
    args['bpf_sources'] = read_sources(SOURCES)
    return run_module('skb_drop_trace', args, check_mode=check_mode)


def test_names_the_iptables_drop_with_location_and_stack(dropping_netns):
    result = trace(comm='curl', dst=TARGET, dport=8080, duration=8, command=CURL)
    assert not result.get('failed'), result.get('msg')
    assert result['command_result']['rc'] == 28
    assert result['reasons_source'].startswith('tracepoint format')
    top = result['summary'][0]
    assert top['reason'] == 'NETFILTER_DROP'
    assert top['location'].startswith(('nft_do_chain+0x', 'ipt_do_table+0x'))
    assert any(f.startswith('nf_hook_slow+') for f in top['stack'])
    assert any(f.startswith('__ip_local_out+') for f in top['stack'])
    rec = result['records'][0]
    expected = ('curl', 'tcp', TARGET, 8080, '10.204.0.1')
    assert (rec['comm'], rec['protocol'], rec['dst'], rec['dport'], rec['src']) == expected
    assert result['stats']['drops_reported'] == len(result['records'])
    assert result['symbolizer']['line_info']['available'] in (True, False)


def test_filters_exclude_other_drops(dropping_netns):
    for args in ({'comm': 'not-curl'}, {'dport': 9999}, {'reasons': ['NO_SOCKET']}, {'src': '10.9.9.9'},
                 {'protocol': 'udp'}):
        result = trace(duration=6, command=CURL, dst=TARGET, **args)
        assert not result.get('failed'), result.get('msg')
        assert result['records'] == [], args
        assert result['stats']['drops_seen'] >= 1, 'the drop happened but was filtered out'


def test_reason_filter_by_name_keeps_the_drop(dropping_netns):
    result = trace(duration=6, command=CURL, reasons=['NETFILTER_DROP'], dport=8080)
    assert [r['reason'] for r in result['records']] and all(r['reason'] == 'NETFILTER_DROP' for r in result['records'])


def test_check_mode_does_not_run_the_command(dropping_netns):
    result = trace(check_mode=True, duration=1, command=['touch', '/tmp/ebn-should-not-exist'])
    assert 'command_result' not in result
    assert subprocess.run(['test', '-e', '/tmp/ebn-should-not-exist'], check=False).returncode != 0


def test_bounded_by_duration_and_max_events(dropping_netns):
    result = trace(duration=2, max_events=1, command=['sleep', '30'])
    assert result['command_result']['rc'] == 124
    assert len(result['records']) <= 1


@pytest.mark.parametrize('args,message', [
    ({'duration': 0}, 'duration 0'),
    ({'duration': 601}, 'out of range'),
    ({'reasons': ['NOT_A_REASON']}, 'unknown drop reason'),
    ({'dst': '10.0.0.300'}, 'not an IP address'),
    ({'dport': 70000}, 'out of range'),
    ({'cgroup': '/sys/fs/cgroup/unified/ebn-nope'}, 'does not exist'),
])
def test_bad_input_is_named(args, message):
    result = trace(**args)
    assert result.get('failed') and message in result['msg'], result
