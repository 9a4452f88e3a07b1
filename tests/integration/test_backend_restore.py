# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend side of dsr/ipip forwarding kept by the host agent (issue 13/12).

    bk-cl1 (client)  --+
    bk-lb  (XDP LB)  --+-- bridge br0 in bk-sw, 10.209.0.0/24
    bk-be1 (dsr)     --+   VIP_DSR on lo, arp_ignore/arp_announce (lb_backend bk_be1)
    bk-be2 (ipip)    --+   VIP_IPIP on lo, ARP sysctls (lb_backend bk_be2, decap: xdp)
                           + XDP decapsulation on eth0 (xdp_decap bk_be2_decap)

A reboot of a backend loses all of it (addresses, sysctls, the XDP program and its pins) while the
LB keeps sending there, and the LB's health check (a TCP connect to the backend's own address) still
passes. The backend modules save their desired state (persistent: true) and the agent re-applies it
with the modules' code; an intact backend is left alone; state=absent forgets the saved state.
The agent here has its own state and run directories and metrics port (modules get them through
EBPF_NETWORKING_STATE_DIR/RUN_DIR while this file's tests run).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import socket
import time
import urllib.request

import pytest

from agent_process import AgentProcess, wait_for
from conftest import XDP_SOURCES, read_sources, run_module
from lab_topology import Topology

SUBNET = '10.209.0.'
VIP_DSR = SUBNET + '50'
VIP_IPIP = SUBNET + '51'
LB = 'bk_lb'
BE1 = 'bk_be1'
BE2 = 'bk_be2'
DECAP = 'bk_be2_decap'
WORK = os.path.join(os.environ.get('EBPF_NET_TEST_WORK', '/tmp/ebpf-networking-test'), 'bk-agent')
STATE_DIR = os.path.join(WORK, 'state')
RUN_DIR = os.path.join(WORK, 'run')
METRICS_PORT = 19439
ARP_SYSCTLS = ('arp_ignore', 'arp_announce')


class Agent(AgentProcess):
    """The agent with this file's directories; started with its metrics port, or run once."""

    def __init__(self):
        super(Agent, self).__init__(STATE_DIR, RUN_DIR, os.path.join(WORK, 'agent.log'), ['--log-level', 'debug'])

    def once(self, *extra):
        proc = super(Agent, self).once('--metrics-port', '0')
        assert proc.returncode == 0, proc.stdout
        return proc.stdout

    def start(self, *extra):
        return super(Agent, self).start('--metrics-port', str(METRICS_PORT), '--poll-interval', '0.5',
                                        '--metrics-interval', '1')


@pytest.fixture(scope='module')
def bklab(require_root):
    pytest.importorskip('bcc')
    saved_env = dict((k, os.environ.get(k)) for k in ('EBPF_NETWORKING_STATE_DIR', 'EBPF_NETWORKING_RUN_DIR'))
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    os.environ['EBPF_NETWORKING_STATE_DIR'] = STATE_DIR
    os.environ['EBPF_NETWORKING_RUN_DIR'] = RUN_DIR
    lab = Topology(clients=1, backends=2, checksum_offload=True, prefix='bk-', subnet=SUBNET)
    lab.agent = Agent()
    try:
        lab.up()
        for vip in (VIP_DSR, VIP_IPIP):
            lab.node('lb').run('ip', 'addr', 'add', vip + '/32', 'dev', 'eth0')
        lab.start_backends(port=80)
        yield lab
    finally:
        lab.agent.stop()
        for module, name in (('lb_backend', BE1), ('lb_backend', BE2), ('xdp_decap', DECAP), ('xdp_proxy', LB),
                             ('lb_backend', 'bk_bad'), ('xdp_decap', 'bk_bad')):
            run_module(module, {'name': name, 'state': 'absent'})
        lab.down()
        shutil.rmtree(WORK, ignore_errors=True)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def deploy_lb(lab):
    return run_module('xdp_proxy', {
        'name': LB, 'netns': 'bk-lb', 'interface': 'eth0', 'persistent': False,
        'bpf_sources': read_sources(XDP_SOURCES),
        'services': [{'vip': VIP_DSR, 'port': 80, 'forwarding': 'dsr', 'backends': [lab.ip('be1')]},
                     {'vip': VIP_IPIP, 'port': 80, 'forwarding': 'ipip', 'tunnel_source': lab.ip('lb'),
                      'backends': [lab.ip('be2')]}]})


def deploy_backends(**extra):
    return [run_module('lb_backend', dict({'name': BE1, 'netns': 'bk-be1', 'vips': [VIP_DSR]}, **extra)),
            run_module('lb_backend', dict({'name': BE2, 'netns': 'bk-be2', 'vips': [VIP_IPIP],
                                           'forwarding': 'ipip', 'decap': 'xdp'}, **extra)),
            run_module('xdp_decap', dict({'name': DECAP, 'netns': 'bk-be2', 'interface': 'eth0',
                                          'bpf_sources': read_sources(['xdp_decap.bpf.c'])}, **extra))]


def answers(lab, vip, count=1, timeout=1):
    cmd = 'for i in $(seq 1 %d); do curl -s -m %d http://%s/ || echo FAILED; done' % (count, timeout, vip)
    out = lab.node('cl1').run('sh', '-c', cmd).stdout
    return [line.replace('Hostname: ', '') for line in out.splitlines()]


def serving(lab):
    return answers(lab, VIP_DSR) == ['be1'] and answers(lab, VIP_IPIP) == ['be2']


def xdp_prog_id(lab, node):
    out = lab.node(node).run('ip', '-d', 'link', 'show', 'eth0').stdout
    words = out.split()
    return words[words.index('prog/xdp') + 2] if 'prog/xdp' in words else None


def lo_vips(lab, node):
    return lab.node(node).run('ip', '-4', '-o', 'addr', 'show', 'dev', 'lo').stdout


def sysctl(lab, node, conf, key):
    return lab.node(node).run('sysctl', '-n', 'net.ipv4.conf.%s.%s' % (conf, key)).stdout.strip()


def reboot(lab, node):
    """What a reboot of the backend leaves: no VIP on lo, kernel default sysctls, no XDP program, empty bpffs
    (the saved state in /etc stays)."""
    n = lab.node(node)
    n.run('ip', 'addr', 'flush', 'dev', 'lo', 'scope', 'global', check=False)
    for conf in ('all', 'eth0'):
        for key in ARP_SYSCTLS:
            n.run('sysctl', '-qw', 'net.ipv4.conf.%s.%s=0' % (conf, key))
        n.run('sysctl', '-qw', 'net.ipv4.conf.%s.rp_filter=0' % conf)
    n.run('ip', 'link', 'set', 'dev', 'eth0', 'xdpgeneric', 'off', check=False)
    n.run('ip', 'link', 'set', 'dev', 'eth0', 'xdp', 'off', check=False)
    if node == 'be2':
        shutil.rmtree('/sys/fs/bpf/ebpf_networking/' + DECAP, ignore_errors=True)


def lb_health_check_connects(lab, ip, port=80):
    """What xdp_proxy's health_check does: a TCP connect from the LB's namespace to the backend's address."""
    proc = lab.node('lb').run('python3', '-c', 'import socket; socket.create_connection(("%s", %d), 1).close()'
                              % (ip, port), check=False)
    return proc.returncode == 0


def restore_lines(lab):
    return [line for line in lab.agent.logtext().splitlines() if 'restored in' in line]


def scrape():
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % METRICS_PORT, timeout=5) as resp:
            return resp.read().decode()
    except (IOError, OSError, socket.timeout):
        return ''


