# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel addresses to `function+offset` (from /proc/kallsyms) and to source lines (from a vmlinux
with DWARF, the way the kernel's scripts/faddr2line does: find the function in the ELF's symbol
table, add the offset, ask addr2line, inlined frames included)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bisect
import os
import re
import subprocess

KALLSYMS = '/proc/kallsyms'
_FUNC_OFF = re.compile(r'^(?P<func>[A-Za-z0-9_.$]+)\+(?P<off>0x[0-9a-fA-F]+|\d+)(?:/0x[0-9a-fA-F]+)?$')


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
    """'nft_do_chain+0x3e8' -> ('nft_do_chain', 0x3e8); None if it is not of that form."""
    m = _FUNC_OFF.match(text.strip())
    if not m:
        return None
    return m.group('func'), int(m.group('off'), 0)


class ElfLines(object):
    """Source lines from an ELF with DWARF (a vmlinux, or any binary built with -g)."""

    def __init__(self, path, run=subprocess.run):
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
        self.symbols = {}
        for line in self._tool(['nm', '--defined-only', path]).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in 'tTwW':
                self.symbols.setdefault(parts[2], int(parts[0], 16))

    def _tool(self, argv):
        try:
            proc = self._run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                             check=False)
        except OSError as e:
            raise SymbolError('%s is needed for source lines (apt-get install binutils): %s' % (argv[0], e))
        if proc.returncode != 0:
            raise SymbolError('%s failed: %s' % (' '.join(argv[:2]), proc.stderr.strip()))
        return proc.stdout

    def lines(self, func, offset):
        """[{function, file, line}] innermost (inlined) frame first, for func+offset."""
        if func not in self.symbols:
            raise SymbolError('%s is not in the symbol table of %s (a different build?)' % (func, self.path))
        addr = self.symbols[func] + offset
        out = self._tool(['addr2line', '-f', '-i', '-e', self.path, '0x%x' % addr]).splitlines()
        frames = []
        for fn, loc in zip(out[0::2], out[1::2]):
            file_, _sep, line = loc.rpartition(':')
            line = line.split()[0] if line else line
            frames.append({'function': fn, 'file': file_, 'line': int(line) if line.isdigit() else None})
        if not frames or frames[0]['file'] == '??':
            raise SymbolError('no line information for %s+0x%x in %s' % (func, offset, self.path))
        return frames


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
