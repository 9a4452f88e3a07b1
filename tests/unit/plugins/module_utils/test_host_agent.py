# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's loop with a fake driver (no BPF): restore, keep what is intact, health-driven table
changes, never below one backend, metrics and status. Health checks hit real loopback sockets."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import socket
import urllib.request

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, host_agent, prometheus


class FakeDriver(object):
    kind = 'xdp_proxy'

    def __init__(self):
        self.broken = {}       # name -> reason the deployment is not in place
        self.applied = []      # (name, backends of the first service)
        self.fail_apply = None
        self.removed = []

    def check(self, name, params):
        return self.broken.get(name)

    def apply(self, name, params, services):
        if self.fail_apply:
            raise host_agent.ApplyError(self.fail_apply)
        self.applied.append((name, [b if isinstance(b, str) else b['ip'] for b in services[0]['backends']]))
        self.broken.pop(name, None)
        return {'changes': ['applied %d backends' % len(services[0]['backends'])]}

    def netns_path(self, params):
        return None

    def remove(self, name):
        self.removed.append(name)

    def families(self, name, params, health):
        return prometheus.lb_families(name, [], {}, 0, 64, health)


class Listener(object):
    """A loopback port that accepts connections (the backend is up) until closed."""

    def __init__(self, port=0):
        self.port = port
        self.sock = None
        self.open()

    def open(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', self.port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def env(tmp_path):
    cfg = host_agent.load_config(None, {'state_dir': str(tmp_path / 'etc'), 'run_dir': str(tmp_path / 'run'),
                                        'metrics_port': None, 'textfile': str(tmp_path / 'prom' / 'agent.prom')})
    driver = FakeDriver()
    clock = Clock()
    agent = host_agent.Agent(cfg, {'xdp_proxy': driver}, clock=clock)
    return cfg, driver, clock, agent


def save(cfg, name='lb1', ports=(), health=None):
    svc = {'vip': '10.9.0.1', 'port': 80, 'backends': [{'ip': '127.0.0.1', 'port': p} for p in ports]}
    if health is not None:
        svc['health_check'] = health
    agent_state.save('xdp_proxy', name, {'name': name, 'interface': 'eth0', 'services': [svc]}, cfg['state_dir'])


def test_intact_deployment_is_left_alone_and_a_lost_one_is_restored(env):
    cfg, driver, clock, agent = env
    save(cfg, ports=(81, 82))
    agent.tick()
    assert driver.applied == [], 'pins and attachment intact: nothing re-applied (live flows kept)'
    driver.broken['lb1'] = 'pins missing (not deployed)'
    agent.tick()
    assert driver.applied == [('lb1', ['127.0.0.1', '127.0.0.1'])]
    assert agent.restores == {'xdp_proxy/lb1': 1}
    status = agent_state.load_status('xdp_proxy', 'lb1', cfg['run_dir'])
    assert status['last_restore']['reason'] == 'pins missing (not deployed)'
    agent.tick()
    assert len(driver.applied) == 1


def test_a_failing_restore_is_retried_and_logged_once(env, caplog):
    cfg, driver, clock, agent = env
    down = Listener()
    down.close()
    save(cfg, ports=(81, down.port), health={'interval': 0.5, 'timeout': 0.2, 'fall': 1})
    driver.broken['lb1'] = 'program not attached'
    driver.fail_apply = 'container lb is not running'
    for _round in range(3):
        agent.tick()
    assert sum('container lb is not running' in r.getMessage() for r in caplog.records) == 1
    assert agent.errors['xdp_proxy/lb1'] == 3, 'no health round while the deployment is not in place'
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    driver.fail_apply = None
    agent.tick()
    assert driver.applied and 'lb1' not in driver.broken


def test_removed_state_is_forgotten(env):
    cfg, driver, clock, agent = env
    save(cfg, ports=(81,))
    agent.tick()
    assert list(agent.tracked) == ['xdp_proxy/lb1']
    agent_state.remove('xdp_proxy', 'lb1', cfg['state_dir'], cfg['run_dir'])
    agent.tick()
    assert agent.tracked == {} and driver.removed == ['lb1']


def test_health_fall_takes_backend_out_rise_brings_it_back_never_below_one(env, caplog):
    cfg, driver, clock, agent = env
    a, b = Listener(), Listener()
    try:
        save(cfg, ports=(a.port, b.port), health={'type': 'tcp', 'interval': 1, 'timeout': 0.2, 'rise': 2, 'fall': 2})
        agent.tick()
        assert driver.applied == [], 'all healthy: the table stays as the module wrote it'
        b.close()
        clock.now += 1
        agent.tick()
        assert driver.applied == [], 'one failure is not enough (fall 2)'
        clock.now += 1
        agent.tick()
        assert driver.applied[-1] == ('lb1', ['127.0.0.1']), 'after fall failures b leaves the table'
        status = agent_state.load_status('xdp_proxy', 'lb1', cfg['run_dir'])
        be_b = '127.0.0.1:%d' % b.port
        assert status['health']['10.9.0.1:80/tcp'][be_b]['state'] == 'down'
        assert status['health']['10.9.0.1:80/tcp'][be_b]['last_change'] == clock.now
        assert 'ECONNREFUSED' in status['health']['10.9.0.1:80/tcp'][be_b]['last_error']

        a.close()
        for _round in range(2):
            clock.now += 1
            agent.tick()
        assert driver.applied[-1] == ('lb1', ['127.0.0.1', '127.0.0.1']), 'all down: keep them all'
        assert any('every backend of 10.9.0.1:80/tcp fails' in r.getMessage() for r in caplog.records)
        status = agent_state.load_status('xdp_proxy', 'lb1', cfg['run_dir'])
        assert status['all_backends_down'] == {'10.9.0.1:80/tcp': True}

        a.open()
        for _round in range(2):
            clock.now += 1
            agent.tick()
        assert driver.applied[-1] == ('lb1', ['127.0.0.1']), 'a is back after rise successes, b still down'
        applied_ports = [be['port'] for be in agent.tracked['xdp_proxy/lb1'].applied[0]['backends']]
        assert applied_ports == [a.port]

        b.open()
        for _round in range(2):
            clock.now += 1
            agent.tick()
        applied_ports = [be['port'] for be in agent.tracked['xdp_proxy/lb1'].applied[0]['backends']]
        assert applied_ports == [a.port, b.port]
    finally:
        a.close()
        b.close()


def test_a_module_run_rewrites_the_table_and_the_agent_takes_the_down_backend_out_again(env):
    cfg, driver, clock, agent = env
    a, b = Listener(), Listener()
    b.close()
    try:
        save(cfg, ports=(a.port, b.port), health={'interval': 1, 'timeout': 0.2, 'rise': 1, 'fall': 1})
        agent.tick()
        assert len(driver.applied) == 1
        # the playbook runs again with one more backend: the module applies everything and saves it
        save(cfg, ports=(a.port, b.port, a.port + 1 if a.port + 1 != b.port else a.port + 2),
             health={'interval': 1, 'timeout': 0.2, 'rise': 1, 'fall': 1})
        agent.tick()
        applied = agent.tracked['xdp_proxy/lb1'].applied[0]['backends']
        assert b.port not in [be['port'] for be in applied], 'health kept across the module run'
        assert len(driver.applied) == 2
    finally:
        a.close()


def test_metrics_textfile_and_http_endpoint(env, tmp_path):
    cfg, driver, clock, agent = env
    save(cfg, ports=(81,))
    agent.tick()
    text = (tmp_path / 'prom' / 'agent.prom').read_text()
    assert 'ebpf_networking_lb_attached{deployment="lb1"} 1' in text
    assert 'ebpf_networking_agent_deployments 1' in text
    server = host_agent.start_metrics_server('127.0.0.1', 0, lambda: agent.metrics_text)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as resp:
            assert resp.headers['Content-Type'].startswith('text/plain; version=0.0.4')
            assert resp.read().decode() == agent.metrics_text
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen('http://127.0.0.1:%d/other' % port, timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_bad_saved_health_check_is_an_error_not_a_crash(env, caplog):
    cfg, driver, clock, agent = env
    save(cfg, ports=(81,), health={'type': 'icmp'})
    agent.tick()
    assert agent.errors['xdp_proxy/lb1'] == 1
    assert any('tcp or http' in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize('content,words', [('{"poll_interval": 0}', 'poll_interval'), ('[1]', 'JSON object'),
                                           ('{"metrics_port": 99999}', 'metrics_port'), ('{x', 'not valid JSON'),
                                           ('{"colour": 1}', 'unknown keys colour')])
def test_bad_config_is_refused(tmp_path, content, words):
    path = tmp_path / 'agent.json'
    path.write_text(content)
    with pytest.raises(host_agent.AgentConfigError) as err:
        host_agent.load_config(str(path))
    assert words in str(err.value)


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / 'agent.json'
    path.write_text(json.dumps({'metrics_port': 9500, 'poll_interval': 2}))
    cfg = host_agent.load_config(str(path), {'poll_interval': 0.5, 'textfile': None})
    assert cfg['metrics_port'] == 9500 and cfg['poll_interval'] == 0.5 and cfg['metrics_address'] == '127.0.0.1'


def test_text_sources_are_appended_and_a_failing_one_is_skipped(env, tmp_path):
    cfg, driver, clock, agent = env

    def broken():
        raise RuntimeError('drop monitor exploded')
    agent.text_sources = [broken, lambda: ['# TYPE ebpf_networking_drops_total counter',
                                           'ebpf_networking_drops_total{reason="NO_SOCKET"} 3']]
    agent.tick()
    assert agent.metrics_text.endswith('ebpf_networking_drops_total{reason="NO_SOCKET"} 3\n')
    assert 'ebpf_networking_agent_deployments 0' in agent.metrics_text


def test_drop_monitor_is_a_source_only_when_configured(env):
    cfg, driver, clock, agent = env
    assert host_agent.add_optional_sources(agent).text_sources == []
    agent.config['drop_monitor'] = True
    assert isinstance(host_agent.add_optional_sources(agent).text_sources[0], host_agent.DropMonitorSource)


def test_a_busy_metrics_port_is_a_clear_error_not_a_traceback(tmp_path, caplog):
    busy = Listener()
    try:
        rc = host_agent.main(['--state-dir', str(tmp_path / 'etc'), '--run-dir', str(tmp_path / 'run'),
                              '--metrics-port', str(busy.port), '--pidfile', str(tmp_path / 'agent.pid')])
    finally:
        busy.close()
    assert rc == 1
    assert any('cannot serve metrics on 127.0.0.1:%d' % busy.port in r.getMessage() for r in caplog.records)
    assert not (tmp_path / 'agent.pid').exists(), 'the pidfile goes with the process'


def test_once_runs_one_round_and_exits(tmp_path):
    rc = host_agent.main(['--state-dir', str(tmp_path / 'etc'), '--run-dir', str(tmp_path / 'run'), '--once',
                          '--textfile', str(tmp_path / 'm.prom'), '--config', ''])
    assert rc == 0
    assert 'ebpf_networking_agent_deployments 0' in (tmp_path / 'm.prom').read_text()


def test_the_loop_wakes_for_the_next_health_check_before_the_next_poll(env):
    cfg, driver, clock, agent = env
    a = Listener()
    try:
        save(cfg, ports=(a.port,), health={'interval': 0.3, 'timeout': 0.1})
        assert agent.sleep_time(0) == cfg['poll_interval']
        agent.tick()
        assert abs(agent.sleep_time(0) - 0.3) < 1e-6, 'next check in 0.3 s, poll in 1 s'
        clock.now += 0.25
        assert abs(agent.sleep_time(0) - 0.05) < 1e-6
        clock.now += 1
        assert agent.sleep_time(0) == 0.01
    finally:
        a.close()


# -- the per-deployment lock shared with module runs (deploy_lock) --

def test_no_restore_while_a_module_run_holds_the_lock(env):
    from ansible_collections.ebpf.networking.plugins.module_utils import deploy_lock
    cfg, driver, clock, agent = env
    save(cfg, ports=(81, 82))
    agent.tick()
    driver.broken['lb1'] = 'pins missing (not deployed)'   # e.g. a module run between unpin and re-pin
    with deploy_lock.deployment_lock('xdp_proxy', 'lb1', 'ansible module xdp_proxy', run_dir=cfg['run_dir']):
        agent.tick()
        agent.tick()
        assert driver.applied == [], 'the agent applied while a module run held the deployment'
        assert not agent.errors, 'a busy deployment is not an error'
    agent.tick()
    assert driver.applied == [('lb1', ['127.0.0.1', '127.0.0.1'])]


def test_no_restore_of_a_state_removed_before_the_lock_was_ours(env):
    """The module (state=absent) removes the saved state and the pins while the agent is between its
    check and its lock: the agent must not put back what was just removed."""
    cfg, driver, clock, agent = env
    save(cfg, ports=(81, 82))
    agent.tick()

    def check_racing_a_module(name, params):
        agent_state.remove('xdp_proxy', name, cfg['state_dir'], cfg['run_dir'])
        return 'pins missing (not deployed)'
    driver.check = check_racing_a_module
    agent.tick()
    assert driver.applied == []
    agent.tick()
    assert driver.applied == [] and agent.tracked == {}


def test_no_restore_of_a_state_replaced_before_the_lock_was_ours(env):
    cfg, driver, clock, agent = env
    save(cfg, ports=(81, 82))
    agent.tick()
    calls = []

    def check_racing_a_module(name, params):
        if not calls:
            import os
            import time as _time
            path = agent_state.state_path('xdp_proxy', name, cfg['state_dir'])
            save(cfg, ports=(83,))
            os.utime(path, (_time.time() + 5, _time.time() + 5))  # a new mtime even on coarse clocks
        calls.append(name)
        return 'pins missing (not deployed)'
    driver.check = check_racing_a_module
    agent.tick()
    assert driver.applied == [], 'applied the saved state the module had just replaced'
    agent.tick()
    assert driver.applied == [('lb1', ['127.0.0.1'])], 'the new saved state is applied'


def test_a_lock_that_cannot_be_created_is_an_error_of_that_deployment_and_retried(env, caplog):
    """The run directory is damaged (a file where locks/ belongs): the restore is reported as failed with
    the path and the fix, the agent keeps running, and it restores once the run directory is mended."""
    cfg, driver, clock, agent = env
    save(cfg, ports=(81, 82))
    agent.tick()
    driver.broken['lb1'] = 'pins missing (not deployed)'
    locks = os.path.join(cfg['run_dir'], 'locks')
    if os.path.isdir(locks):
        shutil.rmtree(locks)
    if not os.path.isdir(cfg['run_dir']):
        os.makedirs(cfg['run_dir'])
    with open(locks, 'w') as f:
        f.write('in the way')
    agent.tick()
    assert driver.applied == []
    assert agent.errors.get('xdp_proxy/lb1') == 1
    assert any("host agent's run_dir setting" in r.getMessage() and locks in r.getMessage() for r in caplog.records)
    os.unlink(locks)
    clock.now += 60
    agent.tick()
    assert driver.applied == [('lb1', ['127.0.0.1', '127.0.0.1'])]


class FakeDeployment(object):
    """What lb_backend.LbBackend / xdp_decap_deploy.XdpDecapDeployment look like to the agent: run() returns
    the changes (check mode: would make) or raises DeployError."""

    def __init__(self, changes, error=None):
        self.changes, self.error = changes, error

    def run(self):
        if self.error:
            from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError
            raise DeployError(self.error)
        return {'changed': bool(self.changes), 'changes': self.changes}


class CheckedDriver(host_agent.CheckedByModuleDriver):
    kind = 'lb_backend'

    def __init__(self, missing, error=None):
        self.missing, self.error, self.runs = missing, error, []

    def deployment(self, name, params, check_mode):
        self.runs.append(check_mode)
        if check_mode:
            return FakeDeployment(self.missing, self.error)
        done, self.missing = self.missing, []
        return FakeDeployment(done, self.error)


def test_a_backend_deployment_is_in_place_when_its_check_mode_run_would_change_nothing():
    driver = CheckedDriver([])
    assert driver.check('b', {}) is None and driver.runs == [True], 'checked in check mode only'
    driver = CheckedDriver(['add 10.0.0.1/32 to lo', 'set net.ipv4.conf.all.arp_ignore = 1 (was 0)'])
    assert driver.check('b', {}) == 'not in place (add 10.0.0.1/32 to lo and 1 more)'
    assert driver.apply('b', {}, None)['changes'][0] == 'add 10.0.0.1/32 to lo'
    assert driver.runs == [True, False] and driver.check('b', {}) is None


def test_a_backend_deployment_that_cannot_be_checked_or_applied_is_an_apply_error():
    driver = CheckedDriver([], error='interface eth0 does not exist in netns:x (it has: lo)')
    assert driver.check('b', {}) == 'check failed: interface eth0 does not exist in netns:x (it has: lo)'
    with pytest.raises(host_agent.ApplyError, match='interface eth0 does not exist'):
        driver.apply('b', {}, None)


def test_the_agent_has_a_driver_for_every_saved_kind():
    agent = host_agent.Agent(dict(host_agent.CONFIG_DEFAULTS))
    assert sorted(agent.drivers) == sorted(agent_state.KINDS)
    assert isinstance(agent.drivers['lb_backend'], host_agent.LbBackendDriver)
    assert isinstance(agent.drivers['xdp_decap'], host_agent.XdpDecapDriver)
