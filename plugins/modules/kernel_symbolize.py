#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: kernel_symbolize
short_description: Turn kernel addresses into function+offset and source lines
version_added: 0.1.0
description:
  - Maps raw kernel addresses to C(function+offset) with C(/proc/kallsyms) (root needed for real
    addresses), and C(function+offset) locations to source C(file:line) with a vmlinux that has DWARF,
    inlined frames included, the way the kernel's C(scripts/faddr2line) does.
  - Reports which vmlinux gave the lines, or why there are none (no debug symbols for this kernel, a
    stripped image, a function missing from that build).
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - binutils (nm, readelf, addr2line) for source lines
extends_documentation_fragment:
  - ebpf.networking.attributes.read_only
options:
  locations:
    description:
      - Addresses (C(0xffffffff81f657b8)) or C(function+offset) strings (C(nft_do_chain+0x3e8)).
    type: list
    elements: str
    required: true
  vmlinux:
    description:
      - ELF with DWARF to map to source lines (a vmlinux, or any binary built with C(-g) for its own
        functions). Default looks in the usual debug-symbol places for the running kernel.
    type: path
  require_lines:
    description: Fail when no source line can be found, instead of reporting why.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Where in the source is this?
  ebpf.networking.kernel_symbolize:
    locations: [nft_do_chain+0x3e8, ip_local_out+0x1c]
    vmlinux: /usr/lib/debug/boot/vmlinux-6.8.0-45-generic
  register: where
'''

RETURN = r'''
symbols:
  description: One entry per location, in order.
  returned: always
  type: list
  elements: dict
  sample:
    - input: nft_do_chain+0x3e8
      function: nft_do_chain
      offset: 1000
      location: nft_do_chain+0x3e8
      source: ["nft_do_chain net/netfilter/nf_tables_core.c:285"]
vmlinux:
  description: The ELF used for source lines, or null.
  returned: always
  type: str
line_info:
  description: Whether source lines were available and, if not, why.
  returned: always
  type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import ksym


def main():
    module = AnsibleModule(argument_spec=dict(locations=dict(type='list', elements='str', required=True),
                                              vmlinux=dict(type='path'),
                                              require_lines=dict(type='bool', default=False)),
                           supports_check_mode=True)
    p = module.params
    kallsyms = None
    kallsyms_error = None
    if any(not ksym.parse_func_offset(loc) for loc in p['locations']):
        try:
            kallsyms = ksym.Kallsyms()
        except (IOError, OSError, ksym.SymbolError) as e:
            kallsyms_error = str(e)
    path = p['vmlinux'] or ksym.find_vmlinux()
    lines = None
    if path:
        try:
            lines = ksym.ElfLines(path, run=lambda argv, **kw: _run(module, argv))
            line_info = {'available': True}
        except ksym.SymbolError as e:
            line_info = {'available': False, 'reason': str(e)}
    else:
        line_info = {'available': False, 'reason': 'no vmlinux with DWARF for kernel %s in the usual places; install '
                     'debug symbols (ebpf.networking.debug_symbols) or give vmlinux' % os.uname()[2]}
    if p['require_lines'] and lines is None:
        module.fail_json(msg='source lines are not available: %s' % line_info['reason'], line_info=line_info)

    out = []
    for loc in p['locations']:
        entry = {'input': loc}
        parsed = ksym.parse_func_offset(loc)
        if parsed is None:
            try:
                addr = int(loc, 16)
            except ValueError:
                module.fail_json(msg='location %r is neither an address (0xffff...) nor function+offset' % loc)
            if kallsyms is None:
                entry['error'] = 'cannot read kallsyms: %s' % kallsyms_error
                out.append(entry)
                continue
            found = kallsyms.lookup(addr)
            if found is None:
                entry['error'] = 'address below every kernel symbol'
                out.append(entry)
                continue
            parsed = (found[0], found[1])
            entry['module'] = found[2]
        entry.update({'function': parsed[0], 'offset': parsed[1], 'location': '%s+0x%x' % parsed})
        if lines is not None:
            try:
                entry['source'] = ['%s %s:%s' % (f['function'], f['file'], f['line']) for f in lines.lines(*parsed)]
            except ksym.SymbolError as e:
                if p['require_lines']:
                    module.fail_json(msg=str(e), symbols=out)
                entry['source_error'] = str(e)
        out.append(entry)
    module.exit_json(changed=False, symbols=out, vmlinux=path if lines is not None else None, line_info=line_info)


class _Proc(object):
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err


def _run(module, argv):
    tool = module.get_bin_path(argv[0])
    if not tool:
        raise OSError('%s not found' % argv[0])
    rc, out, err = module.run_command([tool] + argv[1:])
    return _Proc(rc, out, err)


if __name__ == '__main__':
    main()
