# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a deployment run starts and fails: the pinned deployments' common start (claim the name's pins,
refuse another module's, require bcc), DeployError for the user, and the one place where any other
exception becomes one.

xdp_lb_deploy (xdp_proxy), xdp_decap_deploy (xdp_decap) and lb_backend (lb_backend) raise DeployError;
their modules fail_json(msg=e.msg, **e.extra) and the host agent logs e.msg. No import from `ansible.`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, pin_kinds


class DeployError(Exception):
    """A failure for the user: msg says what is wrong and how to fix it; extra holds result keys
    (changes made so far, pin_path, exception text)."""

    def __init__(self, msg, **extra):
        super(DeployError, self).__init__(msg)
        self.msg = msg
        self.extra = extra


def run_pinned(deployment, kind):
    """Start a run of a deployment pinned under its name (deployment.p: name, state; present(), absent())
    for module kind: deployment.pins is set first (so a failure can name the path), another module's pins
    are refused before anything is touched, state present requires bcc. Returns present()'s or absent()'s
    result."""
    deployment.pins = bpf_loader.PinSet(deployment.p['name'])
    pin_kinds.refuse_foreign(deployment.pins, kind)
    if deployment.p['state'] == 'present':
        bpf_loader.require_bcc()
        return deployment.present()
    return deployment.absent()


def reported(action, fail, user_errors, os_error_note=None):
    """action()'s result, every exception but a DeployError going through fail(msg, **extra), which raises.

    user_errors: exception classes whose text is already the user's message. os_error_note: when given,
    an OSError/IOError is the user's message too, with this note appended ('%s (note)'). Anything else is
    an unexpected error and carries its traceback as extra `exception`.
    """
    try:
        return action()
    except DeployError:
        raise
    except user_errors as e:
        fail(str(e))
    except Exception as e:  # pylint: disable=broad-except
        if os_error_note is not None and isinstance(e, (OSError, IOError)):
            fail('%s (%s)' % (e, os_error_note))
        else:
            fail('unexpected error: %s' % e, exception=traceback.format_exc())
