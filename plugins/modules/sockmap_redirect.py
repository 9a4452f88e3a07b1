#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: sockmap_redirect
short_description: Accelerate local TCP with sock_ops + sk_msg on a SOCKHASH
version_added: 0.1.0
description:
  - Compiles C(bpf/sockops.bpf.c) and C(bpf/sockredir.bpf.c) with bcc, pins both programs and their
    maps under C(/sys/fs/bpf/ebpf_networking/<name>/), attaches the C(sock_ops) program to a cgroup
    v2 directory and the C(sk_msg) verdict program to the SOCKHASH.
  - Every established TCP socket in that cgroup (and its children) that passes the I(ports) and
    I(cidrs) filters goes into the SOCKHASH; a message sent on such a socket goes straight to its
    peer socket's receive queue when the peer is in the map too (both ends on this host), skipping
    the TCP/IP stack. Other traffic is untouched.
  - Changing only the filters updates the maps in place and drops sockets that no longer match.
    C(state=absent) detaches both programs and removes the pins, also when a crash left only part
    of them; accelerated connections fall back to the normal path and keep working.
  - The action plugin of this module ships the BPF sources from the collection to the target.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with sock_ops, sk_msg and SOCKHASH (4.18+), a cgroup v2 mount, bpffs at /sys/fs/bpf
  - bcc (python3-bpfcc) and kernel headers on the target
attributes:
  check_mode:
    support: full
    description: Reports what would change from the pins and the cgroup's attachments.
  diff_mode:
    support: full
    description: Shows the filters before and after.
options:
  name:
    description: Name of this deployment; its pins live in C(/sys/fs/bpf/ebpf_networking/<name>/).
    type: str
    default: sockmap
  state:
    description: C(present) loads and attaches; C(absent) detaches and removes every pin.
    type: str
    choices: [present, absent]
    default: present
  cgroup:
    description:
      - cgroup v2 directory to attach the sock_ops program to, absolute or relative to the v2 mount.
      - Default the root of the v2 hierarchy (C(/sys/fs/cgroup/unified) on hybrid hosts), which sees every
        process's sockets.
    type: str
  container:
    description: Attach to this docker container's cgroup v2 directory instead.
    type: str
  ports:
    description:
      - Accelerate only sockets whose local or remote port is in this list. Empty means every port; use
        I(ports) or I(cidrs) so it does not grab every local connection.
    type: list
    elements: int
    default: []
  cidrs:
    description: Accelerate only sockets whose remote address is in one of these networks (IPv4 or IPv6).
    type: list
    elements: str
    default: []
  max_sockets:
    description: Capacity of the SOCKHASH; sockets beyond it are simply not accelerated.
    type: int
    default: 65535
  persistent:
    description:
      - Save the applied desired state under C(/etc/ebpf-networking/sockmap_redirect/<name>.json) so the host
        agent (role C(ebpf.networking.host_agent)) re-applies it after a reboot or when the container's cgroup
        is re-created. C(false) removes a saved state; I(state=absent) always does.
    type: bool
    default: true
  bpf_sources:
    description:
      - The BPF C sources, filled in by the action plugin from the collection's C(bpf/) directory.
    type: dict
notes:
  - Redirected data bypasses netfilter, tc and tcpdump on the loopback or veth path.
seealso:
  - module: ebpf.networking.xdp_proxy
'''

EXAMPLES = r'''
- name: Accelerate connections to and from port 80 on this host
  ebpf.networking.sockmap_redirect:
    ports: [80]

- name: Only loopback traffic of one cgroup
  ebpf.networking.sockmap_redirect:
    name: app
    cgroup: system.slice/app.service
    cidrs: [127.0.0.0/8, '::1/128']

- name: Turn it off
  ebpf.networking.sockmap_redirect:
    state: absent
'''

RETURN = r'''
persistent_state:
  description: File holding the saved desired state the host agent restores, or null when not persistent.
  returned: always
  type: str
  sample: /etc/ebpf-networking/sockmap_redirect/sockmap.json
prog_ids:
  description: Kernel ids of the sock_ops and sk_msg programs.
  returned: state=present and not check mode
  type: dict
  sample: {sock_ops: 301, sk_msg: 302}
cgroup:
  description: The cgroup v2 directory the sock_ops program is attached to.
  returned: always
  type: str
  sample: /sys/fs/cgroup/unified
pin_path:
  description: The bpffs directory holding the pins.
  returned: always
  type: str
sockets:
  description: Number of sockets in the SOCKHASH now.
  returned: state=present and not check mode
  type: int
socket_sample:
  description: Up to 20 sockets in the SOCKHASH, as local and remote address:port.
  returned: state=present and not check mode
  type: list
  elements: dict
counters:
  description: sockets_added, sockets_skipped, msgs_redirected, bytes_redirected, msgs_passed.
  returned: state=present and not check mode
  type: dict
ports:
  description: The port filter as applied.
  returned: state=present
  type: list
  elements: int
cidrs:
  description: The address filter as applied.
  returned: state=present
  type: list
  elements: str
changes:
  description: What this run changed (or would change), one line each.
  returned: always
  type: list
  elements: str
'''

import os
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_loader
from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError
from ansible_collections.ebpf.networking.plugins.module_utils.sockmap_deploy import SockmapDeployment, SockmapError
from ansible_collections.ebpf.networking.plugins.module_utils.sockmap_keys import SockmapConfigError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', default='sockmap'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            cgroup=dict(type='str'),
            container=dict(type='str'),
            ports=dict(type='list', elements='int', default=[]),
            cidrs=dict(type='list', elements='str', default=[]),
            max_sockets=dict(type='int', default=65535),
            persistent=dict(type='bool', default=True),
            bpf_sources=dict(type='dict'),
        ),
        mutually_exclusive=[('cgroup', 'container')],
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg='sockmap_redirect must run as root (become: true): loading BPF needs CAP_BPF/CAP_NET_ADMIN')
    sockmap = None
    present = module.params['state'] == 'present'
    saved = []
    try:
        sockmap = SockmapDeployment(module.params, check_mode=module.check_mode, run_command=module.run_command)
        if not present:
            # forget first: the host agent must not restore what is being removed
            saved = agent_state.persist('sockmap_redirect', module.params, present, module.check_mode)
        result = sockmap.apply()
        if present:
            saved = agent_state.persist('sockmap_redirect', module.params, present, module.check_mode)
    except (SockmapError, LoaderError, SockmapConfigError, agent_state.StateError) as e:
        fail(module, sockmap, str(e))
    except Exception as e:  # pylint: disable=broad-except
        fail(module, sockmap, 'unexpected error: %s' % e, exception=traceback.format_exc())
    if saved:
        result.update(changed=True, changes=result.get('changes', []) + saved)
    result['persistent_state'] = agent_state.state_path('sockmap_redirect', module.params['name']) \
        if module.params['persistent'] and module.params['state'] == 'present' else None
    module.exit_json(invocation=bpf_loader.invocation(module.params), **result)


def fail(module, sockmap, msg, **kw):
    """Fail with what was done so far; the deployment is None when the name itself was refused."""
    if sockmap is not None:
        kw.update(changes=sockmap.changes, pin_path=sockmap.pins.path)
    module.fail_json(msg=msg, invocation=bpf_loader.invocation(module.params), **kw)


if __name__ == '__main__':
    main()
