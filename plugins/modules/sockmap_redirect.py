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
  - Every TCP socket in that cgroup (and its children) that passes the I(ports) and I(cidrs) filters
    goes into the SOCKHASH when it is established; a message sent on such a socket goes straight to
    its peer socket's receive queue when the peer is in the map too, skipping the TCP/IP stack.
    Other traffic is untouched.
  - Safety rules. B(Namespaces) - a socket's key is its 4-tuple, both ends' initial sequence numbers
    and, for loopback addresses, its network namespace's cookie; its peer's key is kept in the
    socket's own storage. Only the two ends of one connection share such a key, so bytes are never
    delivered into a socket of another namespace, also when namespaces (containers) use the same
    addresses and ports or a socket in CLOSE_WAIT is still in the map. B(Local only) - only sockets
    of this host are in the map, so only connections whose both ends are on this host are ever
    redirected. B(Order) - each direction of a connection decides at its first message; if the peer
    is not in the map then, that direction uses TCP for good; a direction that once used TCP never
    redirects again (the receiver reads redirected bytes first, so they would overtake).
    B(No loss) - a filter change never removes sockets (it applies to new connections); a reload and
    C(state=absent) first stop every redirect (a flag the sk_msg program reads), wait I(drain_timeout)
    for receivers to read what was already redirected to them, and only then remove the sockets.
  - What remains unsafe is in the notes.
  - C(state=absent) detaches both programs and removes the pins, also when a crash left only part
    of them; accelerated connections fall back to the normal path and keep working.
  - The action plugin of this module ships the BPF sources from the collection to the target.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with sock_ops, sk_msg and SOCKHASH (4.18+), a cgroup v2 mount, bpffs at /sys/fs/bpf
  - bcc (python3-bpfcc) and kernel headers on the target
extends_documentation_fragment:
  - ebpf.networking.program_cache
