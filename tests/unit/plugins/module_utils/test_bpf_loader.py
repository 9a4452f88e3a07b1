# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpf_loader.run_command: the (rc, stdout, stderr) runner the host agent and XdpLbDeployment give
container_pid when no AnsibleModule.run_command is at hand; require_sources: the tracers' check that the
action plugin shipped every source."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import sys

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import (
    bpf_loader, drop_tracer, host_agent, path_trace, xdp_lb_deploy)


def test_run_command_returns_rc_stdout_and_stderr_as_text():
    code = 'import sys; sys.stdout.write("out\\n"); sys.stderr.write("err\\n"); sys.exit(3)'
    assert bpf_loader.run_command([sys.executable, '-c', code]) == (3, 'out\n', 'err\n')


def test_the_host_agents_deployments_ask_docker_with_it():
    assert xdp_lb_deploy.XdpLbDeployment({'name': 'x'}).run_command is bpf_loader.run_command
    sockmap = host_agent.SockmapRedirectDriver._deployment('x', {})
    assert sockmap.run_command is bpf_loader.run_command


def test_require_sources_names_every_missing_one():
    bpf_loader.require_sources({'a.bpf.c': '', 'a.h': ''}, ('a.bpf.c', 'a.h'))
    with pytest.raises(bpf_loader.LoaderError, match='^bpf_sources lacks b.h, c.h: run this module through its '
                                                     'action plugin$'):
        bpf_loader.require_sources({'a.bpf.c': ''}, ('a.bpf.c', 'b.h', 'c.h'))
    with pytest.raises(bpf_loader.LoaderError, match='lacks a.bpf.c'):
        bpf_loader.require_sources(None, ('a.bpf.c',))


@pytest.mark.parametrize('tracer,extra,first_missing', [
    (path_trace.PathTracer, {'max_packets': 10}, 'skb_path.h'),
    (drop_tracer.DropTracer, {'max_events': 1000, 'xdp': True}, 'skb_drop.bpf.c'),
])
def test_the_tracers_refuse_missing_sources_before_anything_else_even_in_check_mode(tracer, extra, first_missing):
    params = dict((k, v.get('default')) for k, v in drop_tracer.SELECTION_SPEC.items())
    params.update(extra, bpf_sources={'skb_path.bpf.c': ''})
    with pytest.raises(Exception, match='^bpf_sources lacks %s, .*: run this module through its action plugin$'
                       % first_missing):
        tracer(params, None, True).run()