def test_backend_modules_save_their_desired_state(bklab):
    lb = deploy_lb(bklab)
    assert not lb.get('failed'), lb.get('msg')
    results = deploy_backends()
    for r in results:
        assert not r.get('failed'), r.get('msg')
        assert any('save desired state' in c for c in r['changes']), r['changes']
    assert [r['persistent_state'] for r in results] == [
        os.path.join(STATE_DIR, 'lb_backend', BE1 + '.json'), os.path.join(STATE_DIR, 'lb_backend', BE2 + '.json'),
        os.path.join(STATE_DIR, 'xdp_decap', DECAP + '.json')]
    assert all(os.path.exists(r['persistent_state']) for r in results)
    assert wait_for(lambda: serving(bklab), 10), (answers(bklab, VIP_DSR), answers(bklab, VIP_IPIP))
    again = deploy_backends()
    assert [r['changed'] for r in again] == [False, False, False], [r['changes'] for r in again]


def test_agent_leaves_intact_backends_alone(bklab):
    prog = xdp_prog_id(bklab, 'be2')
    assert prog
    out = bklab.agent.once()
    for key in ('lb_backend/' + BE1, 'lb_backend/' + BE2, 'xdp_decap/' + DECAP):
        assert '%s: looking after' % key in out, out
    assert 'restored in' not in out and 'ERROR' not in out, out
    assert xdp_prog_id(bklab, 'be2') == prog, 'an intact decap program is kept'
    assert serving(bklab)


