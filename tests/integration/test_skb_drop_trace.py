# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""skb_drop_trace against drops we cause in namespaces of our own (no docker): attribution to
namespace, interface and process, filters, nothing lost silently, the module contract."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import subprocess
import sys

import pytest

from conftest import read_sources, run_module

NS = 'dt-drop'
TARGET = '10.204.0.2'
SOURCES = ('skb_drop.bpf.c', 'skb_drop.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h', 'pcap_match.h',
           'xdp_drop.bpf.c', 'xdp_drop.h')
CURL = ['ip', 'netns', 'exec', NS, 'curl', '-s', '-m', '2', 'http://%s:8080/' % TARGET]
# a forward path: dt-fa (10.205.1.2) -> dt-fr (router, FORWARD drops UDP to 9999) -> dt-fb (10.205.2.2)
FA, FR, FB = 'dt-fa', 'dt-fr', 'dt-fb'
STORM_NS = 'dt-storm'


def sh(*cmd):
    return subprocess.run(list(cmd), check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout


def del_netns(*names):
    for n in names:
        subprocess.run(['ip', 'netns', 'del', n], stderr=subprocess.DEVNULL, check=False)


@contextlib.contextmanager
def fresh_netns(*names):
    """Namespaces names, new (an earlier run's leftovers removed) with lo up; removed afterwards, also on failure."""
    del_netns(*names)
    try:
        for n in names:
            sh('ip', 'netns', 'add', n)
            sh('ip', '-n', n, 'link', 'set', 'lo', 'up')
        yield
    finally:
        del_netns(*names)


def routed_row(left, router, right, net):
    """Namespaces left -> router -> right on NET.1.0/24 and NET.2.0/24 (net like '10.205'): left .1.2 on
    veth <left>0, router .1.1 on <router>-in and .2.1 on <router>-out, right .2.2 on <right>0, where <x> is
    the namespace name after its last '-'. The router forwards, but its FORWARD chain drops UDP to port 9999.
    The three namespaces exist already (fresh_netns)."""
    def tail(name):
        return name.rsplit('-', 1)[-1]
    sides = ((left, tail(left) + '0', tail(router) + '-in'), (right, tail(right) + '0', tail(router) + '-out'))
    for side, (n, dev, peer) in enumerate(sides, 1):
        sh('ip', '-n', n, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', peer, 'netns', router)
        sh('ip', '-n', n, 'addr', 'add', '%s.%d.2/24' % (net, side), 'dev', dev)
        sh('ip', '-n', router, 'addr', 'add', '%s.%d.1/24' % (net, side), 'dev', peer)
        sh('ip', '-n', n, 'link', 'set', dev, 'up')
        sh('ip', '-n', router, 'link', 'set', peer, 'up')
        sh('ip', '-n', n, 'route', 'add', 'default', 'via', '%s.%d.1' % (net, side))
    sh('ip', 'netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
    sh('ip', 'netns', 'exec', router, 'iptables', '-I', 'FORWARD', '-p', 'udp', '--dport', '9999', '-j', 'DROP')


def udp_sender(ns, dst, port, count, size=32):
    """argv that sends count UDP datagrams from namespace ns (a process: its own sends are process context)."""
    code = ('import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n'
            'for i in range(%d):\n    s.sendto(b"x"*%d,("%s",%d))\n' % (count, size, dst, port))
    return ['ip', 'netns', 'exec', ns, sys.executable, '-c', code]


@pytest.fixture(scope='module')
def dropping_netns(require_root):
    """A namespace whose OUTPUT chain drops TCP to TARGET:8080 (TARGET lies behind a veth of its own)."""
    with fresh_netns(NS):
        sh('ip', '-n', NS, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1')  # no dummy module here
        sh('ip', '-n', NS, 'link', 'set', 'd1', 'up')
        sh('ip', '-n', NS, 'addr', 'add', '10.204.0.1/24', 'dev', 'd0')
        sh('ip', '-n', NS, 'link', 'set', 'd0', 'up')
        sh('ip', 'netns', 'exec', NS, 'iptables', '-I', 'OUTPUT', '-d', TARGET, '-p', 'tcp', '--dport', '8080', '-j',
           'DROP')
        yield


@pytest.fixture(scope='module')
def forwarding_router(require_root):
    """Three namespaces in a row; the middle one forwards but its FORWARD chain drops UDP to port 9999."""
    with fresh_netns(FA, FR, FB):
        routed_row(FA, FR, FB, '10.205')
        yield


@pytest.fixture(scope='module')
def storm_netns(require_root):
    with fresh_netns(STORM_NS):
        yield STORM_NS


def trace(check_mode=False, **args):
    if 'bpf_sources' not in args:
        args['bpf_sources'] = read_sources(SOURCES)
    return run_module('skb_drop_trace', args, check_mode=check_mode)


def test_output_drop_names_netns_process_location_and_stack(dropping_netns):
    result = trace(namespace=NS, dst=TARGET, dport='8080', duration=8, command=CURL)
    assert not result.get('failed'), result.get('msg')
    assert result['command_result']['rc'] == 28
    assert result['changed'] is True, 'a command ran'
    top = result['summary'][0]
    assert top['reason'] == 'NETFILTER_DROP'
    assert top['location'].startswith(('nft_do_chain+0x', 'ipt_do_table+0x'))
    assert top['namespaces'] == ['netns:%s' % NS]
    frames = top['stacks'][0]['frames']
    assert frames[0] == top['location'], 'the stack starts at the dropping function, not in the tracer'
    assert any(f.startswith('__ip_local_out+') for f in frames)
    rec = result['records'][0]
    assert rec['context'] == 'process' and rec['process']['comm'] == 'curl'  # connect() sent the SYN
    assert (rec['protocol'], rec['dst'], rec['dport'], rec['src']) == ('tcp', TARGET, 8080, '10.204.0.1')
    assert rec['netns']['name'] == 'netns:%s' % NS and rec['netns']['inode'] == os.stat('/run/netns/' + NS).st_ino
    assert result['stats']['submitted'] == result['stats']['matched'] == len(result['records'])
    assert result['truncated'] is False


def test_forward_drop_is_the_router_namespace_and_interface_not_a_process(forwarding_router):
    result = trace(namespace=FR, protocol='udp', dport='9999', duration=8,
                   command=udp_sender(FA, '10.205.2.2', 9999, 3))
    assert not result.get('failed'), result.get('msg')
    assert len(result['records']) == 3, result['stats']
    for rec in result['records']:
        assert rec['reason'] == 'NETFILTER_DROP'
        assert rec['netns']['name'] == 'netns:%s' % FR
        assert (rec['ifname'], rec['interface_from']) == ('fr-in', 'device')
        assert rec['ifindex'] == int(sh('ip', '-n', FR, '-o', 'link', 'show', 'fr-in').split(':')[0])
        assert rec['context'] != 'process' and rec['process'] is None, 'softirq: the running task is not the sender'
        assert (rec['src'], rec['dst'], rec['dport']) == ('10.205.1.2', '10.205.2.2', 9999)
    # a process filter cannot match a softirq drop; an interface filter on the other side neither
    for args in ({'comm': 'python3'}, {'interface': 'fr-out'}, {'namespace': FA}, {'src': '10.205.2.0/24'},
                 {'dport': '1-9998'}):
        args.setdefault('namespace', FR)
        got = trace(duration=6, protocol='udp', command=udp_sender(FA, '10.205.2.2', 9999, 2), **args)
        assert not got.get('failed'), got.get('msg')
        assert got['records'] == [], args
        assert got['stats']['seen'] >= 2, 'the drops happened but were filtered out'
    kept = trace(namespace=FR, interface='fr-in', src='10.205.1.0/24', dport='9990-10000', reasons=['NETFILTER_DROP'],
                 duration=6, command=udp_sender(FA, '10.205.2.2', 9999, 2))
    assert len(kept['records']) == 2, kept['stats']


def test_pcap_filter_is_checked_in_the_program(forwarding_router):
    kept = trace(namespace=FR, pcap_filter='udp and dst port 9999 and src net 10.205.1.0/24', duration=6,
                 command=udp_sender(FA, '10.205.2.2', 9999, 2))
    assert not kept.get('failed'), kept.get('msg')
    assert len(kept['records']) == 2 and kept['records'][0]['dport'] == 9999, kept['stats']
    other = trace(namespace=FR, pcap_filter='udp and dst port 9998', duration=6,
                  command=udp_sender(FA, '10.205.2.2', 9999, 2))
    assert other['records'] == [] and other['stats']['seen'] >= 2


def test_a_storm_larger_than_the_buffer_reports_lost_events(storm_netns):
    # 1 page per CPU holds about ten events; 20000 UDP drops (no socket on port 9) cannot fit
    result = trace(namespace=storm_netns, protocol='udp', buffer_pages=1, max_events=100000, stacks=False,
                   duration=20, command=udp_sender(storm_netns, '127.0.0.1', 9, 20000))
    assert not result.get('failed'), result.get('msg')
    stats = result['stats']
    assert stats['matched'] >= 20000, stats
    assert stats['lost'] + stats['submit_failed'] > 0, stats
    assert result['truncated'] is True and stats['not_returned'] == stats['matched'] - stats['returned'] > 0
    assert any('lost' in w for w in result.get('warnings', [])), result.get('warnings')


def test_max_events_truncates_and_says_how_many(storm_netns):
    result = trace(namespace=storm_netns, protocol='udp', max_events=5, duration=10,
                   command=udp_sender(storm_netns, '127.0.0.1', 9, 200))
    assert len(result['records']) == 5
    assert result['truncated'] is True and result['stats']['not_returned'] >= 1, result['stats']


def test_without_command_nothing_changed(dropping_netns):
    result = trace(namespace=NS, duration=1)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is False and 'command_result' not in result


def test_check_mode_compiles_attaches_and_runs_nothing(dropping_netns, tmp_path):
    marker = tmp_path / 'ran'
    broken = dict(read_sources(SOURCES), **{'skb_drop.bpf.c': 'this is not C'})
    result = trace(check_mode=True, duration=1, command=['touch', str(marker)], bpf_sources=broken)
    assert not result.get('failed'), result.get('msg')  # a compile would have failed
    assert 'command_result' not in result and not marker.exists()
    assert result['changed'] is True, 'the command would have run'
    assert result['records'] == [] and 'nothing compiled' in result['check_mode_note']


def test_bounded_by_duration(dropping_netns):
    result = trace(duration=2, command=['sleep', '30'])
    assert result['command_result']['rc'] == 124


@pytest.mark.parametrize('args,message', [
    ({'duration': 0}, 'duration 0'),
    ({'duration': 601}, 'out of range'),
    ({'max_events': 0}, 'max_events 0'),
    ({'buffer_pages': 3}, 'power of two'),
    ({'reasons': ['NOT_A_REASON']}, 'unknown drop reason'),
    ({'reasons': ['300']}, 'only 0-255'),
    ({'dst': '10.0.0.300'}, 'not an IP address or CIDR'),
    ({'src': '10.0.0.0/33'}, 'not an IP address or CIDR'),
    ({'dport': '70000'}, 'out of range'),
    ({'sport': '90-80'}, 'out of range'),
    ({'sport': 'http'}, 'not a port or range'),
    ({'pid': 0}, 'not a process id'),
    ({'comm': 'a-much-too-long-process-name'}, '1-15 bytes'),
    ({'cgroup': '/sys/fs/cgroup/unified/dt-nope'}, 'does not exist'),
    ({'namespace': 'dt-no-such-ns'}, 'neither a running container'),
    ({'namespace': '/proc/999999999/ns/net'}, 'does not exist'),
    ({'interface': 'has space'}, 'neither an interface name'),
    ({'interface': 'x' * 16}, 'neither an interface name'),
    ({'command': ['dt-no-such-command', '--flag']}, 'was not found on the target'),
    ({'command': []}, 'command is empty'),
    ({'protocol': 'igmp'}, 'value of protocol must be one of'),
    ({'duration': 'soon'}, 'duration'),
    ({'bpf_sources': {}}, 'action plugin'),
    ({'pcap_filter': 'udp portt 53'}, 'does not compile'),
    ({'pcap_filter': ''}, 'pcap_filter is empty'),
])
def test_bad_input_is_named(args, message):
    result = trace(**args)
    assert result.get('failed') and message in result['msg'], result
    assert 'Traceback' not in result.get('msg', '') and 'exception' not in result, result
