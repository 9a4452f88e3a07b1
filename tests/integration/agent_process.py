# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host agent as the host_agent role runs it, for integration tests: its own process, /usr/bin/python3
(where bcc lives), no ansible, the collection on PYTHONPATH; state and run directories of the test."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))


def wait_for(what, timeout, step=0.1):
    """what()'s first true value within timeout seconds, else its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    return what()


class AgentProcess(object):
    def __init__(self, state_dir, run_dir, log, args=()):
        self.proc = None
        self.log = log
        self.base = ['/usr/bin/python3', '-m', 'ansible_collections.ebpf.networking.plugins.module_utils.host_agent',
                     '--state-dir', state_dir, '--run-dir', run_dir] + list(args)

    @staticmethod
    def env():
        return dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION))))

    def start(self, *extra):
        self.proc = subprocess.Popen(self.base + list(extra), stdout=open(self.log, 'a'), stderr=subprocess.STDOUT,
                                     env=self.env())
        return self

    def once(self, *extra):
        """One round (--once): the CompletedProcess, its log in stdout."""
        return subprocess.run(self.base + ['--once'] + list(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, env=self.env(), timeout=300, check=False)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def logtext(self):
        if not os.path.exists(self.log):
            return ''
        with open(self.log) as f:
            return f.read()
