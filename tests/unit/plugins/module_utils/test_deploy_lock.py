# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""deploy_lock: one holder at a time across processes, a waiter that gives up names the holder, a dead
holder frees it, bad names are refused before any path is built."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import multiprocessing
import os
import time

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, deploy_lock


def _worker(run_dir, log_path, tag, rounds):
    for n in range(rounds):
        with deploy_lock.deployment_lock('xdp_proxy', 'q12lb', tag, run_dir=run_dir):
            with open(log_path, 'a') as f:
                f.write('%s start %d\n' % (tag, n))
            time.sleep(0.01)
            with open(log_path, 'a') as f:
                f.write('%s end %d\n' % (tag, n))


def test_two_processes_never_hold_it_at_once(tmp_path):
    log = str(tmp_path / 'log')
    procs = [multiprocessing.Process(target=_worker, args=(str(tmp_path), log, tag, 15)) for tag in ('module', 'agent')]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = open(log).read().split('\n')[:-1]
    assert len(lines) == 60
    for start, end in zip(lines[0::2], lines[1::2]):
        assert start.replace('start', 'end') == end, 'interleaved: %s then %s' % (start, end)
    assert set(l.split()[0] for l in lines) == {'module', 'agent'}


def test_a_waiter_that_gives_up_names_the_holder(tmp_path):
    with deploy_lock.deployment_lock('xdp_proxy', 'q12lb', 'ansible module xdp_proxy', run_dir=str(tmp_path)):
        started = time.time()
        with pytest.raises(deploy_lock.DeploymentLocked) as e:
            with deploy_lock.deployment_lock('xdp_proxy', 'q12lb', 'host agent restore', timeout=0.3,
                                             run_dir=str(tmp_path)):
                pytest.fail('got a lock that is held')
        assert time.time() - started >= 0.3
        assert 'pid %d: ansible module xdp_proxy' % os.getpid() in str(e.value)
        # another deployment's lock is independent
        with deploy_lock.deployment_lock('xdp_proxy', 'q12other', 'x', timeout=0, run_dir=str(tmp_path)):
            pass
    with deploy_lock.deployment_lock('xdp_proxy', 'q12lb', 'host agent restore', timeout=0, run_dir=str(tmp_path)):
        pass


def _hold_and_die(run_dir):
    with deploy_lock.deployment_lock('xdp_proxy', 'q12lb', 'doomed', run_dir=run_dir):
        os._exit(3)  # pylint: disable=protected-access


def test_a_crashed_holder_leaves_it_free(tmp_path):
    p = multiprocessing.Process(target=_hold_and_die, args=(str(tmp_path),))
    p.start()
    p.join(30)
    assert p.exitcode == 3
    with deploy_lock.deployment_lock('xdp_proxy', 'q12lb', 'next', timeout=0, run_dir=str(tmp_path)):
        pass


@pytest.mark.parametrize('kind,name', [('xdp_proxy', '../../etc/x'), ('xdp_proxy', 'Bad Name'), ('nope', 'lb')])
def test_bad_names_and_kinds_are_refused(tmp_path, kind, name):
    with pytest.raises(agent_state.StateError):
        with deploy_lock.deployment_lock(kind, name, 'x', timeout=0, run_dir=str(tmp_path)):
            pass
    assert not os.path.exists(str(tmp_path / 'locks' / 'etc'))


def _first_use(run_dir, start_at):
    # Everyone starts at the same instant on a run dir nobody has used: all race to create locks/<kind>/.
    while time.time() < start_at:
        pass
    with deploy_lock.deployment_lock('xdp_proxy', 'q12first', 'first use', timeout=30, run_dir=run_dir):
        pass


def test_many_processes_on_a_fresh_run_dir_all_get_the_lock(tmp_path):
    for attempt in range(5):
        run_dir = str(tmp_path / ('run%d' % attempt))
        start_at = time.time() + 0.3
        procs = [multiprocessing.Process(target=_first_use, args=(run_dir, start_at)) for dummy in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6


def test_a_lock_directory_created_by_another_process_meanwhile_is_used(tmp_path, monkeypatch):
    # The window the fresh-run-dir race hits: the directory appears between the check and the mkdir.
    real_makedirs = os.makedirs

    def makedirs_after_someone_else(path, mode=0o777, **kwargs):
        real_makedirs(path, mode, **kwargs)
        real_makedirs(path, mode)   # raises EEXIST like the loser of the race

    monkeypatch.setattr(os, 'makedirs', makedirs_after_someone_else)
    with deploy_lock.deployment_lock('xdp_proxy', 'q12race', 'race', timeout=0, run_dir=str(tmp_path)):
        pass
    assert os.path.isfile(deploy_lock.lock_path('xdp_proxy', 'q12race', str(tmp_path)))


def test_a_file_where_the_lock_directory_belongs_is_an_error_naming_the_path_and_the_fix(tmp_path):
    (tmp_path / 'locks').write_text(u'not a directory')
    with pytest.raises(agent_state.StateError) as e:
        with deploy_lock.deployment_lock('xdp_proxy', 'q12file', 'file', timeout=0, run_dir=str(tmp_path)):
            pass
    assert str(tmp_path / 'locks' / 'xdp_proxy' / 'q12file.lock') in str(e.value)
    assert "host agent's run_dir setting" in str(e.value) and 'EBPF_NETWORKING_RUN_DIR' not in str(e.value), \
        'the agent was given its run directory: the environment variable is not what to change'


def test_a_module_lock_that_cannot_be_created_names_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_state, 'RUN_DIR', str(tmp_path))
    (tmp_path / 'locks').write_text(u'not a directory')
    with pytest.raises(agent_state.StateError) as e:
        with deploy_lock.deployment_lock('xdp_proxy', 'q12file', 'file', timeout=0):
            pass
    assert str(tmp_path / 'locks' / 'xdp_proxy' / 'q12file.lock') in str(e.value)
    assert 'set by EBPF_NETWORKING_RUN_DIR' in str(e.value)
