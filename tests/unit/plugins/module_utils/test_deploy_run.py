# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run of xdp_proxy, xdp_decap and lb_backend turns each kind of exception into the user's failure:
a message error keeps its text and carries no traceback, an OS error of lb_backend gets its rerun hint,
anything else is an 'unexpected error' with the traceback, and a DeployError passes as raised."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import (
    agent_state, bpf_loader, lb_backend, sockmap_deploy, xdp_decap_deploy, xdp_lb_deploy, xdp_lb_maps)


@pytest.fixture
def pin_root(tmp_path, monkeypatch):
    real = bpf_loader.PinSet
    monkeypatch.setattr(bpf_loader, 'PinSet', lambda name, root=str(tmp_path / 'pins'): real(name, root))
    monkeypatch.setattr(bpf_loader, 'require_bcc', lambda: None)
    monkeypatch.setattr(agent_state, 'STATE_DIR', str(tmp_path / 'state'))
    return tmp_path / 'pins'


def deployments():
    return {
        'xdp_proxy': (xdp_lb_deploy.XdpLbDeployment, {'interface': 'eth0', 'services': []}, xdp_lb_deploy.DeployError),
        'xdp_decap': (xdp_decap_deploy.XdpDecapDeployment, {'interface': 'eth0'}, xdp_decap_deploy.DeployError),
        'lb_backend': (lb_backend.LbBackend, {'vips': ['10.0.0.1']}, lb_backend.BackendError),
    }


def run_raising(kind, exc, monkeypatch):
    """Run kind's deployment (state present) with its present() raising exc; the error it raised."""
    cls, params, error = deployments()[kind]

    def present(*args):
        raise exc
    monkeypatch.setattr(cls, 'present', present)
    with pytest.raises(error) as err:
        cls(dict(params, name='qde', state='present')).run()
    return err.value


@pytest.mark.parametrize('kind', ['xdp_proxy', 'xdp_decap', 'lb_backend'])
@pytest.mark.parametrize('exc', [bpf_loader.LoaderError('bcc said no: install it'),
                                 xdp_lb_maps.ConfigError('vip 1.2.3 is not an IPv4 address')])
def test_a_message_error_is_the_users_message_without_a_traceback(pin_root, monkeypatch, kind, exc):
    err = run_raising(kind, exc, monkeypatch)
    assert err.msg == str(exc)
    assert 'exception' not in err.extra and err.extra['changes'] == []


@pytest.mark.parametrize('kind', ['xdp_proxy', 'xdp_decap', 'lb_backend'])
def test_anything_else_is_an_unexpected_error_with_its_traceback(pin_root, monkeypatch, kind):
    err = run_raising(kind, KeyError('boom'), monkeypatch)
    assert err.msg == "unexpected error: 'boom'"
    assert 'Traceback' in err.extra['exception'] and "KeyError: 'boom'" in err.extra['exception']


@pytest.mark.parametrize('kind', ['xdp_proxy', 'xdp_decap'])
def test_an_os_error_of_a_pinned_deployment_is_unexpected(pin_root, monkeypatch, kind):
    err = run_raising(kind, OSError(errno.EACCES, 'Permission denied'), monkeypatch)
    assert err.msg == 'unexpected error: [Errno 13] Permission denied' and 'exception' in err.extra


def test_an_os_error_of_lb_backend_says_nothing_more_was_changed(pin_root, monkeypatch):
    err = run_raising('lb_backend', OSError(errno.EACCES, 'Permission denied'), monkeypatch)
    assert err.msg == '[Errno 13] Permission denied (nothing more was changed; rerun after fixing it)'
    assert 'exception' not in err.extra


def test_lb_backend_passes_a_state_error_as_the_users_message(pin_root, monkeypatch):
    err = run_raising('lb_backend', agent_state.StateError('state file x is damaged'), monkeypatch)
    assert err.msg == 'state file x is damaged' and 'exception' not in err.extra


@pytest.mark.parametrize('kind', ['xdp_proxy', 'xdp_decap'])  # lb_backend's: test_lb_backend.py
@pytest.mark.parametrize('state', ['present', 'absent'])
def test_a_bad_name_is_the_users_message_not_a_traceback(kind, state):
    cls, params, error = deployments()[kind]
    with pytest.raises(error, match="name 'Bad Name' is invalid") as err:
        cls(dict(params, name='Bad Name', state=state)).run()
    assert 'exception' not in err.value.extra


@pytest.mark.parametrize('kind', ['xdp_proxy', 'xdp_decap', 'lb_backend'])
def test_a_deploy_error_passes_as_raised(pin_root, monkeypatch, kind):
    raised = deployments()[kind][2]('already the message', changes=['one'], custom=1)
    assert run_raising(kind, raised, monkeypatch) is raised


def test_xdp_proxy_names_the_pin_path_in_a_failure(pin_root, monkeypatch):
    err = run_raising('xdp_proxy', bpf_loader.LoaderError('no'), monkeypatch)
    assert err.extra['pin_path'] == str(pin_root / 'qde')


def test_xdp_proxy_names_the_pin_path_when_refusing_another_modules_pins(pin_root):
    (pin_root / 'qde').mkdir(parents=True)
    (pin_root / 'qde' / 'prog_xdp_decap').write_text(u'')
    with pytest.raises(xdp_lb_deploy.DeployError, match='pins of a xdp_decap deployment named qde') as err:
        xdp_lb_deploy.XdpLbDeployment({'name': 'qde', 'interface': 'eth0', 'services': []}).run()
    assert err.value.extra['pin_path'] == str(pin_root / 'qde') and 'exception' not in err.value.extra


def test_sockmap_refuses_another_modules_pins_with_a_message_error(pin_root):
    (pin_root / 'qde').mkdir(parents=True)
    (pin_root / 'qde' / 'prog_xdp_lb').write_text(u'')
    dep = sockmap_deploy.SockmapDeployment({'name': 'qde', 'state': 'absent'})
    # the module and the host agent both report LoaderError and SockmapError as the user's message
    with pytest.raises((sockmap_deploy.SockmapError, bpf_loader.LoaderError), match='pins of a xdp_proxy'):
        dep.apply()
    assert (pin_root / 'qde' / 'prog_xdp_lb').exists()


@pytest.mark.parametrize('kind', ['xdp_proxy', 'xdp_decap'])
def test_present_needs_bcc_and_absent_does_not(pin_root, monkeypatch, kind):
    def no_bcc():
        raise bpf_loader.LoaderError('bcc is not importable by this Python')
    monkeypatch.setattr(bpf_loader, 'require_bcc', no_bcc)
    cls, params, error = deployments()[kind]
    with pytest.raises(error, match='^bcc is not importable'):
        cls(dict(params, name='qde', state='present')).run()
    result = cls(dict(params, name='qde', state='absent')).run()
    assert result['changed'] is False and result['pin_path'] == str(pin_root / 'qde')
