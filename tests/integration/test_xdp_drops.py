# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""XDP drops in skb_drop_trace: an XDP program that aborts is named with its id, name, namespace and
interface; a generic-mode XDP_DROP is a kfree_skb at do_xdp_generic (reason NOT_SPECIFIED on 6.18, XDP
where the kernel names it). Programs are built here with clang."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import shutil
import subprocess
import sys

import pytest

from conftest import read_sources, run_module
from test_skb_drop_trace import SOURCES, del_netns, sh, udp_sender

XDP_NS, SENDER_NS = 'dt-xdp', 'dt-xdps'
PROGRAMS = r'''
#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))
SEC("xdp") int dt_abort(struct xdp_md *ctx) { return XDP_ABORTED; }
char _license[] SEC("license") = "GPL";
'''
DROPPER = PROGRAMS.replace('dt_abort', 'dt_drop').replace('XDP_ABORTED', 'XDP_DROP')


def build(tmp_path, name, text):
    clang = shutil.which('clang')
    if not clang:
        pytest.fail('clang is needed (the bpf_toolchain role installs it)')
    src = tmp_path / (name + '.c')
    src.write_text(text)
    obj = tmp_path / (name + '.o')
    subprocess.run([clang, '-O2', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', str(src), '-o', str(obj)],
                   check=True)
    return str(obj)


@pytest.fixture
def xdp_pair(require_root):
    """xdp-in (in XDP_NS, 10.207.0.2) receives from xdp-out (in SENDER_NS); the sender knows its MAC, so
    no ARP is needed and every datagram reaches the XDP program."""
    del_netns(XDP_NS, SENDER_NS)
    try:
        sh('ip', 'netns', 'add', XDP_NS)
        sh('ip', 'netns', 'add', SENDER_NS)
        sh('ip', '-n', SENDER_NS, 'link', 'add', 'xdp-out', 'type', 'veth', 'peer', 'name', 'xdp-in', 'netns', XDP_NS)
        sh('ip', '-n', SENDER_NS, 'addr', 'add', '10.207.0.1/24', 'dev', 'xdp-out')
        sh('ip', '-n', XDP_NS, 'addr', 'add', '10.207.0.2/24', 'dev', 'xdp-in')
        sh('ip', '-n', SENDER_NS, 'link', 'set', 'xdp-out', 'up')
        sh('ip', '-n', XDP_NS, 'link', 'set', 'xdp-in', 'up')
        mac = sh('ip', 'netns', 'exec', XDP_NS, 'cat', '/sys/class/net/xdp-in/address').strip()
        sh('ip', '-n', SENDER_NS, 'neigh', 'replace', '10.207.0.2', 'lladdr', mac, 'dev', 'xdp-out', 'nud', 'permanent')
        yield
    finally:
        del_netns(XDP_NS, SENDER_NS)


def xdp_prog_id():
    out = sh('ip', '-n', XDP_NS, '-d', 'link', 'show', 'xdp-in')
    return int(out.split('prog/xdp id ')[1].split()[0])


def test_an_aborting_xdp_program_is_named(xdp_pair, tmp_path):
    sh('ip', '-n', XDP_NS, 'link', 'set', 'dev', 'xdp-in', 'xdpdrv', 'obj', build(tmp_path, 'abort', PROGRAMS),
       'sec', 'xdp')
    result = run_module('skb_drop_trace', {'namespace': XDP_NS, 'interface': 'xdp-in', 'duration': 8,
                                           'command': udp_sender(SENDER_NS, '10.207.0.2', 7, 3),
                                           'bpf_sources': read_sources(SOURCES)})
    assert not result.get('failed'), result.get('msg')
    records = result['xdp']['records']
    assert len(records) == 3, result['xdp']
    for rec in records:
        assert (rec['event'], rec['action'], rec['prog_name']) == ('xdp_exception', 'XDP_ABORTED', 'dt_abort')
        assert rec['prog_id'] == xdp_prog_id()
        assert (rec['ifname'], rec['netns']['name']) == ('xdp-in', 'netns:' + XDP_NS)
    # veth frees the aborted skbs too (kfree_skb at veth_xdp_rcv_skb): both are in the summary
    group = [g for g in result['summary'] if g['reason'] == 'XDP_EXCEPTION']
    assert group and group[0]['count'] == 3 and 'dt_abort' in group[0]['location'], result['summary']
    assert result['xdp']['stats']['lost'] == 0 and result['xdp']['truncated'] is False


def test_a_generic_xdp_drop_is_a_kfree_skb_in_do_xdp_generic(xdp_pair, tmp_path):
    sh('ip', '-n', XDP_NS, 'link', 'set', 'dev', 'xdp-in', 'xdpgeneric', 'obj', build(tmp_path, 'drop', DROPPER),
       'sec', 'xdp')
    result = run_module('skb_drop_trace', {'namespace': XDP_NS, 'duration': 8, 'protocol': 'udp',
                                           'command': udp_sender(SENDER_NS, '10.207.0.2', 7, 3),
                                           'bpf_sources': read_sources(SOURCES)})
    assert not result.get('failed'), result.get('msg')
    assert len(result['records']) == 3, result['stats']
    for rec in result['records']:
        assert rec['location'].startswith('do_xdp_generic+') and rec['reason'] in ('XDP', 'NOT_SPECIFIED')
        assert rec['ifname'] == 'xdp-in' and rec['dport'] == 7 and rec['process'] is None
    assert result['xdp']['records'] == [], 'XDP_DROP is not an exception'


def test_xdp_tracing_can_be_left_out(xdp_pair):
    sources = dict((k, v) for k, v in read_sources(SOURCES).items() if not k.startswith('xdp_drop'))
    result = run_module('skb_drop_trace', {'namespace': XDP_NS, 'duration': 1, 'xdp': False, 'bpf_sources': sources})
    assert not result.get('failed'), result.get('msg')
    assert 'xdp' not in result


if __name__ == '__main__':
    sys.exit(pytest.main([__file__]))
