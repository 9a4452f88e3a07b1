# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state

PARAMS = {'name': 'lb1', 'state': 'present', 'persistent': True, 'interface': 'eth0',
          '_ansible_check_mode': False, 'services': [{'vip': '10.0.0.1', 'port': 80, 'backends': ['10.0.0.2']}]}


def test_save_keeps_the_desired_state_and_drops_per_run_switches(tmp_path):
    assert agent_state.save('xdp_proxy', 'lb1', PARAMS, str(tmp_path)) is True
    path = tmp_path / 'xdp_proxy' / 'lb1.json'
    doc = json.loads(path.read_text())
    assert doc['params'] == {'name': 'lb1', 'interface': 'eth0', 'services': PARAMS['services']}
    assert oct(os.stat(str(path)).st_mode & 0o777) == oct(0o600)
    assert os.listdir(str(tmp_path / 'xdp_proxy')) == ['lb1.json'], 'no temporary file may be left'


def test_saving_the_same_state_again_changes_nothing(tmp_path):
    agent_state.save('xdp_proxy', 'lb1', PARAMS, str(tmp_path))
    before = agent_state.signature(str(tmp_path))
    assert agent_state.save('xdp_proxy', 'lb1', dict(PARAMS, state='present'), str(tmp_path)) is False
    assert agent_state.signature(str(tmp_path)) == before
    changed = dict(PARAMS, interface='eth1')
    assert agent_state.save('xdp_proxy', 'lb1', changed, str(tmp_path)) is True
    assert agent_state.signature(str(tmp_path)) != before


def test_load_all_returns_good_docs_and_names_bad_files(tmp_path):
    agent_state.save('xdp_proxy', 'lb1', PARAMS, str(tmp_path))
    agent_state.save('sockmap_redirect', 'acc', {'name': 'acc', 'ports': [80]}, str(tmp_path))
    (tmp_path / 'xdp_proxy' / 'torn.json').write_text('{"version": 1, "par')
    (tmp_path / 'xdp_proxy' / 'moved.json').write_text(json.dumps(
        {'version': 1, 'kind': 'xdp_proxy', 'name': 'other', 'params': {}}))
    docs, problems = agent_state.load_all(str(tmp_path))
    assert [(d['kind'], d['name']) for d in docs] == [('xdp_proxy', 'lb1'), ('sockmap_redirect', 'acc')]
    assert len(problems) == 2
    assert any('torn.json' in p for p in problems) and any('moved.json' in p for p in problems)


def test_remove_forgets_state_and_status(tmp_path):
    state, run = str(tmp_path / 'etc'), str(tmp_path / 'run')
    agent_state.save('xdp_proxy', 'lb1', PARAMS, state)
    agent_state.save_status('xdp_proxy', 'lb1', {'health': {}}, run)
    assert agent_state.load_status('xdp_proxy', 'lb1', run) == {'health': {}}
    assert agent_state.remove('xdp_proxy', 'lb1', state, run) is True
    assert agent_state.load_all(state) == ([], [])
    assert agent_state.load_status('xdp_proxy', 'lb1', run) is None
    assert agent_state.remove('xdp_proxy', 'lb1', state, run) is False


@pytest.mark.parametrize('kind,name', [('xdp_proxy', '../etc/passwd'), ('xdp_proxy', 'UPPER'),
                                       ('bogus', 'lb1'), ('xdp_proxy', '')])
def test_bad_kind_or_name_is_refused_before_touching_a_path(tmp_path, kind, name):
    with pytest.raises(agent_state.StateError):
        agent_state.save(kind, name, PARAMS, str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    agent_state.save('xdp_proxy', 'lb1', PARAMS, str(tmp_path))
    path = tmp_path / 'xdp_proxy' / 'lb1.json'
    old = path.read_text()

    def broken_rename(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(agent_state.os, 'rename', broken_rename)
    with pytest.raises(OSError):
        agent_state.save('xdp_proxy', 'lb1', dict(PARAMS, interface='eth9'), str(tmp_path))
    assert path.read_text() == old
    assert os.listdir(str(tmp_path / 'xdp_proxy')) == ['lb1.json']


def test_persist_saves_reports_and_forgets(tmp_path):
    d = str(tmp_path)
    path = str(tmp_path / 'xdp_proxy' / 'lb1.json')
    assert agent_state.persist('xdp_proxy', PARAMS, True, check_mode=True, state_dir=d) == [
        'save desired state to %s' % path]
    assert not (tmp_path / 'xdp_proxy').exists(), 'check mode writes nothing'
    assert agent_state.persist('xdp_proxy', PARAMS, True, state_dir=d) == ['save desired state to %s' % path]
    assert agent_state.persist('xdp_proxy', PARAMS, True, state_dir=d) == [], 'idempotent'
    assert agent_state.persist('xdp_proxy', PARAMS, True, check_mode=True, state_dir=d) == []
    not_persistent = dict(PARAMS, persistent=False)
    assert agent_state.persist('xdp_proxy', not_persistent, True, check_mode=True, state_dir=d)
    assert os.path.exists(path)
    assert 'remove saved state' in agent_state.persist('xdp_proxy', not_persistent, True, state_dir=d)[0]
    assert not os.path.exists(path)
    agent_state.persist('xdp_proxy', PARAMS, True, state_dir=d)
    assert agent_state.persist('xdp_proxy', dict(PARAMS, state='absent'), False, state_dir=d)
    assert agent_state.persist('xdp_proxy', dict(PARAMS, state='absent'), False, state_dir=d) == []


def test_persist_turns_a_write_failure_into_a_message_with_the_fix(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    with pytest.raises(agent_state.StateError) as err:
        agent_state.persist('xdp_proxy', PARAMS, True, state_dir=str(blocker))
    assert 'persistent: false' in str(err.value)


def test_a_state_replaced_while_it_is_read_keeps_the_mtime_of_what_was_read(tmp_path, monkeypatch):
    """A module saves (atomic rename) while the agent reads: the doc must carry the mtime of the file
    it came from, so the agent's next sync sees the new file as a change and does not keep the old
    params under the new file's mtime."""
    agent_state.save('xdp_proxy', 'lb1', PARAMS, str(tmp_path))
    path = str(tmp_path / 'xdp_proxy' / 'lb1.json')
    os.utime(path, (1000000000, 1000000000))
    real_load = json.load
    saved = []

    def load_then_module_saves(f):
        doc = real_load(f)
        if not saved:  # save() reads the old file too
            saved.append(True)
            agent_state.save('xdp_proxy', 'lb1', dict(PARAMS, interface='eth9'), str(tmp_path))
            os.utime(path, (2000000000, 2000000000))
        return doc

    monkeypatch.setattr(agent_state.json, 'load', load_then_module_saves)
    docs, problems = agent_state.load_all(str(tmp_path))
    monkeypatch.setattr(agent_state.json, 'load', real_load)
    assert problems == [] and docs[0]['params']['interface'] == 'eth0'
    assert docs[0]['mtime'] == 1000000000
    assert agent_state.load_all(str(tmp_path))[0][0]['mtime'] == 2000000000