def test_simulated_backend_reboot_agent_brings_the_backends_back(bklab):
    for node in ('be1', 'be2'):
        reboot(bklab, node)
    assert VIP_DSR not in lo_vips(bklab, 'be1') and xdp_prog_id(bklab, 'be2') is None
    assert answers(bklab, VIP_DSR) == ['FAILED'] and answers(bklab, VIP_IPIP) == ['FAILED'], \
        'a rebooted backend black-holes what the LB sends it'
    assert lb_health_check_connects(bklab, bklab.ip('be1')) and lb_health_check_connects(bklab, bklab.ip('be2')), \
        "the LB's health check (TCP to the backend's own address) passes although the VIP does not answer"
    start = time.time()
    bklab.agent.start()
    ok = wait_for(lambda: serving(bklab), 90, 0.2)
    took = time.time() - start
    print('\nboth backends answered on their VIPs %.2fs after the agent started (VIP, sysctls; decap '
          'program compiled, pinned, attached)' % took)
    assert ok, bklab.agent.logtext()[-3000:]
    assert wait_for(lambda: len(restore_lines(bklab)) >= 3, 30), bklab.agent.logtext()[-3000:]
    lines = dict((key, [line for line in restore_lines(bklab) if key + ': restored' in line])
                 for key in ('lb_backend/' + BE1, 'lb_backend/' + BE2, 'xdp_decap/' + DECAP))
    assert all(len(v) == 1 for v in lines.values()), lines
    print('\n'.join(v[0] for v in lines.values()))
    be1 = lines['lb_backend/' + BE1][0]
    assert 'add %s/32 to lo' % VIP_DSR in be1 and 'net.ipv4.conf.all.arp_ignore = 1' in be1, be1
    be2 = lines['lb_backend/' + BE2][0]
    assert 'add %s/32 to lo' % VIP_IPIP in be2 and 'net.ipv4.conf.eth0.arp_announce = 2' in be2, be2
    decap = lines['xdp_decap/' + DECAP][0]
    assert 'load and pin program' in decap and 'attach to eth0' in decap, decap
    for conf in ('all', 'eth0'):
        assert sysctl(bklab, 'be1', conf, 'arp_ignore') == '1' and sysctl(bklab, 'be1', conf, 'arp_announce') == '2'
    assert os.path.isdir('/sys/fs/bpf/ebpf_networking/' + DECAP)
    # restored once, then left alone
    time.sleep(2)
    assert len(restore_lines(bklab)) == 3, restore_lines(bklab)
    assert 'ERROR' not in bklab.agent.logtext(), bklab.agent.logtext()[-3000:]


def test_agent_metrics_say_the_backends_are_in_place(bklab):
    def restored_metrics():
        text = scrape()
        return text if 'ebpf_networking_backend_configured' in text else ''
    text = wait_for(restored_metrics, 15)
    assert 'ebpf_networking_backend_configured{deployment="%s"} 1' % BE1 in text, text
    assert 'ebpf_networking_backend_configured{deployment="%s"} 1' % BE2 in text, text
    assert 'ebpf_networking_decap_attached{deployment="%s"} 1' % DECAP in text, text
    assert 'ebpf_networking_decap_packets_total{deployment="%s"}' % DECAP in text, text
    assert 'ebpf_networking_agent_restores_total{deployment="lb_backend/%s"} 1' % BE1 in text, text


