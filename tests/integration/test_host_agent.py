# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host agent against a real namespace lab of its own (ag-*, 10.204.0.0/24, deployment ag_lb):
restore after a simulated reboot and after a lost attachment, intact deployments kept, health-check
failover and recovery, metrics scraped over HTTP and from the textfile, state=absent forgetting the
deployment, and the systemd unit verified. Timings are printed (run pytest with -s to see them)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

import agent_process
from agent_process import wait_for
from conftest import COLLECTION, read_sources, run_module, XDP_SOURCES
from lab_topology import Topology, sh

NAME = 'ag_lb'
PIN_DIR = '/sys/fs/bpf/ebpf_networking/' + NAME
STATE_DIR = os.environ['EBPF_NETWORKING_STATE_DIR']
RUN_DIR = os.environ['EBPF_NETWORKING_RUN_DIR']
WORK = os.path.dirname(STATE_DIR)
METRICS_PORT = 19435
# fall 3 and timeout = interval: a threaded Python backend on a loaded CI machine can be slow twice in a row
HEALTH = {'type': 'http', 'path': '/', 'interval': 0.5, 'timeout': 0.5, 'rise': 2, 'fall': 3}
DETECTION = HEALTH['interval'] * HEALTH['fall'] + HEALTH['timeout']


class AgentProcess(agent_process.AgentProcess):
    """The agent with this lab's directories, metrics port and textfile."""

    def __init__(self):
        self.textfile = os.path.join(WORK, 'ag-textfile', 'ebpf_networking.prom')
        super(AgentProcess, self).__init__(STATE_DIR, RUN_DIR, os.path.join(WORK, 'ag-agent.log'), [
            '--metrics-port', str(METRICS_PORT), '--poll-interval', '0.5', '--metrics-interval', '1',
            '--textfile', self.textfile, '--log-level', 'debug'])


@pytest.fixture(scope='module')
def aglab(require_root):
    for d in (STATE_DIR, RUN_DIR):
        shutil.rmtree(d, ignore_errors=True)
    topo = Topology(clients=1, backends=2, checksum_offload=False, prefix='ag-', subnet='10.204.0.').up()
    topo.start_backends(port=80)
    agent = AgentProcess()
    if os.path.exists(agent.log):
        os.unlink(agent.log)
    topo.agent = agent
    yield topo
    agent.stop()
    run_module('xdp_proxy', {'name': NAME, 'state': 'absent'})
    topo.down()
    for d in (STATE_DIR, RUN_DIR):
        shutil.rmtree(d, ignore_errors=True)


def deploy(lab, **extra):
    args = dict(name=NAME, netns='ag-lb', interface='eth0', bpf_sources=read_sources(XDP_SOURCES),
                services=[{'vip': lab.ip('lb'), 'port': 80, 'health_check': HEALTH,
                           'backends': [lab.ip('be1'), lab.ip('be2')]}])
    args.update(extra)
    return run_module('xdp_proxy', args)


def curl(lab, count, timeout=2):
    cmd = 'for i in $(seq 1 %d); do curl -s -m %d http://%s/ || echo FAILED; done' % (count, timeout, lab.ip('lb'))
    out = lab.node('cl1').run('sh', '-c', cmd).stdout
    return [line.replace('Hostname: ', '') for line in out.splitlines()]


def prog_id():
    out = sh('ip', 'netns', 'exec', 'ag-lb', 'ip', '-j', '-d', 'link', 'show', 'eth0').stdout
    xdp = json.loads(out)[0].get('xdp') or {}
    return (xdp.get('prog') or {}).get('id') or xdp.get('prog_id')


def scrape():
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % METRICS_PORT, timeout=5) as resp:
        return resp.read().decode()


def status():
    with open(os.path.join(RUN_DIR, 'status', 'xdp_proxy', NAME + '.json')) as f:
        return json.load(f)


def test_module_saves_state_and_agent_keeps_an_intact_deployment(aglab):
    result = deploy(aglab)
    assert not result.get('failed'), result.get('msg')
    state_file = os.path.join(STATE_DIR, 'xdp_proxy', NAME + '.json')
    assert result['persistent_state'] == state_file and os.path.exists(state_file)
    assert any('save desired state' in c for c in result['changes'])
    again = deploy(aglab)
    assert again['changed'] is False, again['changes']
    before = prog_id()
    assert before
    aglab.agent.start()
    assert wait_for(lambda: 'ebpf_networking_lb_attached{deployment="%s"} 1' % NAME in _safe(scrape), 15)
    assert prog_id() == before, 'an intact deployment must be kept, not reloaded'
    assert 'restored' not in aglab.agent.logtext()
    answers = curl(aglab, 20)
    assert 'FAILED' not in answers and set(answers) == {'be1', 'be2'}


