# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ships the collection's BPF C sources with a task.

Modules run on the target through AnsiballZ, which carries Python only. The action plugin of each
BPF module reads the files it needs from the collection's bpf/ directory on the controller and
passes them as the module's bpf_sources option; the module compiles them there with bcc.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

BPF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bpf')


def read_sources(files, bpf_dir=BPF_DIR):
    sources = {}
    for name in files:
        path = os.path.join(bpf_dir, name)
        try:
            with open(path) as f:
                sources[name] = f.read()
        except (IOError, OSError) as e:
            raise AnsibleActionFail('BPF source %s is missing from the collection (%s): reinstall '
                                    'ebpf.networking' % (path, e))
    return sources


class BpfSourceAction(ActionBase):
    """Base for action plugins of modules that compile BPF programs on the target."""

    BPF_FILES = ()

    def run(self, tmp=None, task_vars=None):
        result = super(BpfSourceAction, self).run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get('bpf_sources'):
            args['bpf_sources'] = read_sources(self.BPF_FILES)
        module = getattr(self._task, 'resolved_action', None) or self._task.action
        result.update(self._execute_module(module_name=module, module_args=args, task_vars=task_vars))
        return result