attributes:
  check_mode:
    support: full
    description: Reports what would change from the pins and the cgroup's attachments; compiles, loads and
      changes nothing.
  diff_mode:
    support: full
    description: Shows state, cgroup and filters before and after, also for C(state=absent).
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
      - Accelerate only sockets whose local or remote port is in this list.
      - I(ports) or I(cidrs) is required unless I(scope=all).
      - A change applies to connections established after it; established ones keep their path.
    type: list
    elements: int
    default: []
  cidrs:
    description:
      - Accelerate only sockets whose remote address is in one of these networks (IPv4 or IPv6).
      - I(ports) or I(cidrs) is required unless I(scope=all).
    type: list
    elements: str
    default: []
  scope:
    description:
      - C(filtered) accelerates only what I(ports) and I(cidrs) select and refuses to run without either.
      - C(all) accelerates every TCP connection between two sockets of the cgroup. Those connections skip
        netfilter, tc and packet capture on their loopback or veth path, so firewall rules between local
        processes or containers no longer apply to them. Use it only when that is intended.
    type: str
    choices: [filtered, all]
    default: filtered
  drain_timeout:
    description:
      - Seconds a reload or C(state=absent) waits, after stopping every redirect, before it removes the
        sockets from the map (0-60). Bytes already redirected to a socket whose application has not read
        them by then are discarded; raise it for receivers that may stall.
    type: float
    default: 1.0
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
  - What can still go wrong. Bytes redirected to a receiver that does not read them within I(drain_timeout)
    of a reload or C(state=absent) are lost (the sender's write had succeeded). A connection established
    with TCP Fast Open data in its SYN is expected not to be accelerated (the sequence numbers in the two
    keys differ); this was not tested.
  - Upper-layer protocols. A socket that already has an ULP (kTLS, MPTCP subflows) is refused by the kernel
    (counted in C(insert_failed_other)). A socket that turns on kTLS B(after) it was inserted keeps being
    redirected, as plaintext, which is safe only when both ends use kTLS. This kernel offers no C(tls) ULP
    (C(/proc/sys/net/ipv4/tcp_available_ulp)), so this was not tested; do not accelerate ports whose
    applications use kTLS.
  - Non-loopback keys do not hold the namespace (the peer is in another one); two connections in two
    namespaces share a key only with the same 4-tuple and the same two initial sequence numbers, which the
    kernel draws from a keyed hash plus a clock of 64 ns ticks.
seealso:
  - module: ebpf.networking.xdp_proxy
'''

EXAMPLES = r'''
- name: Accelerate connections to and from port 80 on this host
  ebpf.networking.sockmap_redirect:
    ports: [80]

- name: Every local TCP connection of one cgroup (they skip netfilter), with a longer drain on removal
  ebpf.networking.sockmap_redirect:
    name: batch
    cgroup: batch.slice
    scope: all
    drain_timeout: 5

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
  returned: state=present and the deployment exists (also in check mode)
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
  returned: state=present and the deployment exists (also in check mode)
  type: int
socket_sample:
  description: Up to 20 sockets in the SOCKHASH, as local and remote address:port, and the namespace cookie
    (netns_cookie) for loopback sockets.
  returned: state=present and the deployment exists (also in check mode)
  type: list
  elements: dict
  sample: [{local: '127.0.0.1:80', remote: '127.0.0.1:45123', netns_cookie: 4096}]
counters:
  description:
    - Totals since the programs were loaded (a reload starts again from 0).
    - C(sockets_added) sockets put in the map; C(sockets_skipped) established sockets the filters left out.
    - Failed inserts by cause, C(insert_failed_full) (map full, raise I(max_sockets)), C(insert_failed_key_taken),
      C(insert_failed_busy) (the socket runs another deployment's sk_msg program), C(insert_failed_no_storage),
      C(insert_failed_other) (e.g. a socket with an ULP).
    - C(msgs_redirected) and C(bytes_redirected); passes, C(msgs_passed) (peer not in the map, i.e. not on this
      host or not accelerated), C(msgs_passed_tcp_direction) (the direction had already used TCP),
      C(msgs_passed_draining) (during a reload or removal).
  returned: state=present and the deployment exists (also in check mode)
  type: dict
  sample: {sockets_added: 4, sockets_skipped: 0, insert_failed_full: 0, insert_failed_key_taken: 0,
           insert_failed_busy: 0, insert_failed_no_storage: 0, insert_failed_other: 0, msgs_redirected: 17,
           bytes_redirected: 8388672, msgs_passed: 1, msgs_passed_tcp_direction: 3, msgs_passed_draining: 0}
sockhash:
  description: The SOCKHASH map as the kernel describes it.
  returned: state=present and the deployment exists (also in check mode)
  type: dict
  sample: {type: sockhash, type_id: 18, id: 77, key_size: 56, value_size: 4, max_entries: 65535, flags: 0,
           name: sockmap_socks}
drained_seconds:
  description: Seconds waited for receivers after stopping redirects (reload or absent with sockets in the map);
    null when no drain was needed.
  returned: always
  type: float
diff:
  description: State, cgroup and filters before and after (also without C(--diff)).
  returned: always
  type: dict
  sample: {before: {state: absent}, after: {state: present, cgroup: /sys/fs/cgroup/unified, ports: [80], cidrs: []}}
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
from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_loader, deploy_lock
from ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader import LoaderError
from ansible_collections.ebpf.networking.plugins.module_utils.sockmap_deploy import SockmapDeployment, SockmapError
from ansible_collections.ebpf.networking.plugins.module_utils.sockmap_keys import SockmapConfigError

LOCK_TIMEOUT = 120  # seconds: longer than a restore that compiles on a busy host


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
            scope=dict(type='str', default='filtered', choices=['filtered', 'all']),
            drain_timeout=dict(type='float', default=1.0),
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
        # the host agent takes the same lock before restoring: the two never change the pins at once
        with deploy_lock.deployment_lock('sockmap_redirect', module.params['name'], 'ansible module sockmap_redirect',
                                         timeout=LOCK_TIMEOUT):
            if not present:
                # forget first: the host agent must not restore what is being removed
                saved = agent_state.persist('sockmap_redirect', module.params, present, module.check_mode)
            result = sockmap.apply()
            if present:
                # save the state as applied (cgroup resolved to its path, ports and CIDRs normalized and sorted),
                # so runs that say the same thing in other words are one saved state
                to_save = dict(module.params)
                if not module.params['container'] and result.get('cgroup'):
                    to_save['cgroup'] = result['cgroup']
                for key in ('ports', 'cidrs'):
                    if result.get(key) is not None:
                        to_save[key] = result[key]
                saved = agent_state.persist('sockmap_redirect', to_save, present, module.check_mode)
    except (SockmapError, LoaderError, SockmapConfigError, agent_state.StateError) as e:
        fail(module, sockmap, str(e))
    except deploy_lock.DeploymentLocked as e:
        fail(module, sockmap, '%s: waited %d s for it. Nothing was changed; run again once it is done.'
             % (e, LOCK_TIMEOUT))
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