def _safe(fn, default=''):
    try:
        return fn()
    except (IOError, OSError, ValueError):
        return default


def test_lost_attachment_is_reattached_with_the_same_pins(aglab):
    before = prog_id()
    sh('ip', 'netns', 'exec', 'ag-lb', 'ip', 'link', 'set', 'dev', 'eth0', 'xdpgeneric', 'off')
    sh('ip', 'netns', 'exec', 'ag-lb', 'ip', 'link', 'set', 'dev', 'eth0', 'xdp', 'off', check=False)
    start = time.time()
    assert wait_for(lambda: prog_id() == before, 10, 0.05), aglab.agent.logtext()[-2000:]
    print('\nre-attached %.2fs after the detach (poll 0.5 s)' % (time.time() - start))
    assert wait_for(lambda: 'because program' in aglab.agent.logtext(), 10), 'the restore is logged with its reason'
    assert 'FAILED' not in curl(aglab, 10)


def test_simulated_reboot_agent_brings_the_lb_back(aglab):
    aglab.agent.stop()
    # what a reboot leaves: no attachment, no pins (bpffs is empty), the saved state in /etc
    sh('ip', 'netns', 'exec', 'ag-lb', 'ip', 'link', 'set', 'dev', 'eth0', 'xdpgeneric', 'off', check=False)
    shutil.rmtree(PIN_DIR)
    assert prog_id() is None
    assert curl(aglab, 1, timeout=1) == ['FAILED'], 'without the LB nothing answers on the VIP'
    before = restore_lines(aglab)
    start = time.time()
    aglab.agent.start()
    ok = wait_for(lambda: curl(aglab, 1, timeout=1) != ['FAILED'], 60, 0.05)
    took = time.time() - start
    print('\nLB answered %.2fs after the agent started (pins and attachment gone: load from the compiled-program '
          'cache, pin, attach)' % took)
    assert ok, aglab.agent.logtext()[-3000:]
    restore = new_restore_line(aglab, before)
    assert 'program loaded from the compiled-program cache' in restore, restore
    assert os.path.isdir(PIN_DIR) and prog_id()
    answers = curl(aglab, 20)
    assert 'FAILED' not in answers and set(answers) == {'be1', 'be2'}


def restore_lines(lab):
    return [l for l in lab.agent.logtext().splitlines() if 'restored in' in l]


def new_restore_line(lab, before):
    """The agent's log line of this restore: it is written after the attach, so the LB may answer first."""
    assert wait_for(lambda: len(restore_lines(lab)) > len(before), 30), lab.agent.logtext()[-3000:]
    return restore_lines(lab)[len(before)]


def test_simulated_reboot_without_a_cache_compiles_and_says_so(aglab):
    aglab.agent.stop()
    sh('ip', 'netns', 'exec', 'ag-lb', 'ip', 'link', 'set', 'dev', 'eth0', 'xdpgeneric', 'off', check=False)
    shutil.rmtree(PIN_DIR)
    shutil.rmtree(os.environ['EBPF_NETWORKING_CACHE_DIR'])  # e.g. /var/cache wiped, or the first boot
    before = restore_lines(aglab)
    start = time.time()
    aglab.agent.start()
    ok = wait_for(lambda: curl(aglab, 1, timeout=1) != ['FAILED'], 90, 0.05)
    took = time.time() - start
    print('\nwithout the cache: LB answered %.2fs after the agent started (compile, pin, attach)' % took)
    assert ok, aglab.agent.logtext()[-3000:]
    restore = new_restore_line(aglab, before)
    assert 'compiled with bcc (no cached copy); kept in the compiled-program cache' in restore, restore
    answers = curl(aglab, 10)
    assert 'FAILED' not in answers and set(answers) == {'be1', 'be2'}


