# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_deploy as d

MODULE_UTILS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'plugins', 'module_utils')


@pytest.mark.parametrize('name', ['xdp_lb_deploy.py', 'xdp_decap_deploy.py', 'lb_backend.py', 'deploy_run.py',
                                  'pin_kinds.py'])
def test_no_import_from_ansible_so_a_host_agent_can_use_it(name):
    tree = ast.parse(open(os.path.join(MODULE_UTILS, name)).read())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert [n for n in names if n == 'ansible' or n.startswith('ansible.')] == []


def test_defaults_fill_what_the_caller_left_out():
    dep = d.XdpLbDeployment({'name': 'x', 'interface': 'eth0', 'max_flows': None})
    assert dep.p['max_flows'] == d.DEFAULTS['max_flows'] and dep.p['interface'] == 'eth0'
