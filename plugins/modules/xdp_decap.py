#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_decap
short_description: IPIP decapsulation in XDP on a backend of an xdp_proxy ipip service
version_added: 0.2.0
description:
  - Compiles C(bpf/xdp_decap.bpf.c) with bcc on the target, pins it under
    C(/sys/fs/bpf/ebpf_networking/<name>/) and attaches it to I(interface). An IPv4 packet of protocol 4
    (IPIP) to one of I(addresses) loses its outer header and reaches the stack as the client's packet,
    so a backend answers clients of an M(ebpf.networking.xdp_proxy) service with C(forwarding=ipip)
    directly.
  - For kernels without an ipip device (C(ip link add type ipip) fails with "Unknown device type");
    where the kernel has one, an ipip device does the same job. Outer fragments and outer headers with
    options pass untouched.
  - A later run compares the pinned program's source, its attachment and I(addresses) before changing
    anything; I(state=absent) detaches it and removes the pins.
  - The action plugin of this module ships the BPF source from the collection to the target.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with XDP, bpffs mounted at /sys/fs/bpf, bcc (python3-bpfcc), pyroute2
attributes:
  check_mode:
    support: full
    description: Reports what would change without loading anything.
  diff_mode:
    support: full
    description: Shows the decapsulated addresses before and after.
options:
  name:
    description:
      - Name of this deployment; its pins live in C(/sys/fs/bpf/ebpf_networking/<name>/).
      - M(ebpf.networking.xdp_proxy) and M(ebpf.networking.sockmap_redirect) deployments share these names; a
        name that holds another module's pins is refused (nothing is touched), so use another name.
    type: str
    default: ipip_decap
  state:
    description: C(present) loads and attaches; C(absent) detaches and removes the pins.
    type: str
    choices: [present, absent]
    default: present
  interface:
    description: The backend's interface IPIP packets arrive on. Required with I(state=present).
    type: str
  container:
    description: Docker container whose network namespace holds I(interface).
    type: str
  netns:
    description: Network namespace holding I(interface), a name under C(/var/run/netns) or an absolute path.
    type: str
  addresses:
    description:
      - Outer destination addresses to decapsulate (the backend addresses the load balancer sends to).
        Defaults to the IPv4 addresses of I(interface).
    type: list
    elements: str
  mode:
    description:
      - XDP attach mode. C(auto) is C(generic) on veth (native XDP on veth loses the checksum state of
        locally sent packets) and C(native), falling back to C(generic), elsewhere.
    type: str
    choices: [auto, native, generic]
    default: auto
  force:
    description: Replace an XDP program attached to I(interface) that is not this deployment's.
    type: bool
    default: false
  persistent:
    description:
      - Save the desired state under C(/etc/ebpf-networking/xdp_decap/<name>.json) (or C(EBPF_NETWORKING_STATE_DIR))
        so the host agent (role C(ebpf.networking.host_agent)) compiles, pins and attaches the program again after
        a reboot (bpffs is empty then), or re-attaches it when the attachment is lost. C(false) removes a saved
        state; I(state=absent) always does.
      - Without a running agent the file is only kept, nothing reads it.
    type: bool
    default: true
  bpf_sources:
    description: Filled in by the action plugin with the BPF source; set it only to test a modified program.
    type: dict
notes:
  - A run waits (up to 120 s) while the host agent or another run changes the same deployment
    (a lock under C(/run/ebpf-networking/locks)).
  - Run with the target's C(/usr/bin/python3) on Debian, where python3-bpfcc lives.
  - The decapsulated packet is delivered to the VIP the backend holds on loopback; set C(rp_filter) to 0 or 2
    on the interface when the route back to the client leaves another way (role C(ebpf.networking.xdp_lb_backend)).
seealso:
  - module: ebpf.networking.xdp_proxy
'''

EXAMPLES = r'''
- name: Decapsulate IPIP from the load balancer on a backend
  ebpf.networking.xdp_decap:
    interface: eth0

- name: Remove it
  ebpf.networking.xdp_decap:
    state: absent
'''

RETURN = r'''
addresses:
  description: The outer destination addresses decapsulated.
  returned: state=present
  type: list
  elements: str
  sample: [172.30.0.11]
changes:
  description: What this run changed (or would change in check mode), one line each.
  returned: always
  type: list
  elements: str
prog_id:
  description: Kernel id of the pinned program.
  returned: state=present when loaded
  type: int
attach_mode:
  description: The mode the program was attached in by this run (native or generic).
  returned: state=present when this run attached it
  type: str
decapsulated:
  description: Packets decapsulated since the program was loaded.
  returned: state=present when loaded
  type: int
interface:
  description: Interface name and namespace label.
  returned: state=present
  type: dict
pin_path:
  description: The bpffs directory holding this deployment's pins.
  returned: always
  type: str
diff:
  description: Addresses before and after, for --diff.
  returned: state=present
  type: dict
persistent_state:
  description: File holding the saved desired state the host agent restores, or null when not persistent.
  returned: success
  type: str
  sample: /etc/ebpf-networking/xdp_decap/ipip_decap.json
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader
from ansible_collections.ebpf.networking.plugins.module_utils.persisted_run import run_saved
from ansible_collections.ebpf.networking.plugins.module_utils.xdp_decap_deploy import XdpDecapDeployment


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', default='ipip_decap'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            interface=dict(type='str'),
            container=dict(type='str'),
            netns=dict(type='str'),
            addresses=dict(type='list', elements='str'),
            mode=dict(type='str', default='auto', choices=['auto', 'native', 'generic']),
            force=dict(type='bool', default=False),
            persistent=dict(type='bool', default=True),
            bpf_sources=dict(type='dict'),
        ),
        mutually_exclusive=[('container', 'netns')],
        required_if=[('state', 'present', ('interface',))],
        supports_check_mode=True,
    )
    invocation = bpf_loader.invocation(module.params)
    if os.geteuid() != 0:
        module.fail_json(msg='xdp_decap must run as root (become: true): loading BPF needs CAP_BPF and CAP_NET_ADMIN')
    deployment = XdpDecapDeployment(module.params, run_command=module.run_command, check_mode=module.check_mode)
    module.exit_json(invocation=invocation, **run_saved(module, 'xdp_decap', deployment.run, invocation))


if __name__ == '__main__':
    main()
