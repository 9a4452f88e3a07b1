# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who ran when a packet was dropped or took a step: a softirq is never the process it borrowed.

The case a stack test cannot tell apart: a timer interrupt that finds a process running in user space
runs the pending softirqs on that process's own kernel stack as it returns (x86_64 stays on the task
stack for an interrupt from user mode). TCP's SYN retransmissions come from such a softirq (TIMER),
and the receive of each one (NET_RX, with its INPUT drop) follows in the same softirq run. Spinners
keep every CPU in user space, so the interrupted task is one of them. Namespaces and devices: q14-*."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys

import pytest

from conftest import read_sources, run_module
from test_skb_drop_trace import SOURCES as DROP_SOURCES, fresh_netns, sh
from test_skb_path_trace import SOURCES as PATH_SOURCES

CLIENT, SERVER = 'q14-tc', 'q14-ts'
SERVER_IP, PORT = '10.214.0.2', 7000
SPIN_COMM = 'q14spin'


def connect(seconds):
    """argv: one connect() from the client namespace that gives up after seconds (SYNs at 0, 1, 3, 7 s)."""
    code = ('import socket\ntry:\n    socket.create_connection(("%s", %d), timeout=%g)\nexcept OSError:\n    pass\n'
            % (SERVER_IP, PORT, seconds))
    return ['ip', 'netns', 'exec', CLIENT, sys.executable, '-c', code]


@pytest.fixture(scope='module')
def syn_dropping_pair(require_root):
    """A client namespace and a server namespace on a veth pair; the server's INPUT drops TCP to PORT."""
    with fresh_netns(CLIENT, SERVER):
        sh('ip', '-n', CLIENT, 'link', 'add', 'q14c0', 'type', 'veth', 'peer', 'name', 'q14s0', 'netns', SERVER)
        for n, dev, addr in ((CLIENT, 'q14c0', '10.214.0.1/24'), (SERVER, 'q14s0', SERVER_IP + '/24')):
            sh('ip', '-n', n, 'addr', 'add', addr, 'dev', dev)
            sh('ip', '-n', n, 'link', 'set', dev, 'up')
        sh('ip', 'netns', 'exec', SERVER, 'iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', str(PORT), '-j', 'DROP')
        yield


@pytest.fixture
def busy_cpus():
    """A user-space spinner on every CPU, niced: it only takes time nothing else wants."""
    code = ('import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nos.nice(19)\n'
            'open("/proc/self/comm", "w").write("%s")\nwhile True:\n    pass\n' % SPIN_COMM)
    spinners = [subprocess.Popen([sys.executable, '-c', code, str(cpu)]) for cpu in sorted(os.sched_getaffinity(0))]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def drops(**args):
    args.setdefault('bpf_sources', read_sources(DROP_SOURCES))
    return run_module('skb_drop_trace', args)


def test_a_drop_in_a_softirq_on_a_process_stack_is_not_that_process(syn_dropping_pair, busy_cpus):
    result = drops(namespace=SERVER, protocol='tcp', dport=str(PORT), duration=9, command=connect(7.5))
    assert not result.get('failed'), result.get('msg')
    records = result['records']
    assert len(records) >= 3, ('the SYN and its retransmissions', result['stats'])
    for rec in records:
        assert rec['netns']['name'] == 'netns:' + SERVER and rec['ifname'] == 'q14s0', rec
    who = [(r['context'], r['process'] and r['process']['comm']) for r in records]
    assert who == [('interrupt', None)] * len(records), who
    assert [r['softirq'] for r in records] == ['NET_RX'] * len(records), records
    summary = result['summary'][0]
    assert summary['processes'] == [] and summary['contexts'] == ['interrupt'], summary


@pytest.mark.parametrize('comm', [SPIN_COMM, 'python3'])
def test_a_process_filter_does_not_match_a_softirq_drop(syn_dropping_pair, busy_cpus, comm):
    # neither the process the softirq interrupted nor the one that sent the SYNs dropped them
    result = drops(namespace=SERVER, protocol='tcp', dport=str(PORT), comm=comm, duration=5, command=connect(3.5))
    assert not result.get('failed'), result.get('msg')
    assert result['records'] == [], result['records']
    assert result['stats']['seen'] >= 3


def test_each_path_step_says_who_ran_it(syn_dropping_pair, busy_cpus):
    result = run_module('skb_path_trace', dict(
        namespace=CLIENT, protocol='tcp', dport=str(PORT), max_packets=2, duration=5, command=connect(3.5),
        bpf_sources=read_sources(PATH_SOURCES)))
    assert not result.get('failed'), result.get('msg')
    assert len(result['packets']) == 2, result
    first, again = result['packets']
    for pkt in (first, again):
        assert (pkt['end'], pkt['reason']) == ('drop', 'NETFILTER_DROP'), pkt
        # netif_rx only queues (in whoever sent); the receive and the drop run in NET_RX
        received = [s for s in pkt['steps'] if s['step'] in ('net:netif_receive_skb', 'skb:kfree_skb')]
        assert len(received) >= 2 and all(s['netns'] == 'netns:' + SERVER for s in received), pkt
        assert all((s['context'], s['softirq']) == ('interrupt', 'NET_RX') for s in received), pkt
    # connect() queued the first SYN itself; the TCP timer queued the retransmission
    assert (first['steps'][0]['context'], first['steps'][0]['softirq']) == ('process', None), first
    assert (again['steps'][0]['context'], again['steps'][0]['softirq']) == ('interrupt', 'TIMER'), again
