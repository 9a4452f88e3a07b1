# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel addresses to `function+offset [module]` (from /proc/kallsyms) and to source lines, the
way the kernel's scripts/faddr2line does it:
- a symbol name is looked up in the ELF's symbol table; duplicate (static) names are told apart by
  size (the offset must lie inside the function) and, for the running kernel, by the load offset;
- frames in modules are looked up in that module's debug file (.ko or .ko.debug), not vmlinux;
- return addresses (stack frames, kfree_skb's location) are looked up at address - 1, the call;
- a vmlinux is used only when its build id matches the running kernel's (/sys/kernel/notes);
- one addr2line process per ELF and section for a whole trace, not one per frame.
No ansible import."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bisect
import os
import re
import struct
import subprocess

KALLSYMS = '/proc/kallsyms'
KERNEL_NOTES = '/sys/kernel/notes'
_FUNC_OFF = re.compile(r'^(?P<func>[A-Za-z0-9_.$]+)\+(?P<off>0x[0-9a-fA-F]+|\d+)(?:/0x[0-9a-fA-F]+)?'
                       r'(?:\s+\[(?P<mod>[A-Za-z0-9_-]+)\])?$')
NT_GNU_BUILD_ID = 3


class SymbolError(Exception):
    pass


class Kallsyms(object):
    """Sorted text symbols of the running kernel (and modules)."""

    def __init__(self, path=KALLSYMS, text=None):
        if text is None:
            with open(path) as f:
                text = f.read()
        entries = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[1] not in 'tTwW':
                continue
            addr = int(parts[0], 16)
            if addr:
                entries.append((addr, parts[2], parts[3].strip('[]') if len(parts) > 3 else None))
        if not entries:
            raise SymbolError('%s lists no addresses: read it as root (kernel.kptr_restrict hides them)' % path)
        entries.sort()
        self.addrs = [e[0] for e in entries]
        self.entries = entries
        self.by_name = {}
        for addr, name, _mod in entries:
            self.by_name.setdefault(name, addr)

    def lookup(self, addr):
        """(name, offset, module) for an address, or None when it lies below every symbol."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        start, name, module = self.entries[i]
        return name, addr - start, module

    def format(self, addr):
        found = self.lookup(addr)
        if found is None:
            return '0x%x' % addr
        name, off, module = found
        return '%s+0x%x%s' % (name, off, ' [%s]' % module if module else '')


def parse_func_offset(text):
    """'nft_do_chain+0x3e8' -> ('nft_do_chain', 0x3e8); None if it is not of that form.
    A kallsyms module suffix (' [nf_tables]') is allowed; parse_location returns it."""
    found = parse_location(text)
    return found[:2] if found else None


def parse_location(text):
    """'nft_do_chain+0x3e8 [nf_tables]' -> ('nft_do_chain', 0x3e8, 'nf_tables'); module None for vmlinux."""
    m = _FUNC_OFF.match((text or '').strip())
    if not m:
        return None
    return m.group('func'), int(m.group('off'), 0), m.group('mod')


def parse_notes(data):
    """Hex build id from an ELF note blob (/sys/kernel/notes, or a .note section), or None."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from('<III', data, pos)
        pos += 12
        name = data[pos:pos + namesz].rstrip(b'\0')
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if ntype == NT_GNU_BUILD_ID and name == b'GNU':
            return desc.hex() if hasattr(desc, 'hex') else ''.join('%02x' % b for b in bytearray(desc))
    return None


def running_build_id(path=KERNEL_NOTES):
    try:
        with open(path, 'rb') as f:
            return parse_notes(f.read())
    except (IOError, OSError):
        return None


class ElfLines(object):
    """Symbols and source lines of one ELF with DWARF: a vmlinux, a module's .ko/.ko.debug (relocatable:
    addresses are section offsets), or any binary built with -g."""

    def __init__(self, path, run=subprocess.run, expect_build_id=None):
        self.path = path
        self._run = run
        if not os.path.isfile(path):
            raise SymbolError('%s does not exist' % path)
        with open(path, 'rb') as f:
            if f.read(4) != b'\x7fELF':
                raise SymbolError('%s is not an ELF file' % path)
        sections = self._tool(['readelf', '-S', '-W', path])
        if '.debug_info' not in sections:
            raise SymbolError('%s has no DWARF (.debug_info): install the debug package (the '
                              'ebpf.networking.debug_symbols role), not the stripped image' % path)
        self.section_names = {}
        for m in re.finditer(r'^\s*\[\s*(\d+)\]\s+(\S+)', sections, re.M):
            self.section_names[m.group(1)] = m.group(2)
        header = self._tool(['readelf', '-h', '-W', path])
        self.relocatable = bool(re.search(r'Type:\s+REL\b', header))
        notes = self._tool(['readelf', '-n', '-W', path])
        m = re.search(r'Build ID:\s*([0-9a-fA-F]+)', notes)
        self.build_id = m.group(1).lower() if m else None
        if expect_build_id and self.build_id != expect_build_id:
            raise SymbolError('%s has build id %s but the running kernel has %s: it is another build, its lines '
                              'would be wrong' % (path, self.build_id or 'none', expect_build_id))
        # name -> [(section or None, start, size)]
        self.symbols = {}
        for line in self._tool(['readelf', '-s', '-W', path]).splitlines():
            parts = line.split()
            if len(parts) < 8 or parts[3] != 'FUNC' or not parts[6].isdigit():
                continue
            try:
                start, size = int(parts[1], 16), int(parts[2], 0)
            except ValueError:
                continue
            section = self.section_names.get(parts[6]) if self.relocatable else None
            self.symbols.setdefault(parts[7].split('@')[0], []).append((section, start, size))

    def _tool(self, argv):
        try:
            proc = self._run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                             check=False)
        except OSError as e:
            raise SymbolError('%s is needed for source lines (apt-get install binutils): %s' % (argv[0], e))
        if proc.returncode != 0:
            raise SymbolError('%s failed: %s' % (' '.join(argv[:2]), proc.stderr.strip()))
        return proc.stdout

    def places(self, func, offset):
        """[(section, address)] where func+offset can be: every same-named function long enough to
        hold offset (faddr2line's rule)."""
        found = self.symbols.get(func)
        if not found:
            raise SymbolError('%s is not in the symbol table of %s (a different build?)' % (func, self.path))
        fits = [(sec, start + offset) for sec, start, size in found if size == 0 or offset < size]
        if not fits:
            raise SymbolError('%s+0x%x lies past the end of every %s in %s (a different build?)'
                              % (func, offset, func, self.path))
        return fits

    def resolve(self, queries):
        """queries: [(section, address)]. Returns {(section, address): [{function, file, line}]}, innermost
        (inlined) frame first, from one addr2line run per section."""
        by_section = {}
        for sec, addr in queries:
            by_section.setdefault(sec, set()).add(addr)
        out = {}
        for sec, addrs in by_section.items():
            ordered = sorted(addrs)
            argv = ['addr2line', '-a', '-f', '-i', '-e', self.path]
            if sec:
                argv += ['-j', sec]
            text = self._tool(argv + ['0x%x' % a for a in ordered])
            for addr, frames in _addr2line_groups(text):
                out[(sec, addr)] = frames
        return out

    def lines(self, func, offset):
        """[{function, file, line}] innermost frame first, for func+offset (first fitting symbol)."""
        place = self.places(func, offset)[0]
        frames = self.resolve([place]).get(place) or []
        if not frames or frames[0]['file'] == '??':
            raise SymbolError('no line information for %s+0x%x in %s' % (func, offset, self.path))
        return frames


