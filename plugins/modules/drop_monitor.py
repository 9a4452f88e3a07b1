#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: drop_monitor
short_description: Count every packet drop continuously, by reason, location, namespace and interface
version_added: 0.2.0
description:
  - Loads C(bpf/drop_monitor.bpf.c) on the C(kfree_skb) raw tracepoint and pins it, its maps and its link
    under C(/sys/fs/bpf/ebpf_networking/NAME/), so it keeps counting after the module exits (until
    I(state=absent) or a reboot). The host agent reads the same pins and exports them as metrics.
  - Returns the counts on demand, most frequent first, and optionally as Prometheus text
    (C(ebpf_networking_drops_total{reason,location,netns,interface})).
  - Drops that find the key table full are counted in I(overflow), not lost silently.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - Linux with BTF and the kfree_skb tracepoint with a reason (5.17+); bpffs mounted; bcc and kernel headers
    on the target for I(state=present)
extends_documentation_fragment:
  - ebpf.networking.packet_tracing.bpf_sources
attributes:
  check_mode:
    support: full
    description: Reports whether the counter would be loaded or removed; loads, pins and removes nothing.
  diff_mode:
    support: none
    description: The state is the presence of the counter, reported in I(changed) and I(running).
options:
  state:
    description:
      - C(present) loads and pins the counter unless it runs, then reads it. C(read) only reads (no change);
        C(absent) unpins it, which detaches it.
    type: str
    choices: [present, read, absent]
    default: present
  name:
    description: Directory name under C(/sys/fs/bpf/ebpf_networking/). The host agent uses the default.
    type: str
    default: drop_monitor
  max_counts:
    description: Return at most this many count rows (1-100000), the most frequent.
    type: int
    default: 1000
  prometheus:
    description: Also return the counts as Prometheus text lines.
    type: bool
    default: false
seealso:
  - module: ebpf.networking.skb_drop_trace
'''

EXAMPLES = r'''
- name: Count drops all the time
  ebpf.networking.drop_monitor:
    state: present

- name: What has been dropped since?
  ebpf.networking.drop_monitor:
    state: read
    max_counts: 20
    prometheus: true
  register: drops
'''

RETURN = r'''
running:
  description: Whether the counter is loaded and pinned after the task.
  returned: always
  type: bool
pin_dir:
  description: Where it is pinned.
  returned: always
  type: str
prog_id:
  description: Kernel id of the counting program, or null.
  returned: always
  type: int
counts:
  description: Count rows, most frequent first (empty unless running).
  returned: always
  type: list
  elements: dict
  sample:
    - {reason: NETFILTER_DROP, reason_code: 12, location: "nft_do_chain+0x3e8", netns: "container:client",
       netns_inode: 4026532290, interface: eth0, ifindex: 2, count: 17}
truncated:
  description: True when there were more rows than I(max_counts).
  returned: always
  type: bool
overflow:
  description: Drops not counted because the key table (16384 keys) was full.
  returned: always
  type: int
reasons_source:
  description: Where the reason names came from.
  returned: when running
  type: str
prometheus:
  description: The counts as Prometheus text exposition lines.
  returned: when prometheus is true
  type: list
  elements: str
'''

import os
import re
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, drop_monitor


def run(module):
    p = module.params
    if not re.match(r'^[a-z0-9][a-z0-9_-]{0,47}$', p['name'] or ''):
        raise drop_monitor.MonitorError("name %r is invalid: use 1-48 characters of a-z, 0-9, '_' and '-'" % p['name'])
    if not 0 < p['max_counts'] <= 100000:
        raise drop_monitor.MonitorError('max_counts %d is out of range: use 1-100000' % p['max_counts'])
    pin_dir = os.path.join(bpf_loader.PIN_ROOT, p['name'])
    before = drop_monitor.status(pin_dir)
    changed = False
    if p['state'] == 'absent':
        changed = bool(before['running'] or len(before['missing']) < 4)
        if changed and not module.check_mode:
            drop_monitor.remove_drop_monitor(pin_dir)
    elif p['state'] == 'present' and not before['running']:
        changed = True
        if not module.check_mode:
            sources = p['bpf_sources'] or {}
            bpf_loader.require_sources(sources, drop_monitor.SOURCES)
            drop_monitor.ensure_drop_monitor(sources=sources, pin_dir=pin_dir)
    after = drop_monitor.status(pin_dir)
    result = dict(changed=changed, running=after['running'], pin_dir=pin_dir, prog_id=after['prog_id'], counts=[],
                  truncated=False, overflow=0)
    if after['running']:
        report = drop_monitor.read_drop_counts(pin_dir)
        result.update(counts=report['counts'][:p['max_counts']], truncated=len(report['counts']) > p['max_counts'],
                      overflow=report['overflow'], reasons_source=report['reasons_source'])
        if p['prometheus']:
            result['prometheus'] = drop_monitor.prometheus_lines(report)
    elif p['prometheus']:
        result['prometheus'] = []
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', choices=['present', 'read', 'absent'], default='present'),
            name=dict(type='str', default='drop_monitor'),
            max_counts=dict(type='int', default=1000),
            prometheus=dict(type='bool', default=False),
            bpf_sources=dict(type='dict'),
        ),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg='drop_monitor must run as root (become: true)')
    try:
        result = run(module)
    except (drop_monitor.MonitorError, bpf_loader.LoaderError) as e:
        module.fail_json(msg=str(e), invocation=bpf_loader.invocation(module.params))
    except Exception as e:  # pylint: disable=broad-except
        module.fail_json(msg='unexpected error: %s' % e, exception=traceback.format_exc(),
                         invocation=bpf_loader.invocation(module.params))
    module.exit_json(invocation=bpf_loader.invocation(module.params), **result)


if __name__ == '__main__':
    main()
