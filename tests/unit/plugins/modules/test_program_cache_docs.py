# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The doc fragment program_cache says how long a run waits for the deployment lock: every module that
takes that lock extends it, and the wait it documents is the module's LOCK_TIMEOUT."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os
import re

import pytest
import yaml

from ansible_collections.ebpf.networking.plugins.doc_fragments.program_cache import ModuleDocFragment

MODULES = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'plugins', 'modules')
LOCKING = sorted(n[:-3] for n in os.listdir(MODULES)
                 if n.endswith('.py') and 'deploy_lock.deployment_lock(' in open(os.path.join(MODULES, n)).read())


def test_the_modules_taking_the_deployment_lock_are_found():
    assert LOCKING == ['sockmap_redirect', 'xdp_proxy']


@pytest.mark.parametrize('name', LOCKING)
def test_a_module_taking_the_deployment_lock_documents_it_with_its_timeout(name):
    module = importlib.import_module('ansible_collections.ebpf.networking.plugins.modules.%s' % name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert 'ebpf.networking.program_cache' in doc.get('extends_documentation_fragment', [])
    notes = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['notes']
    waits = [int(n) for n in re.findall(r'waits \(up to (\d+) s\)', ' '.join(notes))]
    assert waits == [module.LOCK_TIMEOUT]
