# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Notes of the modules whose programs the host agent restores (xdp_proxy, sockmap_redirect): the
    compiled-program cache (module_utils/bpf_cache.py) and the per-deployment lock (module_utils/deploy_lock.py,
    LOCK_TIMEOUT in the modules). Ansible appends a fragment's notes to the module's own."""

    # ansible-doc refuses a fragment without options or attributes: these notes come with none

    DOCUMENTATION = r'''
options: {}
notes:
  - Compiled programs are kept in C(/var/cache/ebpf-networking/programs) (one entry per build, that is per sources, sizes,
    kernel and bcc version), so a later load of the same build, such as the host agent's restore after a
    reboot, skips the bcc compile. A missing, damaged or refused entry falls back to compiling; C(changes)
    says which happened. C(EBPF_NETWORKING_CACHE_DIR) moves the cache.
  - A run waits (up to 120 s) while the host agent or another run changes the same deployment
    (a lock under C(/run/ebpf-networking/locks)).
'''
