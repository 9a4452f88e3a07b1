# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs a module's main() in-process with arguments, as AnsibleModule reads them, and returns how it
ended: ('exit', result) or ('fail', result). Any other exception (a traceback for the user) propagates."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class _Done(Exception):
    def __init__(self, how, result):
        super(_Done, self).__init__(how)
        self.how, self.result = how, result


@pytest.fixture
def run_module(monkeypatch):
    def run(module, args):
        monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args})))

        def exit_json(self, **kw):
            raise _Done('exit', kw)

        def fail_json(self, msg, **kw):
            kw['msg'] = msg
            raise _Done('fail', kw)
        monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
        monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
        try:
            module.main()
        except _Done as done:
            return done.how, done.result
        raise AssertionError('%s returned without exit_json or fail_json' % module.__name__)
    return run
