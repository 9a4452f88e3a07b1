# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lock per deployment, taken by a module run and by the host agent before they touch its pins.

Both change the same pins and attachments (a module reloading while the agent restores would pin over
each other's staging directory, or the agent could put back what a module run is removing). The lock is
flock(2) on <run_dir>/locks/<kind>/<name>.lock: the kernel drops it when its holder dies, so a crash never
leaves a deployment locked. The holder writes its pid and purpose into the file, so a waiter that gives up
can say who holds it. No import from ansible: the agent uses it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import time

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state

POLL = 0.05


class DeploymentLocked(Exception):
    """The lock was not free within the timeout; holder is what the holder wrote ('pid N: purpose')."""

    def __init__(self, msg, holder=None):
        super(DeploymentLocked, self).__init__(msg)
        self.holder = holder


def lock_path(kind, name, run_dir=None):
    agent_state.status_path(kind, name, run_dir)  # the same name and kind checks (StateError) as saved state
    return os.path.join(run_dir or agent_state.RUN_DIR, 'locks', kind, name + '.lock')


def _holder(fd):
    try:
        return os.pread(fd, 200, 0).decode('utf-8', 'replace').strip() or None
    except OSError:
        return None


@contextlib.contextmanager
def deployment_lock(kind, name, purpose, timeout=None, run_dir=None):
    """Hold the deployment's lock for the block. timeout: seconds to wait (None: forever, 0: one try).

    Raises DeploymentLocked when it stays taken, agent_state.StateError for a bad kind or name.
    """
    path = lock_path(kind, name, run_dir)
    directory = os.path.dirname(path)
    try:
        agent_state.make_dirs(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except (IOError, OSError) as e:
        # the agent passes its configured run_dir; modules use the environment's
        setting = 'the host agent\'s run_dir setting' if run_dir else 'EBPF_NETWORKING_RUN_DIR'
        raise agent_state.StateError(
            'cannot create the lock file %s of deployment %s/%s: %s. The run directory (%s, set by %s) must be '
            'a writable directory on a local file system; remove what is in the way or point %s elsewhere.'
            % (path, kind, name, e.strerror or e, run_dir or agent_state.RUN_DIR, setting, setting))
    try:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if deadline is not None and time.time() >= deadline:
                holder = _holder(fd)
                raise DeploymentLocked('%s/%s is being changed by another process (%s)%s'
                                       % (kind, name, holder or 'holder unknown',
                                          ' for more than %g s' % timeout if timeout else ''), holder)
            time.sleep(POLL)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, ('pid %d: %s\n' % (os.getpid(), purpose)).encode(), 0)
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
