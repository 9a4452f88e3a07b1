# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role xdp_lb_backend through ansible-playbook against a namespace of our own (q13rb-ns): dsr, then ipip,
then dsr again (with a lost VIP added back), each idempotent (changed=0 on the re-run), and absent
leaves exactly what was there before - an address and a sysctl that were already set stay."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import subprocess
import tempfile
import time

import pytest

NETNS = 'q13rb-ns'  # not q13-*: the other q13 labs' Topology.down() deletes every q13-* namespace
ADDR = '10.214.0.5'
VIP = '10.214.0.50'
OTHER_VIP = '10.214.0.60'  # on lo before the role runs: not the role's to remove
PIN_ROOT = '/sys/fs/bpf/ebpf_networking'
# the role runs the host agent (xdp_lb_backend_persistent): everything of it, and the saved state, in a
# directory of this test, so the agent looks after this test's backend only and absent removes it again
AGENT_DIR = os.path.join(os.environ.get('EBPF_NET_TEST_WORK', '/tmp/ebpf-networking-test'), 'q13rb-agent')
STATE_DIR = os.path.join(AGENT_DIR, 'state')
AGENT_VARS = {'host_agent_service_manager': 'none', 'host_agent_state_dir': STATE_DIR,
              'host_agent_run_dir': os.path.join(AGENT_DIR, 'run'), 'host_agent_install_dir': os.path.join(AGENT_DIR, 'lib'),
              'host_agent_launcher': os.path.join(AGENT_DIR, 'agent'),
              'host_agent_control': os.path.join(AGENT_DIR, 'agentctl'),
              'host_agent_config_file': os.path.join(AGENT_DIR, 'agent.json'),
              'host_agent_pidfile': os.path.join(AGENT_DIR, 'agent.pid'),
              'host_agent_log_file': os.path.join(AGENT_DIR, 'agent.log'), 'host_agent_metrics_port': 0}


def collections_path():
    parts = os.path.abspath(__file__).split(os.sep)
    if 'ansible_collections' in parts:
        return os.sep.join(parts[:parts.index('ansible_collections')])
    return os.path.expanduser('~/.ansible/collections')


