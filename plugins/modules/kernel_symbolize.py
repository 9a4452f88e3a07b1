#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: kernel_symbolize
short_description: Turn kernel addresses into function+offset and source lines, modules included
version_added: 0.1.0
description:
  - Maps raw kernel addresses to C(function+offset [module]) with C(/proc/kallsyms) (root needed for real
    addresses), and C(function+offset) locations to source C(file:line), inlined frames included, the way
    the kernel's C(scripts/faddr2line) does.
  - Frames in kernel modules (C(nft_do_chain+0x3e8 [nf_tables]), as kallsyms names them) are looked up in
    the module's debug file (C(NAME.ko.debug) or C(NAME.ko)) found under I(module_debug_dirs) and the usual
    places, not in vmlinux.
  - Same-named (static) functions are told apart by size - the offset must lie inside the function; when
    several still fit, all their lines are returned as C(ambiguous), as faddr2line lists them.
  - A vmlinux is used only when its build id matches the running kernel's (C(/sys/kernel/notes)), unless
    I(check_build_id) is false (symbolizing another machine's trace with its vmlinux).
  - All locations of one task are resolved with one C(addr2line) run per ELF file and section.
author:
  - ebpf.networking developers (@ebpf-networking)
requirements:
  - binutils (readelf, addr2line) for source lines
extends_documentation_fragment:
  - ebpf.networking.attributes.read_only
  - ebpf.networking.packet_tracing.module_debug_dirs
options:
  locations:
    description:
      - Addresses (C(0xffffffff81f657b8)) or C(function+offset) strings (C(nft_do_chain+0x3e8)), optionally
        with a C([module]) suffix.
    type: list
    elements: str
    required: true
  vmlinux:
    description:
      - ELF with DWARF to map to source lines (a vmlinux, or any binary built with C(-g) for its own
        functions). Default looks in the usual debug-symbol places for the running kernel.
    type: path
  check_build_id:
    description: Refuse a I(vmlinux) whose build id differs from the running kernel's.
    type: bool
    default: true
  return_addresses:
    description:
      - The locations are return addresses (stack frames, kfree_skb's location), so look up offset - 1,
        the call instruction, not the instruction after it.
    type: bool
    default: false
  require_lines:
    description: Fail when no source line can be found, instead of reporting why.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Where in the source is this?
  ebpf.networking.kernel_symbolize:
    locations: ['nft_do_chain+0x3e8 [nf_tables]', ip_local_out+0x1c]
    vmlinux: /usr/lib/debug/boot/vmlinux-6.8.0-45-generic
    return_addresses: true
  register: where
'''

RETURN = r'''
symbols:
  description: One entry per location, in order.
  returned: always
  type: list
  elements: dict
  contains:
    input: {description: "The location as given.", type: str}
    function: {description: "Function name.", type: str}
    offset: {description: "Offset in the function.", type: int}
    module: {description: "Kernel module of the function, null for vmlinux.", type: str}
    location: {description: "function+0xoffset, with C([module]).", type: str}
    source: {description: "Source lines, innermost (inlined) frame first.", type: list, elements: str}
    ambiguous: {description: "Source lines of each same-named function that fits the offset.", type: list,
                elements: list}
    source_error: {description: "Why there are no source lines for this location.", type: str}
    error: {description: "Why the address could not be named.", type: str}
  sample:
    - input: nft_do_chain+0x3e8
      function: nft_do_chain
      offset: 1000
      module: null
      location: nft_do_chain+0x3e8
      source: ["nft_do_chain net/netfilter/nf_tables_core.c:285"]
vmlinux:
  description: The ELF used for source lines, or null.
  returned: always
  type: str
line_info:
  description: Whether vmlinux source lines were available (with its build id) and, if not, why.
  returned: always
  type: dict
modules:
  description: For each module seen, the debug file used or why there is none.
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ebpf.networking.plugins.module_utils import ksym


def main():
    module = AnsibleModule(argument_spec=dict(locations=dict(type='list', elements='str', required=True),
                                              vmlinux=dict(type='path'),
                                              check_build_id=dict(type='bool', default=True),
                                              module_debug_dirs=dict(type='list', elements='path', default=[]),
                                              return_addresses=dict(type='bool', default=False),
                                              require_lines=dict(type='bool', default=False)),
                           supports_check_mode=True)
    p = module.params
    if not p['locations']:
        module.fail_json(msg='locations is empty: give addresses (0xffffffff81000000) or function+offset strings')
    parsed = []
    for loc in p['locations']:
        found = ksym.parse_location(loc)
        if found is None:
            try:
                found = int(loc.strip(), 16)
            except (ValueError, AttributeError):
                module.fail_json(msg='location %r is neither an address (0xffff...) nor function+offset' % (loc,))
        parsed.append(found)
    need_kallsyms = any(isinstance(x, int) for x in parsed)
    symbolizer = ksym.Symbolizer.for_running_kernel(p['vmlinux'], p['module_debug_dirs'],
                                                    check_build_id=p['check_build_id'], need_kallsyms=need_kallsyms)
    info = symbolizer.info()
    if p['require_lines'] and symbolizer.vmlinux is None and not any(
            isinstance(x, tuple) and x[2] for x in parsed):
        module.fail_json(msg='source lines are not available: %s' % info['line_info']['reason'],
                         line_info=info['line_info'])
    out = []
    for loc, found in zip(p['locations'], parsed):
        entry = {'input': loc}
        if isinstance(found, int):
            if symbolizer.kallsyms is None:
                entry['error'] = 'cannot read kallsyms: %s' % symbolizer.kallsyms_error
                out.append(entry)
                continue
            hit = symbolizer.kallsyms.lookup(found)
            if hit is None:
                entry['error'] = 'address below every kernel symbol'
                out.append(entry)
                continue
            found = hit
        func, off, mod = found
        entry.update({'function': func, 'offset': off, 'module': mod,
                      'location': '%s+0x%x%s' % (func, off, ' [%s]' % mod if mod else '')})
        out.append(entry)
    named = [e['location'] for e in out if 'location' in e]
    sources = symbolizer.sources(named, return_address=p['return_addresses']) if named else {}
    for entry in out:
        got = sources.get(entry.get('location'))
        if got is None:
            continue
        if isinstance(got, list):
            entry['source'] = got
        elif 'ambiguous' in got:
            entry['ambiguous'] = got['ambiguous']
        else:
            entry['source_error'] = got['error']
            if p['require_lines']:
                module.fail_json(msg=got['error'], symbols=out)
    info = symbolizer.info()
    module.exit_json(changed=False, symbols=out, vmlinux=info['line_info'].get('vmlinux'), line_info=info['line_info'],
                     modules=info.get('modules', {}))


if __name__ == '__main__':
    main()
