# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module run whose desired state the host agent keeps (persistent: true), for the backend modules
lb_backend and xdp_decap: under the deployment's lock (the agent takes it before restoring), the state
saved after a present run and forgotten before an absent one, every failure a fail_json naming the fix.

Takes the AnsibleModule as an argument and imports nothing from `ansible.`, like the rest of module_utils.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, deploy_lock
from ansible_collections.ebpf.networking.plugins.module_utils.deploy_run import DeployError

LOCK_TIMEOUT = 120  # seconds: longer than a restore that compiles on a busy host


def run_saved(module, kind, run, invocation=None):
    """run() (raising DeployError) for module.params of deployment kind; returns its result with the
    saved-state change lines and persistent_state added, or fails the module."""
    params = module.params
    present = params['state'] == 'present'
    extra = {} if invocation is None else {'invocation': invocation}
    saved = []
    held = []
    try:
        with deploy_lock.deployment_lock(kind, params['name'], 'ansible module %s' % kind, timeout=LOCK_TIMEOUT):
            held.append(True)
            if not present:
                # forget first: the agent must not restore what is being removed
                saved = agent_state.persist(kind, params, False, module.check_mode)
            elif params['persistent'] and not module.check_mode:
                require_writable(kind)  # before anything changes: not a configuration the agent cannot keep
            try:
                result = run()
            except DeployError as e:
                msg = e.msg
                if present and params['persistent'] and os.path.exists(agent_state.state_path(kind, params['name'])):
                    # this module is not transactional: what the run changed before failing stays, and the
                    # agent goes on restoring the configuration saved by the last run that succeeded
                    msg += (' The host agent keeps restoring the configuration of the last successful run (%s) '
                            'until a run succeeds.' % agent_state.state_path(kind, params['name']))
                module.fail_json(msg=msg, **dict(extra, **e.extra))
            if present:
                try:
                    saved = agent_state.persist(kind, params, True, module.check_mode)
                except agent_state.StateError as e:
                    module.fail_json(msg='%s (the %s configuration itself was applied)' % (e, kind), changed=True,
                                     changes=result.get('changes', []), **extra)
    except deploy_lock.DeploymentLocked as e:
        module.fail_json(msg='%s: waited %d s for it. Nothing was changed; run again once it is done (the host '
                         'agent restoring it can take a while on a busy host).' % (e, LOCK_TIMEOUT), **extra)
    except agent_state.StateError as e:
        module.fail_json(msg='%s. Nothing was changed.' % e, **extra)
    except (IOError, OSError) as e:
        if held:  # raised by the work done under the lock, not by taking it
            module.fail_json(msg='%s %s: %s' % (kind, params['name'], e), **extra)
        module.fail_json(msg='cannot take the lock of deployment %s: %s (is %s writable?). Nothing was changed.'
                         % (params['name'], e, agent_state.RUN_DIR), **extra)
    if saved:
        result['changes'] = result.get('changes', []) + saved
        result['changed'] = True
    result['persistent_state'] = agent_state.state_path(kind, params['name']) \
        if params['persistent'] and present else None
    return result


def require_writable(kind):
    """Raise StateError with the fix when the saved state of kind cannot be written."""
    directory = os.path.dirname(agent_state.state_path(kind, 'x'))
    try:
        agent_state.make_dirs(directory)
    except (IOError, OSError) as e:
        raise agent_state.StateError('the directory of the state kept for the host agent, %s, cannot be created: %s. '
                                     'Fix the cause (is /etc writable?) or set persistent: false' % (directory, e))
    if not os.access(directory, os.W_OK):
        raise agent_state.StateError('the directory of the state kept for the host agent, %s, is not writable. Fix '
                                     'its permissions or set persistent: false' % directory)
