# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import netns_names


@pytest.fixture
def netns_dir(tmp_path):
    d = tmp_path / 'netns'
    d.mkdir()
    (d / 'blue').write_text('')
    return str(d)


def test_labels_named_container_and_unknown(netns_dir):
    blue = os.stat(os.path.join(netns_dir, 'blue')).st_ino
    names = netns_names.NetnsNames(netns_dir=netns_dir, containers={12345: 'client'})
    assert names.label(blue) == 'netns:blue'
    assert names.describe(12345) == {'inode': 12345, 'name': 'container:client', 'container': 'client'}
    assert names.label(99) == 'netns:99' and names.label(0) == 'unknown'


def test_resolve_by_name_container_and_path(netns_dir):
    blue = os.stat(os.path.join(netns_dir, 'blue')).st_ino
    assert netns_names.resolve('blue', netns_dir=netns_dir, containers={}) == blue
    assert netns_names.resolve('client', netns_dir=netns_dir, containers={777: 'client'}) == 777
    assert netns_names.resolve(os.path.join(netns_dir, 'blue'), netns_dir=netns_dir, containers={}) == blue


@pytest.mark.parametrize('spec,message', [('nope', 'neither a running container'), ('', 'empty'),
                                          ('/no/such/path', 'does not exist')])
def test_resolve_refuses_unknown(netns_dir, spec, message):
    with pytest.raises(ValueError, match=message):
        netns_names.resolve(spec, netns_dir=netns_dir, containers={777: 'client'})


def test_docker_netns_maps_pids_to_names():
    own = os.stat('/proc/self/ns/net').st_ino

    def run(argv, **_kw):
        if argv[:2] == ['docker', 'ps']:
            return subprocess.CompletedProcess(argv, 0, 'abc\n', '')
        return subprocess.CompletedProcess(argv, 0, json.dumps([{'Name': '/client', 'State': {'Pid': os.getpid()}}]), '')
    assert netns_names.docker_netns(run=run) == {own: 'client'}


def test_docker_netns_without_docker_is_empty():
    def run(argv, **_kw):
        raise OSError('no docker')
    assert netns_names.docker_netns(run=run) == {}
