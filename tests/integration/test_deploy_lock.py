# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules wait for a deployment's lock while someone else (the host agent restoring it) holds it, and
go on once it is free. Deployments q12_lock*; nothing is loaded (state=absent of nothing)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from conftest import run_module

deploy_lock = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.deploy_lock')


@pytest.mark.parametrize('module', ['xdp_proxy', 'sockmap_redirect'])
def test_module_waits_for_the_agent_holding_the_deployment(require_root, module):
    name = 'q12_lock_' + module[:4]
    done = {}

    def run():
        done['result'] = run_module(module, {'name': name, 'state': 'absent'})
        done['at'] = time.time()
    with deploy_lock.deployment_lock(module, name, 'host agent restore (test)'):
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(2.0)
        assert 'result' not in done, 'the module ran while the agent held the deployment: %s' % done
        released = time.time()
    worker.join(60)
    assert done['result'].get('failed') is not True, done['result']
    assert done['at'] >= released