def _addr2line_groups(text):
    """Parse `addr2line -a -f -i` output: an address line, then function/location pairs."""
    groups = []
    current = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if re.match(r'^0x[0-9a-fA-F]+$', line):
            current = (int(line, 16), [])
            groups.append(current)
            i += 1
            continue
        if current is not None and i + 1 < len(lines):
            loc = lines[i + 1].strip()
            file_, _sep, lineno = loc.rpartition(':')
            lineno = lineno.split()[0] if lineno else lineno
            current[1].append({'function': line, 'file': file_,
                               'line': int(lineno) if lineno.isdigit() else None})
        i += 2
    return [(a, [f for f in frames if f['file'] != '??'] or frames) for a, frames in groups]


def frame_text(frames):
    return ['%s %s:%s' % (f['function'], f['file'], f['line']) for f in frames]


def find_vmlinux(release=None, candidates=None):
    """A vmlinux with DWARF for this kernel in the usual places (Debian, Ubuntu, Fedora/RHEL)."""
    release = release or os.uname()[2]
    candidates = candidates or [
        '/usr/lib/debug/boot/vmlinux-%s' % release,                 # Ubuntu ddebs
        '/usr/lib/debug/lib/modules/%s/vmlinux' % release,          # Debian -dbg, Fedora debuginfo
        '/lib/modules/%s/build/vmlinux' % release,                  # a kernel build tree
        '/boot/vmlinux-%s' % release,
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def module_debug_dirs(release=None):
    release = release or os.uname()[2]
    return ['/usr/lib/debug/lib/modules/%s' % release, '/lib/modules/%s' % release]


def find_module_file(module, dirs):
    """The debug file of a kernel module: NAME.ko.debug, NAME.ko (also with - and _ swapped) under dirs."""
    wanted = set()
    for name in (module, module.replace('_', '-'), module.replace('-', '_')):
        for ext in ('.ko.debug', '.ko', '.ko.xz.debug', '.debug', '.o'):
            wanted.add(name + ext)
    for d in dirs or []:
        if os.path.isfile(d) and os.path.basename(d) in wanted:
            return d
        if not os.path.isdir(d):
            continue
        for root, _dirs, files in os.walk(d):
            for f in sorted(files):
                if f in wanted:
                    return os.path.join(root, f)
    return None


class Symbolizer(object):
    """Names and source lines for a whole trace: kallsyms for names, then one batch per ELF."""

    def __init__(self, kallsyms=None, kallsyms_error=None, vmlinux=None, vmlinux_error=None, module_dirs=None,
                 run=subprocess.run):
        self.kallsyms = kallsyms
        self.kallsyms_error = kallsyms_error
        self.vmlinux = vmlinux
        self.vmlinux_error = vmlinux_error
        self.module_dirs = module_dirs or []
        self.run = run
        self.modules = {}   # name -> ElfLines or error text

    @classmethod
    def for_running_kernel(cls, vmlinux=None, module_dirs=None, run=subprocess.run, notes=KERNEL_NOTES,
                           require_vmlinux=False, check_build_id=True, need_kallsyms=True):
        kallsyms, kerr = None, None
        if need_kallsyms:
            try:
                kallsyms = Kallsyms()
            except (IOError, OSError, SymbolError) as e:
                kerr = str(e)
        path = vmlinux or find_vmlinux()
        lines, lerr = None, None
        if not path:
            lerr = ('no vmlinux with DWARF for kernel %s in the usual places (/usr/lib/debug/...); install debug '
                    'symbols (ebpf.networking.debug_symbols role) or give vmlinux' % os.uname()[2])
        else:
            try:
                lines = ElfLines(path, run=run, expect_build_id=running_build_id(notes) if check_build_id else None)
            except SymbolError as e:
                if require_vmlinux:
                    raise
                lerr = str(e)
        dirs = list(module_dirs or []) + module_debug_dirs()
        return cls(kallsyms, kerr, lines, lerr if lines is None else None, dirs, run)

    def name(self, addr):
        return self.kallsyms.format(addr) if self.kallsyms else '0x%x' % addr

    def _elf_for(self, module):
        if module is None:
            return self.vmlinux, self.vmlinux_error
        if module not in self.modules:
            path = find_module_file(module, self.module_dirs)
            if path is None:
                self.modules[module] = 'no debug file for module %s under %s' % (module, ', '.join(self.module_dirs))
            else:
                try:
                    self.modules[module] = ElfLines(path, run=self.run)
                except SymbolError as e:
                    self.modules[module] = str(e)
        got = self.modules[module]
        return (got, None) if isinstance(got, ElfLines) else (None, got)

    def sources(self, locations, return_address=True):
        """{location text: [source lines] or {'error': ...}} for 'func+0xoff [module]' strings; return
        addresses are looked up at offset - 1 (the call instruction), as a stack trace needs."""
        plan = {}
        wanted = {}
        result = {}
        for loc in set(locations):
            parsed = parse_location(loc)
            if not parsed:
                continue
            func, off, module = parsed
            elf, err = self._elf_for(module)
            if elf is None:
                result[loc] = {'error': err}
                continue
            look = off - 1 if return_address and off > 0 else off
            try:
                places = elf.places(func, look)
            except SymbolError as e:
                result[loc] = {'error': str(e)}
                continue
            wanted[loc] = (elf, places)
            plan.setdefault(id(elf), (elf, set()))[1].update(places)
        resolved = {}
        for key, (elf, places) in plan.items():
            try:
                resolved[key] = elf.resolve(sorted(places, key=lambda p: (p[0] or '', p[1])))
            except SymbolError as e:
                resolved[key] = e
        for loc, (elf, places) in wanted.items():
            got = resolved[id(elf)]
            if isinstance(got, SymbolError):
                result[loc] = {'error': str(got)}
                continue
            chains = [frame_text(got.get(p) or []) for p in places]
            chains = [c for c in chains if c]
            if not chains:
                result[loc] = {'error': 'no line information for %s in %s' % (loc, elf.path)}
            elif len(chains) == 1:
                result[loc] = chains[0]
            else:
                result[loc] = {'ambiguous': chains}  # same-named functions that both fit, as faddr2line lists
        return result

    def add_sources(self, records):
        """Sets location_source/stack_source on drop records, one batch for all of them."""
        if self.vmlinux is None and not any(parse_location(r.get('location', '')) and
                                            parse_location(r['location'])[2] for r in records):
            return
        locs = []
        for r in records:
            locs.append(r.get('location', ''))
            locs.extend(r.get('stack') or [])
        found = self.sources(locs)
        for r in records:
            r['location_source'] = found.get(r.get('location'))
            if r.get('stack'):
                r['stack_source'] = [found.get(f) for f in r['stack']]

    def info(self):
        out = {'kallsyms': KALLSYMS if self.kallsyms else None}
        if self.kallsyms_error:
            out['kallsyms_error'] = self.kallsyms_error
        if self.vmlinux is not None:
            out['line_info'] = {'available': True, 'vmlinux': self.vmlinux.path, 'build_id': self.vmlinux.build_id}
        else:
            out['line_info'] = {'available': False, 'reason': self.vmlinux_error}
        if self.modules:
            out['modules'] = dict((m, v.path if isinstance(v, ElfLines) else {'error': v})
                                  for m, v in self.modules.items())
        return out
