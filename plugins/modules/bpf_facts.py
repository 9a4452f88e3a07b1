#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: bpf_facts
short_description: Report what the running kernel and host offer for eBPF networking
version_added: 0.1.0
description:
  - Probes the kernel with minimal programs and maps through bpf(2) (program types xdp, sock_ops,
    sk_msg, tracepoint; map types hash, lru_hash, percpu_array, sockhash), reads BTF, bpffs,
    tracefs and cgroup2 mounts, the C(skb:kfree_skb) tracepoint format and its drop reasons,
    helper support from C(bpftool feature probe), and optionally whether bcc can compile.
  - Returns facts only, as C(ansible_facts.ebpf_networking) (the C(ebpf_networking) variable). With
    I(require), fails with one message that lists every missing feature and how to get it.
  - Before 0.2.0 the module also returned C(bpf_facts) (the same dict) and C(missing); read the fact instead.
author:
  - ebpf.networking developers (@ebpf-networking)
extends_documentation_fragment:
  - ebpf.networking.attributes.read_only
options:
  check_bcc:
    description: Compile and load a tiny XDP program with bcc to prove the toolchain works.
    type: bool
    default: true
  require:
    description:
      - Features that must be present, from C(bpffs), C(btf), C(cgroup2), C(tracefs), C(bcc),
        C(xdp), C(sock_ops), C(sk_msg), C(sockhash), C(lru_hash), C(kfree_skb).
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Gather eBPF facts and insist on what the XDP load balancer needs
  ebpf.networking.bpf_facts:
    require: [bpffs, bcc, xdp, lru_hash]

- name: Show them
  ansible.builtin.debug:
    msg: "kernel {{ ansible_facts['ebpf_networking'].kernel }}, bcc compiles: {{ ansible_facts['ebpf_networking'].bcc.compiles }}"
'''

RETURN = r'''
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    ebpf_networking:
      description: Everything found.
      returned: always
      type: dict
      contains:
        kernel:
          description: Kernel release.
          type: str
          sample: 6.18.44
        btf:
          description: Whether C(/sys/kernel/btf/vmlinux) exists.
          type: bool
        bpffs:
          description: bpffs mount point, or null.
          type: str
          sample: /sys/fs/bpf
        cgroup2:
          description: cgroup v2 mount point (C(/sys/fs/cgroup/unified) on hybrid hosts), or null.
          type: str
        tracefs:
          description: tracefs mount point, or null.
          type: str
        prog_types:
          description: Program type name to supported.
          type: dict
        map_types:
          description: Map type name to supported.
          type: dict
        helpers:
          description: Helper name to supported, for the helpers the collection uses (from bpftool; empty without it).
          type: dict
        kfree_skb:
          description: The skb:kfree_skb tracepoint, its field names and drop reason names, or null.
          type: dict
        bcc:
          description: bcc version and whether it compiled a test program, with the error if not.
          type: dict
        headers:
          description: The kernel headers directory bcc will use and the release it belongs to.
          type: dict
        kprobes:
          description: Whether the kernel offers kprobes (C(kprobe_events) in tracefs or debugfs).
          type: bool
        root:
          description: Whether the module ran as root; without root the probes report false.
          type: bool
        helpers_error:
          description: Why helper support is unknown (no bpftool, not root), or null.
          type: str
        features:
          description: Each name I(require) accepts mapped to whether the host has it.
          type: dict
          sample: {bpffs: true, bcc: true, xdp: true, kfree_skb: false}
missing:
  description: Required features that are absent, each with how to fix it.
  returned: failure, when I(require) names features the host lacks
  type: list
  elements: str
