# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpf_loader.run_command: the (rc, stdout, stderr) runner the host agent and XdpLbDeployment give
container_pid when no AnsibleModule.run_command is at hand."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import sys

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, host_agent, xdp_lb_deploy


def test_run_command_returns_rc_stdout_and_stderr_as_text():
    code = 'import sys; sys.stdout.write("out\\n"); sys.stderr.write("err\\n"); sys.exit(3)'
    assert bpf_loader.run_command([sys.executable, '-c', code]) == (3, 'out\n', 'err\n')


def test_the_host_agents_deployments_ask_docker_with_it():
    assert xdp_lb_deploy.XdpLbDeployment({'name': 'x'}).run_command is bpf_loader.run_command
    sockmap = host_agent.SockmapRedirectDriver._deployment('x', {})
    assert sockmap.run_command is bpf_loader.run_command
