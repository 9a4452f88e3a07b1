# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which module a pin directory /sys/fs/bpf/ebpf_networking/<name>/ belongs to.

xdp_proxy, sockmap_redirect and xdp_decap share one namespace of deployment names. Each recognises
its pins by their file names (prog_<function>, map_<map>) and refuses another module's, so that
`state: absent` or a redeploy under a name already taken never removes or replaces another
deployment. No import from `ansible.`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError

# pin file name prefixes of each module's programs and maps (bpf/*.bpf.c function and map names)
KINDS = (
    ('xdp_proxy', ('prog_xdp_lb', 'prog_xdp_peer_pass', 'map_lb_')),
    ('sockmap_redirect', ('prog_ebn_sockops', 'prog_ebn_sk_msg', 'map_sockmap_')),
    ('xdp_decap', ('prog_xdp_decap', 'map_decap_')),
    ('drop_monitor', ('prog_drop_monitor_', 'map_drop_')),
)


def kinds_of(entries):
    """The modules whose pins are among these file names (entries of one deployment directory)."""
    found = []
    for kind, prefixes in KINDS:
        if any(e.startswith(prefixes) for e in entries):
            found.append(kind)
    return found


def foreign_pins_message(pins, mine):
    """None when pins (a bpf_loader.PinSet) are absent or this module's (mine), else the message for the user."""
    others = [k for k in kinds_of(pins.entries()) if k != mine]
    if not others:
        return None
    return ('%s holds the pins of a %s deployment named %s, not of a %s one: %s would remove or replace them. '
            'Give this %s another name (or remove that deployment with its own module, state: absent).'
            % (pins.path, ' and '.join(others), pins.name, mine, 'this run', mine))


def refuse_foreign(pins, mine):
    """Raise LoaderError with foreign_pins_message when pins (a bpf_loader.PinSet) hold another module's
    deployment: called first in a run of module mine, before anything is touched."""
    message = foreign_pins_message(pins, mine)
    if message:
        raise LoaderError(message)