def test_a_vip_lost_while_the_agent_runs_is_put_back(bklab):
    before = len(restore_lines(bklab))
    bklab.node('be1').run('ip', 'addr', 'del', VIP_DSR + '/32', 'dev', 'lo')
    assert wait_for(lambda: VIP_DSR in lo_vips(bklab, 'be1'), 10), bklab.agent.logtext()[-2000:]
    assert wait_for(lambda: len(restore_lines(bklab)) == before + 1, 10)
    line = restore_lines(bklab)[-1]
    assert 'lb_backend/%s: restored' % BE1 in line and 'add %s/32 to lo' % VIP_DSR in line, line
    assert answers(bklab, VIP_DSR, 5) == ['be1'] * 5


def test_state_absent_forgets_and_the_agent_stops_restoring(bklab):
    gone = [run_module('lb_backend', {'name': BE1, 'state': 'absent'}),
            run_module('xdp_decap', {'name': DECAP, 'state': 'absent'})]
    for r in gone:
        assert not r.get('failed'), r.get('msg')
        assert any('remove saved state' in c for c in r['changes']), r['changes']
    assert not os.path.exists(os.path.join(STATE_DIR, 'lb_backend', BE1 + '.json'))
    assert not os.path.exists(os.path.join(STATE_DIR, 'xdp_decap', DECAP + '.json'))
    assert VIP_DSR not in lo_vips(bklab, 'be1') and xdp_prog_id(bklab, 'be2') is None
    assert wait_for(lambda: bklab.agent.logtext().count('no longer looked after') == 2, 10), \
        bklab.agent.logtext()[-2000:]
    time.sleep(1.5)
    assert VIP_DSR not in lo_vips(bklab, 'be1') and xdp_prog_id(bklab, 'be2') is None, \
        'the agent must not bring back what state=absent removed'
    assert os.path.exists(os.path.join(STATE_DIR, 'lb_backend', BE2 + '.json')), 'the other backend stays saved'


def test_not_persistent_removes_the_saved_state(bklab):
    result = run_module('lb_backend', {'name': BE2, 'netns': 'bk-be2', 'vips': [VIP_IPIP], 'forwarding': 'ipip',
                                       'decap': 'xdp', 'persistent': False})
    assert not result.get('failed'), result.get('msg')
    assert result['persistent_state'] is None
    assert any('remove saved state' in c for c in result['changes']), result['changes']
    assert not os.path.exists(os.path.join(STATE_DIR, 'lb_backend', BE2 + '.json'))
    assert VIP_IPIP in lo_vips(bklab, 'be2'), 'the configuration itself stays'


@pytest.mark.parametrize('module,args', [
    ('lb_backend', {'name': 'bk_bad', 'netns': 'bk-be1', 'vips': [SUBNET + '60']}),
    ('xdp_decap', {'name': 'bk_bad', 'netns': 'bk-be1', 'interface': 'eth0'}),
])
def test_unwritable_state_dir_fails_before_anything_changes(bklab, module, args):
    blocker = os.path.join(WORK, 'not-a-directory')
    with open(blocker, 'w') as f:
        f.write('x')
    os.environ['EBPF_NETWORKING_STATE_DIR'] = blocker
    try:
        if module == 'xdp_decap':
            args = dict(args, bpf_sources=read_sources(['xdp_decap.bpf.c']))
        result = run_module(module, args)
    finally:
        os.environ['EBPF_NETWORKING_STATE_DIR'] = STATE_DIR
    assert result.get('failed'), result
    assert 'set persistent: false' in result['msg'] and 'Nothing was changed' in result['msg'], result['msg']
    assert 'Traceback' not in result.get('module_stderr', '') and 'exception' not in result, result
    assert SUBNET + '60' not in lo_vips(bklab, 'be1') and xdp_prog_id(bklab, 'be1') is None
    assert not os.path.exists('/sys/fs/bpf/ebpf_networking/bk_bad')


def test_bad_name_fails_naming_the_rule(bklab):
    result = run_module('lb_backend', {'name': 'Bad Name', 'netns': 'bk-be1', 'vips': [SUBNET + '60']})
    assert result.get('failed') and "name 'Bad Name' is invalid" in result['msg'], result
    assert 'Traceback' not in result.get('module_stderr', '')
    assert SUBNET + '60' not in lo_vips(bklab, 'be1')