def test_failing_backend_leaves_the_table_and_returns(aglab):
    be2 = aglab.node('be2')
    server = be2.procs[0]
    server.kill()
    server.wait()
    be2.procs.remove(server)
    killed = time.time()
    svc, be2_key = '%s:80/tcp' % aglab.ip('lb'), '%s:80' % aglab.ip('be2')
    # the agent writes its status after the table update: "down" there means be2 left the table
    assert wait_for(lambda: _safe(status, {}).get('health', {}).get(svc, {}).get(be2_key, {}).get('state') == 'down',
                    DETECTION + 20), aglab.agent.logtext()[-3000:]
    answers = curl(aglab, 30)
    assert 'FAILED' not in answers, answers
    assert set(answers) == {'be1'}
    st = status()
    be2_state = st['health']['%s:80/tcp' % aglab.ip('lb')]['%s:80' % aglab.ip('be2')]
    assert be2_state['state'] == 'down' and be2_state['last_error']
    print('\nbe2 left the table %.2fs after its server died (bound interval*fall+timeout = %.1fs)'
          % (be2_state['last_change'] - killed, DETECTION))
    stats = run_module('xdp_stats', {'name': NAME})
    assert stats['health']['health']['%s:80/tcp' % aglab.ip('lb')]['%s:80' % aglab.ip('be2')]['state'] == 'down'
    assert 'is DOWN' in aglab.agent.logtext()
    text = scrape_when(lambda t: 'backend="%s:80"' % aglab.ip('be2') in t and
                       _sample(t, 'ebpf_networking_lb_backend_up', aglab.ip('be2')) == 0)
    assert _sample(text, 'ebpf_networking_lb_backend_up', aglab.ip('be1')) == 1

    # a playbook run meanwhile does not put the dead backend back
    rerun = deploy(aglab)
    assert not rerun.get('failed'), rerun.get('msg')
    assert [b['ip'] for b in rerun['services'][0]['backends']] == [aglab.ip('be1')]
    assert any('down' in w for w in rerun.get('warnings', []))

    server_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'backend_server.py')
    be2.spawn(sys.executable, server_script, '--name', 'be2', '--port', '80')
    restarted = time.time()
    assert wait_for(lambda: 'be2' in curl(aglab, 6), 15), aglab.agent.logtext()[-2000:]
    print('be2 took traffic again %.2fs after its server restarted (rise %d x interval %.1fs)'
          % (time.time() - restarted, HEALTH['rise'], HEALTH['interval']))
    assert 'FAILED' not in curl(aglab, 20)


def scrape_when(predicate, timeout=15):
    def matching():
        text = _safe(scrape)
        return text if predicate(text) else ''
    text = wait_for(matching, timeout)
    assert text, 'metrics never matched'
    return text


def _sample(text, name, ip):
    for line in text.splitlines():
        if line.startswith(name + '{') and 'backend="%s:80"' % ip in line:
            return float(line.rsplit(' ', 1)[1])
    return None


def test_metrics_over_http_and_textfile(aglab):
    curl(aglab, 10)
    text = scrape_when(lambda t: all((_sample(t, 'ebpf_networking_lb_backend_new_flows_total', aglab.ip(b)) or 0) > 0
                                     for b in ('be1', 'be2')))
    for ip in (aglab.ip('be1'), aglab.ip('be2')):
        assert _sample(text, 'ebpf_networking_lb_backend_packets_total', ip) is not None
        assert _sample(text, 'ebpf_networking_lb_backend_up', ip) == 1
    assert 'ebpf_networking_lb_flow_table_capacity{deployment="ag_lb"} 65536' in text
    assert 'ebpf_networking_lb_refused_flows_total{deployment="ag_lb"}' in text
    assert '# TYPE ebpf_networking_lb_backend_bytes_total counter' in text
    with open(aglab.agent.textfile) as f:
        assert '# TYPE ebpf_networking_lb_backend_packets_total counter' in f.read()


def test_state_absent_forgets_and_the_agent_stops_restoring(aglab):
    result = run_module('xdp_proxy', {'name': NAME, 'state': 'absent'})
    assert any('remove saved state' in c for c in result['changes'])
    assert not os.path.exists(os.path.join(STATE_DIR, 'xdp_proxy', NAME + '.json'))
    assert wait_for(lambda: 'no longer looked after' in aglab.agent.logtext(), 10)
    time.sleep(1.5)
    assert not os.path.exists(PIN_DIR) and prog_id() is None, 'the agent must not bring it back'
    aglab.agent.stop()
    assert 'agent stopped' in aglab.agent.logtext()


