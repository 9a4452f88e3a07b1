# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for integration tests: a namespace lab and a way to run the collection's modules the
way Ansible does (JSON arguments in, JSON result out), with the BPF sources shipped as the action
plugin ships them. Needs root, bcc and pyroute2 (scripts/test.sh runs the bpf_toolchain role first)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from lab_topology import Topology  # noqa: E402  pylint: disable=wrong-import-position

# not the module's default name: a lab deployed on this host (xdp_lb) survives the tests
LB_NAME = 'ebn_xdp_lb'
XDP_SOURCES = ('xdp_proxy.bpf.c', 'xdp_lb.h', 'csum.h', 'lb_flow.h', 'lb_snat.h', 'lb_icmp.h', 'lb_ipv4.h',
               'lb_encap.h', 'lb_icmp_too_big.h', 'lb_nexthop.h')

# modules save their desired state for the host agent (persistent: true): keep the tests' out of /etc
_WORK = os.environ.get('EBPF_NET_TEST_WORK', '/tmp/ebpf-networking-test')
os.environ.setdefault('EBPF_NETWORKING_STATE_DIR', os.path.join(_WORK, 'agent-state'))
os.environ.setdefault('EBPF_NETWORKING_RUN_DIR', os.path.join(_WORK, 'agent-run'))
# and their compiled-program cache: every integration test loads through it (the second load of a build
# comes from the cache), which is what a restore after a reboot does
os.environ.setdefault('EBPF_NETWORKING_CACHE_DIR', os.path.join(_WORK, 'program-cache'))


def read_sources(names):
    return dict((n, open(os.path.join(COLLECTION, 'bpf', n)).read()) for n in names)


def run_module(name, args, check_mode=False):
    """Run plugins/modules/<name>.py with args; returns the parsed result dict."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, f)
        path = f.name
    try:
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION))))
        proc = subprocess.run([sys.executable, '-m', 'ansible_collections.ebpf.networking.plugins.modules.' + name,
                               path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              universal_newlines=True, timeout=300, check=False)
    finally:
        os.unlink(path)
    out = proc.stdout
    try:
        return json.loads(out[out.index('{'):])
    except ValueError:
        raise AssertionError('module %s printed no JSON (rc %d): %s %s' % (name, proc.returncode, out, proc.stderr))


@pytest.fixture(scope='session')
def require_root():
    if os.geteuid() != 0:
        pytest.skip('integration tests need root')


@pytest.fixture(scope='module')
def lab(require_root):
    topo = Topology(clients=2, backends=3, checksum_offload=False).up()
    topo.start_backends(port=80, udp_port=5300)
    yield topo
    for name in (LB_NAME, 'busytest', 'other', 'brokensrc', 'collide', 'lrutest', 'xareclaim', 'xareload', 'xadrain', 'xaold'):
        run_module('xdp_proxy', {'name': name, 'state': 'absent'})
    topo.down()


@pytest.fixture
def xdp():
    """Run xdp_proxy with the BPF sources filled in, as the action plugin does."""
    def call(check_mode=False, **args):
        args.setdefault('name', LB_NAME)
        if args.get('state', 'present') == 'present' and 'bpf_sources' not in args:
            args['bpf_sources'] = read_sources(XDP_SOURCES)
        return run_module('xdp_proxy', args, check_mode=check_mode)
    return call