def ns(*cmd):
    return subprocess.run(['ip', 'netns', 'exec', NETNS] + list(cmd), check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout


def sysctl(conf, key):
    return ns('cat', '/proc/sys/net/ipv4/conf/%s/%s' % (conf, key)).strip()


def lo_addrs():
    return set(re.findall(r'inet (\S+)', ns('ip', '-4', 'addr', 'show', 'dev', 'lo')))


def play(**role_vars):
    """Run the role once; returns (recap changed count, failed count, output)."""
    defaults = {'xdp_lb_backend_name': 'q13rb', 'xdp_lb_backend_netns': NETNS, 'xdp_lb_backend_vips': [VIP, OTHER_VIP]}
    role_vars = dict(defaults, **dict(AGENT_VARS, **role_vars))
    playbook = [{'name': 'backend', 'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
                 'vars': dict(role_vars, ansible_python_interpreter='/usr/bin/python3'),
                 'roles': ['ebpf.networking.xdp_lb_backend']}]
    with tempfile.NamedTemporaryFile('w', suffix='.yml', prefix='q13-role-', delete=False) as f:
        json.dump(playbook, f)
    try:
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
                   EBPF_NETWORKING_STATE_DIR=STATE_DIR, EBPF_NETWORKING_RUN_DIR=AGENT_VARS['host_agent_run_dir'])
        proc = subprocess.run(['ansible-playbook', '-i', 'localhost,', f.name], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    finally:
        os.unlink(f.name)
    recap = re.search(r'localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)', proc.stdout)
    assert recap, proc.stdout[-3000:]
    return int(recap.group(1)), int(recap.group(2)), proc.stdout


@pytest.fixture
def backend_ns(require_root):
    subprocess.run(['ip', 'netns', 'del', NETNS], stderr=subprocess.DEVNULL, check=False)
    subprocess.check_call(['ip', 'netns', 'add', NETNS])
    try:
        ns('ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'q13rbp')
        ns('ip', 'addr', 'add', ADDR + '/24', 'dev', 'eth0')
        for dev in ('lo', 'eth0', 'q13rbp'):
            ns('ip', 'link', 'set', dev, 'up')
        ns('ip', 'addr', 'add', OTHER_VIP + '/32', 'dev', 'lo')
        ns('sysctl', '-qw', 'net.ipv4.conf.all.arp_announce=2')  # already what the role wants
        yield
    finally:
        try:
            play(xdp_lb_backend_state='absent')
        finally:
            subprocess.run(['ip', 'netns', 'del', NETNS], check=False)
            if os.path.exists(AGENT_VARS['host_agent_control']):  # absent failed half-way: stop the role's agent
                subprocess.run([AGENT_VARS['host_agent_control'], 'stop'], check=False)


def test_dsr_then_ipip_then_absent_restores_exactly_what_was_there(backend_ns):
    before = {'lo': lo_addrs(), 'all.arp_ignore': sysctl('all', 'arp_ignore'),
              'eth0.arp_ignore': sysctl('eth0', 'arp_ignore'), 'eth0.arp_announce': sysctl('eth0', 'arp_announce')}
    assert before['all.arp_ignore'] == '0' and before['eth0.arp_announce'] == '0'

    changed, failed, out = play()
    assert failed == 0 and changed >= 1, out[-3000:]
    assert os.path.exists(os.path.join(STATE_DIR, 'lb_backend', 'q13rb.json')), 'saved for the host agent'
    assert os.path.exists(AGENT_VARS['host_agent_pidfile']), 'the role runs the host agent'
    assert {VIP + '/32', OTHER_VIP + '/32'} <= lo_addrs()
    assert (sysctl('all', 'arp_ignore'), sysctl('all', 'arp_announce')) == ('1', '2')
    assert (sysctl('eth0', 'arp_ignore'), sysctl('eth0', 'arp_announce')) == ('1', '2')
    changed, failed, out = play()
    assert (changed, failed) == (0, 0), 'dsr re-run is idempotent:\n' + out[-3000:]

    changed, failed, out = play(xdp_lb_backend_forwarding='ipip')
    assert failed == 0 and changed >= 1, out[-3000:]
    assert 'prog/xdp' in ns('ip', '-d', 'link', 'show', 'eth0'), 'no ipip device in this kernel: XDP decapsulates'
    assert os.path.isdir(os.path.join(PIN_ROOT, 'q13rb-decap'))
    assert os.path.exists(os.path.join(STATE_DIR, 'xdp_decap', 'q13rb-decap.json'))
    changed, failed, out = play(xdp_lb_backend_forwarding='ipip')
    assert (changed, failed) == (0, 0), 'ipip re-run is idempotent:\n' + out[-3000:]

    changed, failed, out = play()  # back to dsr: the XDP decapsulation is no longer wanted
    assert failed == 0 and changed >= 1, out[-3000:]
    assert 'prog/xdp' not in ns('ip', '-d', 'link', 'show', 'eth0'), 'ipip -> dsr removes the XDP decapsulation'
    assert not os.path.exists(os.path.join(PIN_ROOT, 'q13rb-decap'))
    assert not os.path.exists(os.path.join(STATE_DIR, 'xdp_decap', 'q13rb-decap.json')), 'no longer restored'
    ns('ip', 'addr', 'del', VIP + '/32', 'dev', 'lo')  # lost (a flush, a restart): the role's agent adds it back
    deadline = time.time() + 15
    while VIP + '/32' not in lo_addrs() and time.time() < deadline:
        time.sleep(0.2)
    with open(AGENT_VARS['host_agent_log_file']) as f:
        log = f.read()
    assert VIP + '/32' in lo_addrs(), log[-3000:]
    assert 'lb_backend/q13rb: restored' in log and 'add %s/32 to lo' % VIP in log, log[-3000:]
    changed, failed, out = play()
    assert (changed, failed) == (0, 0), 'the agent restored it all:\n' + out[-3000:]

    changed, failed, out = play(xdp_lb_backend_state='absent')
    assert failed == 0 and changed >= 1, out[-3000:]
    assert lo_addrs() == before['lo'], 'the address that was there before stays, ours is gone'
    assert sysctl('all', 'arp_ignore') == '0' and sysctl('eth0', 'arp_ignore') == before['eth0.arp_ignore']
    assert sysctl('all', 'arp_announce') == '2', 'set before the role: not the role to undo'
    assert sysctl('eth0', 'arp_announce') == before['eth0.arp_announce']
    assert 'prog/xdp' not in ns('ip', '-d', 'link', 'show', 'eth0')
    assert not os.path.exists(os.path.join(PIN_ROOT, 'q13rb-decap'))
    assert not os.path.exists(os.path.join(STATE_DIR, 'lb_backend', 'q13rb.json')), 'absent forgets the saved state'
    assert not os.path.exists(AGENT_VARS['host_agent_pidfile']), 'nothing left for the agent: removed'
    changed, failed, out = play(xdp_lb_backend_state='absent')
    assert (changed, failed) == (0, 0), out[-3000:]