'''

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, bpf_syscall

PROG_TYPES = {'xdp': 6, 'sock_ops': 13, 'sk_msg': 16, 'tracepoint': 5, 'raw_tracepoint': 17}
MAP_TYPES = {'hash': (1, 4, 4), 'lru_hash': (9, 4, 4), 'percpu_array': (6, 4, 8), 'sockhash': (18, 4, 4),
             'array': (2, 4, 4)}
HELPERS = {'xdp': ['bpf_fib_lookup', 'bpf_redirect', 'bpf_csum_diff'],
           'sock_ops': ['bpf_sock_hash_update'],
           'sk_msg': ['bpf_msg_redirect_hash'],
           'tracepoint': ['bpf_get_stackid', 'bpf_perf_event_output']}
FIXES = {
    'bpffs': 'mount it: mount -t bpf bpf /sys/fs/bpf (the bpf_toolchain role does)',
    'btf': 'boot a kernel built with CONFIG_DEBUG_INFO_BTF=y',
    'cgroup2': 'mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup/unified)',
    'tracefs': 'mount it: mount -t tracefs tracefs /sys/kernel/tracing',
    'bcc': 'install python3-bpfcc and kernel headers (the bpf_toolchain role does), and use /usr/bin/python3',
    'xdp': 'the kernel lacks XDP (CONFIG_BPF_SYSCALL, CONFIG_XDP_SOCKETS); use a newer kernel',
    'sock_ops': 'the kernel lacks BPF_PROG_TYPE_SOCK_OPS (CONFIG_CGROUP_BPF)',
    'sk_msg': 'the kernel lacks BPF_PROG_TYPE_SK_MSG (CONFIG_BPF_STREAM_PARSER)',
    'sockhash': 'the kernel lacks BPF_MAP_TYPE_SOCKHASH (CONFIG_BPF_STREAM_PARSER, 4.18+)',
    'lru_hash': 'the kernel lacks LRU hash maps (4.10+)',
    'kfree_skb': 'the skb:kfree_skb tracepoint is not visible: mount tracefs and check CONFIG_TRACEPOINTS',
}


def find_mount(fstype, mounts, preferred=()):
    for path in preferred:
        if mounts.get(path) == fstype:
            return path
    for path, kind in sorted(mounts.items()):
        if kind == fstype:
            return path
    return None


def kfree_skb_info(tracefs):
    if not tracefs:
        return None
    path = os.path.join(tracefs, 'events/skb/kfree_skb/format')
    try:
        with open(path) as f:
            text = f.read()
    except (IOError, OSError):
        return None
    fields = re.findall(r'field:[^;]*?\s\*?(\w+)(?:\[\d*\])?;', text)
    fields = [f for f in fields if not f.startswith('common_')]
    reasons = re.findall(r'\{\s*(\d+),\s*"(\w+)"\s*\}', text)
    return {'format': path, 'fields': fields, 'reasons': dict((int(n), name) for n, name in reasons)}


def helper_support(module):
    bpftool = module.get_bin_path('bpftool')
    if not bpftool:
        return {}, 'bpftool not installed'
    rc, out, err = module.run_command([bpftool, '-j', 'feature', 'probe', 'kernel'])
    if rc != 0:
        return {}, err.strip()
    try:
        data = json.loads(out)
    except ValueError as e:
        return {}, 'unparsable bpftool output: %s' % e
    helpers = data.get('helpers', {})
    result = {}
    for ptype, names in HELPERS.items():
        available = helpers.get('%s_available_helpers' % ptype, [])
        for name in names:
            result[name] = result.get(name, False) or name in available
    return result, None


def bcc_check(module, enabled):
    info = {'importable': bpf_loader.HAS_BCC, 'compiles': None, 'error': None}
    if not bpf_loader.HAS_BCC:
        info['error'] = str(bpf_loader.BCC_IMPORT_ERROR)
        return info
    try:
        import bcc  # pylint: disable=import-outside-toplevel
        info['version'] = getattr(bcc, '__version__', None)
    except ImportError:
        pass
    if enabled:
        try:
            bpf_loader.compile_and_load({'probe.c': 'int probe(struct xdp_md *ctx) { return XDP_PASS; }\n'},
                                        'probe.c', [], {'probe': 'xdp'})
            info['compiles'] = True
        except bpf_loader.LoaderError as e:
            info['compiles'] = False
            info['error'] = str(e)
    return info


def headers_info():
    release = os.uname()[2]
    build = '/lib/modules/%s/build' % release
    target = os.path.realpath(build) if os.path.exists(build) else None
    version = None
    if target:
        m = re.search(r'linux-headers-([\w.+~-]+)', target)
        version = m.group(1) if m else None
    return {'path': build if target else None, 'resolves_to': target, 'headers_release': version,
            'exact': bool(version and release.startswith(version.rsplit('-', 1)[0]) and version in release)}


def main():
    module = AnsibleModule(argument_spec=dict(check_bcc=dict(type='bool', default=True),
                                              require=dict(type='list', elements='str', default=[])),
                           supports_check_mode=True)
    unknown = [r for r in module.params['require'] if r not in FIXES]
    if unknown:
        module.fail_json(msg='unknown feature(s) in require: %s; known: %s' % (', '.join(unknown), ', '.join(sorted(FIXES))))
    mounts = bpf_loader.mounts()
    tracefs = find_mount('tracefs', mounts, ('/sys/kernel/tracing', '/sys/kernel/debug/tracing'))
    root = os.geteuid() == 0
    facts = {
        'kernel': os.uname()[2],
        'btf': os.path.exists('/sys/kernel/btf/vmlinux'),
        'bpffs': find_mount('bpf', mounts, ('/sys/fs/bpf',)),
        'cgroup2': find_mount('cgroup2', mounts, ('/sys/fs/cgroup/unified', '/sys/fs/cgroup')),
        'tracefs': tracefs,
        'kprobes': os.path.exists('/sys/kernel/tracing/kprobe_events') or os.path.exists(
            '/sys/kernel/debug/tracing/kprobe_events'),
        'root': root,
        'prog_types': dict((n, root and bpf_syscall.probe_prog_type(t)) for n, t in PROG_TYPES.items()),
        'map_types': dict((n, root and bpf_syscall.probe_map_type(*spec)) for n, spec in MAP_TYPES.items()),
        'kfree_skb': kfree_skb_info(tracefs),
        'bcc': bcc_check(module, module.params['check_bcc'] and root),
        'headers': headers_info(),
    }
    facts['helpers'], facts['helpers_error'] = helper_support(module) if root else ({}, 'not root')
    present = {
        'bpffs': bool(facts['bpffs']), 'btf': facts['btf'], 'cgroup2': bool(facts['cgroup2']),
        'tracefs': bool(tracefs), 'bcc': bool(facts['bcc']['importable'] and facts['bcc']['compiles'] is not False),
        'xdp': facts['prog_types']['xdp'], 'sock_ops': facts['prog_types']['sock_ops'],
        'sk_msg': facts['prog_types']['sk_msg'], 'sockhash': facts['map_types']['sockhash'],
        'lru_hash': facts['map_types']['lru_hash'], 'kfree_skb': bool(facts['kfree_skb']),
    }
    facts['features'] = present
    missing = ['%s: %s' % (r, FIXES[r]) for r in module.params['require'] if not present.get(r)]
    if facts['bcc'].get('error') and 'bcc' in module.params['require']:
        missing = [m + ' (bcc said: %s)' % facts['bcc']['error'][:2000] if m.startswith('bcc:') else m for m in missing]
    if missing:
        module.fail_json(msg='this host lacks required eBPF features:\n- ' + '\n- '.join(missing),
                         missing=missing, ansible_facts={'ebpf_networking': facts})
    module.exit_json(changed=False, ansible_facts={'ebpf_networking': facts})


if __name__ == '__main__':
    main()