def test_systemd_unit_verifies(tmp_path):
    if not shutil.which('systemd-analyze'):
        pytest.skip('systemd-analyze not installed')
    template = os.path.join(COLLECTION, 'roles', 'host_agent', 'templates', 'ebpf-networking-agent.service.j2')
    launcher = tmp_path / 'ebpf-networking-agent'
    launcher.write_text('#!/bin/sh\n')
    launcher.chmod(0o755)
    unit = tmp_path / 'ebpf-networking-agent.service'
    jinja2 = pytest.importorskip('jinja2')
    text = jinja2.Template(open(template).read(), undefined=jinja2.StrictUndefined).render(
        host_agent_launcher=str(launcher), host_agent_config_file='/etc/ebpf-networking/agent.json')
    unit.write_text(text)
    proc = subprocess.run(['systemd-analyze', 'verify', str(unit)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    assert 'ebpf-networking-agent' not in proc.stdout, proc.stdout


SOCKMAP_SOURCES = ('sockops.bpf.c', 'sockredir.bpf.c', 'sockmap.h')
SOCKMAP_PIN = '/sys/fs/bpf/ebpf_networking/ag_sk'


def sockops_attached(cgroup):
    out = sh('bpftool', '-j', 'cgroup', 'show', cgroup).stdout
    return [p for p in json.loads(out.strip() or '[]') if p.get('attach_type') in ('sock_ops', 'cgroup_sock_ops')]


def run_agent_once(*extra):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION))))
    return subprocess.run(['/usr/bin/python3', '-m', 'ansible_collections.ebpf.networking.plugins.module_utils.host_agent',
                           '--state-dir', STATE_DIR, '--run-dir', RUN_DIR, '--once'] + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                          timeout=300, check=False)


@pytest.fixture
def ag_cgroup(require_root):
    root = '/sys/fs/cgroup/unified'
    if not os.path.isdir(root):
        root = '/sys/fs/cgroup'
    path = os.path.join(root, 'ag-sockmap')
    if not os.path.isdir(path):
        os.mkdir(path)
    yield path
    run_module('sockmap_redirect', {'name': 'ag_sk', 'state': 'absent'})
    os.rmdir(path)


def test_sockmap_is_restored_after_a_simulated_reboot(ag_cgroup, tmp_path):
    args = {'name': 'ag_sk', 'cgroup': ag_cgroup, 'ports': [47001], 'bpf_sources': read_sources(SOCKMAP_SOURCES)}
    result = run_module('sockmap_redirect', args)
    assert not result.get('failed'), result.get('msg')
    assert result['persistent_state'] == os.path.join(STATE_DIR, 'sockmap_redirect', 'ag_sk.json')
    before = sockops_attached(ag_cgroup)
    assert len(before) == 1

    kept = run_agent_once()
    assert kept.returncode == 0, kept.stdout
    assert 'restored in' not in kept.stdout, 'intact: nothing to do'
    assert [p['id'] for p in sockops_attached(ag_cgroup)] == [before[0]['id']]

    # a reboot: no attachment, no pins
    sh('bpftool', 'cgroup', 'detach', ag_cgroup, 'cgroup_sock_ops', 'id', str(before[0]['id']))
    shutil.rmtree(SOCKMAP_PIN)
    assert sockops_attached(ag_cgroup) == []
    textfile = str(tmp_path / 'agent.prom')
    restored = run_agent_once('--textfile', textfile)
    assert restored.returncode == 0, restored.stdout
    assert 'sockmap_redirect/ag_sk: restored' in restored.stdout and 'sock_ops' in restored.stdout
    assert ('sock_ops program loaded from the compiled-program cache' in restored.stdout and
            'sk_msg program loaded from the compiled-program cache' in restored.stdout), restored.stdout
    assert len(sockops_attached(ag_cgroup)) == 1 and os.path.isdir(SOCKMAP_PIN)
    with open(textfile) as f:
        text = f.read()
    assert 'ebpf_networking_sockmap_attached{deployment="ag_sk"} 1' in text
    assert 'ebpf_networking_agent_restores_total{deployment="sockmap_redirect/ag_sk"} 1' in text

    gone = run_module('sockmap_redirect', {'name': 'ag_sk', 'state': 'absent'})
    assert any('remove saved state' in c for c in gone['changes'])
    assert not os.path.exists(os.path.join(STATE_DIR, 'sockmap_redirect', 'ag_sk.json'))


@pytest.mark.parametrize('check,words', [({'interval': 1, 'timeout': 5}, 'longer than interval'),
                                         ({'path': 'healthz'}, 'must start with /'),
                                         ({'fall': 0}, 'fall 0 is out of range')])
def test_bad_health_check_fails_before_anything_is_attached(require_root, check, words):
    result = run_module('xdp_proxy', {
        'name': 'ag_bad', 'netns': 'ag-none', 'interface': 'eth0', 'bpf_sources': read_sources(XDP_SOURCES),
        'services': [{'vip': '10.204.9.1', 'port': 80, 'backends': ['10.204.9.2'], 'health_check': check}]})
    assert result.get('failed') and words in result['msg'] and 'Nothing was changed' in result['msg'], result
    assert 'services[0].health_check' in result['msg']
    assert not os.path.exists('/sys/fs/bpf/ebpf_networking/ag_bad')
    assert not os.path.exists(os.path.join(STATE_DIR, 'xdp_proxy', 'ag_bad.json'))
