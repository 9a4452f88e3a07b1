#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: lb_backend
short_description: Configure a backend of an xdp_proxy dsr or ipip service
version_added: 0.2.0
description:
  - With M(ebpf.networking.xdp_proxy) C(forwarding=dsr) or C(ipip) the backends receive packets addressed to
    the VIP and answer the client from it. This module puts each of I(vips) on C(lo) as a /32, sets
    C(arp_ignore=1) and C(arp_announce=2) on C(all) and I(interface) (the backend never answers ARP for the VIP
    nor uses it as an ARP source), and for C(ipip) arranges decapsulation (I(decap)) with a loose
    reverse-path filter on the ipip device.
  - What a run adds is recorded in C(<state dir>/xdp_lb_backend/<name>.json) (state dir C(/etc/ebpf-networking),
    or C(EBPF_NETWORKING_STATE_DIR)); I(state=absent) removes exactly that. Addresses that were there before stay;
    a sysctl goes back to its old value unless it was changed again since.
  - Use role C(ebpf.networking.xdp_lb_backend), which also runs M(ebpf.networking.xdp_decap) where needed.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux, iproute2
attributes:
  check_mode:
    support: full
    description: Reports what would change.
  diff_mode:
    support: none
    description: The C(changes) list says what changed.
options:
  name:
    description: Name of this configuration (its record file).
    type: str
    default: xdp_lb_backend
  state:
    description: C(present) configures; C(absent) removes what C(present) added.
    type: str
    choices: [present, absent]
    default: present
  vips:
    description: The VIPs this backend serves. Required with I(state=present).
    type: list
    elements: str
  forwarding:
    description: The services' C(forwarding).
    type: str
    choices: [dsr, ipip]
    default: dsr
  interface:
    description: The backend's interface towards the load balancer.
    type: str
    default: eth0
  container:
    description: Docker container whose network namespace is the backend.
    type: str
  netns:
    description: Network namespace (a name under C(/var/run/netns) or a path) that is the backend.
    type: str
  decap:
    description:
      - For C(ipip), who decapsulates. C(device) creates I(ipip_device) (C(ip link add NAME type ipip external))
        and sets its C(rp_filter) to 2 (and C(all) to 2 where it was 1). C(xdp) leaves it to
        M(ebpf.networking.xdp_decap) (for kernels without ipip support). C(auto) picks C(device) when the kernel
        can create one (it probes by creating and deleting a device; in check mode it does not, and decides from
        an existing I(ipip_device) or an earlier run, else C(changes) says it would probe).
      - The configuration given wins over an earlier run's; what is no longer wanted (an ipip device this
        module added, a loose C(rp_filter), ARP sysctls of a previous I(interface)) is removed or set back.
    type: str
    choices: [auto, device, xdp]
    default: auto
  ipip_device:
    description: Name of the ipip device with I(decap=device).
    type: str
    default: ipip0
  persistent:
    description:
      - Save the desired state under C(/etc/ebpf-networking/lb_backend/<name>.json) (or
        C(EBPF_NETWORKING_STATE_DIR)) so the host agent (role C(ebpf.networking.host_agent)) re-applies it after a
        reboot, which loses the VIPs on C(lo), the sysctls and the ipip device, or when any of them goes missing
        meanwhile. C(false) removes a saved state (the configuration stays); I(state=absent) always removes it.
      - Without a running agent the file is only kept, nothing reads it.
    type: bool
    default: true
notes:
  - A run waits (up to 120 s) while the host agent or another run changes the same configuration
    (a lock under C(/run/ebpf-networking/locks)).
'''

EXAMPLES = r'''
- name: A dsr backend of 172.30.0.10
  ebpf.networking.lb_backend:
    vips: [172.30.0.10]

- name: Undo it
  ebpf.networking.lb_backend:
    state: absent
'''

RETURN = r'''
changes:
  description: What this run changed (or would change in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["add 172.30.0.10/32 to lo", "set net.ipv4.conf.all.arp_ignore = 1 (was 0)"]
vips:
  description: The VIPs configured.
  returned: state=present
  type: list
  elements: str
decap:
  description:
    - With C(ipip), C(device) or C(xdp) (then run M(ebpf.networking.xdp_decap)); else null.
    - Also null in check mode when I(decap=auto) would have to probe the kernel.
  returned: state=present
  type: str
record:
  description: The file recording what was added.
  returned: always
  type: str
netns:
  description: The namespace label (host, netns:NAME or container:NAME).
  returned: state=present
  type: str
persistent_state:
  description: File holding the saved desired state the host agent restores, or null when not persistent.
  returned: success
  type: str
  sample: /etc/ebpf-networking/lb_backend/xdp_lb_backend.json
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils.lb_backend import LbBackend
from ansible_collections.ebpf.networking.plugins.module_utils.persisted_run import run_saved


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', default='xdp_lb_backend'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            vips=dict(type='list', elements='str'),
            forwarding=dict(type='str', default='dsr', choices=['dsr', 'ipip']),
            interface=dict(type='str', default='eth0'),
            container=dict(type='str'),
            netns=dict(type='str'),
            decap=dict(type='str', default='auto', choices=['auto', 'device', 'xdp']),
            ipip_device=dict(type='str', default='ipip0'),
            persistent=dict(type='bool', default=True),
        ),
        mutually_exclusive=[('container', 'netns')],
        required_if=[('state', 'present', ('vips',))],
        supports_check_mode=True,
    )
    backend = LbBackend(module.params, run_command=module.run_command, check_mode=module.check_mode)
    module.exit_json(**run_saved(module, 'lb_backend', backend.run))


if __name__ == '__main__':
    main()
