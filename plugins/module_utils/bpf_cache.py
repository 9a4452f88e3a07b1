# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compiled-program cache: what the kernel needs to load a bcc-compiled program again, without clang.

bcc compiles on every load (seconds of clang over the kernel headers), which is most of a restore after a
reboot. After a compile, capture() keeps per function the instructions bcc handed to the kernel, its
program type, expected attach type and license, the specs of the maps it uses, and where the instructions
load a map fd (ld_imm64 with src_reg BPF_PSEUDO_MAP_FD). load() creates (or opens, for pinned maps) the
maps, patches their fds into those places and loads the programs with bpf(2).

An entry is keyed by a hash of the sources, main file, cflags, functions, running kernel (release and
build), kernel headers and bcc version: any change is another key, never a stale hit. An entry is a JSON
file, written atomically, carrying its own checksum; the directory must belong to root and not be
writable by anyone else (the instructions go into the kernel as root). Anything off raises CacheMiss with
the reason, and the caller compiles with bcc instead. No import from ansible: the host agent uses it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import hashlib
import json
import os
import stat
import struct

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_syscall

CACHE_DIR = os.environ.get('EBPF_NETWORKING_CACHE_DIR', '/var/cache/ebpf-networking/programs')
FORMAT = 1
INSN = struct.Struct('<BBhi')
LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two instruction slots
CALL = 0x85
PSEUDO_MAP_FD = 1
VERIFIER_LOG_SIZE = 1 << 20
MAX_ENTRIES = 32  # builds kept; the least recently used go first (an entry is some 100-300 KB)


class CacheMiss(Exception):
    """The cache cannot serve this load; str() says why (logged, then bcc compiles)."""


def kernel_identity():
    """What a compiled program depends on besides its sources: running kernel, its headers."""
    uts = os.uname()
    build = '/lib/modules/%s/build' % uts[2]
    headers = [os.path.realpath(p) for p in (build, '/lib/modules/%s/source' % uts[2])]
    return {'release': uts[2], 'version': uts[3], 'machine': uts[4], 'headers': headers}


def cache_key(sources, main, cflags, functions, bcc_version):
    """Hex sha256 naming an entry. functions: {name: (prog_type, expected_attach_type)}."""
    ident = {'format': FORMAT, 'main': main, 'cflags': list(cflags),
             'functions': sorted([fn, list(t)] for fn, t in functions.items()),
             'sources': sorted([n, hashlib.sha256(t.encode()).hexdigest()] for n, t in sources.items()),
             'kernel': kernel_identity(), 'bcc': bcc_version}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _b64(data):
    return base64.b64encode(data).decode()


def map_refs(insns):
    """[(slot index, fd)] of every ld_imm64 loading a map fd. Raises CacheMiss for any other pseudo
    load or call (map values, BTF ids, kfuncs): those need relocations the cache does not keep."""
    if len(insns) % 8:
        raise CacheMiss('instruction bytes are not a multiple of 8')
    refs = []
    slot, count = 0, len(insns) // 8
    while slot < count:
        code, regs, _off, imm = INSN.unpack_from(insns, slot * 8)
        src = regs >> 4
        if code == LD_IMM64:
            if slot + 1 >= count:
                raise CacheMiss('truncated ld_imm64 at instruction %d' % slot)
            if src == PSEUDO_MAP_FD:
                refs.append((slot, imm))
            elif src:
                raise CacheMiss('ld_imm64 with src_reg %d at instruction %d is not cacheable' % (src, slot))
            slot += 2
            continue
        if code == CALL and src not in (0, 1):  # 1: a call within the program (pc-relative, needs nothing)
            raise CacheMiss('call with src_reg %d at instruction %d is not cacheable' % (src, slot))
        slot += 1
    return refs


def patch(insns, refs, fds):
    """insns with each ref's map fd replaced: refs [(slot, map name)], fds {map name: fd}."""
    out = bytearray(insns)
    for slot, name in refs:
        if not isinstance(slot, int) or not 0 <= slot < len(out) // 8:
            raise ValueError('map reference %r is outside the program (%d instructions)' % (slot, len(out) // 8))
        code, regs, off, _imm = INSN.unpack_from(out, slot * 8)
        if code != 0x18 or (regs >> 4) != 1:  # only ld_imm64 with src_reg BPF_PSEUDO_MAP_FD holds a map fd
            raise ValueError('instruction %d is not a map fd load (code 0x%x)' % (slot, code))
        INSN.pack_into(out, slot * 8, code, regs, off, fds[name])
    return bytes(out)


def map_spec(fd):
    info = bpf_syscall.map_info(fd)
    spec = dict((k, info[k]) for k in ('name', 'type_id', 'key_size', 'value_size', 'max_entries', 'flags'))
    spec['btf_id'], spec['btf_key_type_id'], spec['btf_value_type_id'] = bpf_syscall.map_btf(fd)
    return spec


def capture(programs, map_fds, license_text):
    """An entry (a dict) from what bcc loaded.

    programs: {function: (insn bytes as loaded, prog_type, expected_attach_type)}; map_fds: {map name: fd}
    of every map of the compiled module. Raises CacheMiss when something cannot be kept.
    """
    by_fd = dict((fd, name) for name, fd in map_fds.items())
    used = set()
    entry_programs = {}
    for fn, (insns, prog_type, attach_type) in programs.items():
        refs = []
        for slot, fd in map_refs(insns):
            if fd not in by_fd:
                raise CacheMiss('%s loads map fd %d that is none of the module\'s maps' % (fn, fd))
            refs.append([slot, by_fd[fd]])
            used.add(by_fd[fd])
        entry_programs[fn] = {'prog_type': prog_type, 'expected_attach_type': attach_type, 'insns': _b64(insns),
                              'map_refs': refs}
    maps = {}
    btf = {}
    for name, fd in map_fds.items():
        spec = map_spec(fd)
        if spec['btf_id']:
            if spec['btf_id'] not in btf:
                bfd = bpf_syscall.btf_fd_by_id(spec['btf_id'])
                try:
                    btf[spec['btf_id']] = _b64(bpf_syscall.btf_data(bfd))
                finally:
                    os.close(bfd)
            spec['btf'] = str(spec['btf_id'])
        maps[name] = spec
    return {'format': FORMAT, 'license': license_text, 'programs': entry_programs, 'maps': maps,
            'btf': dict((str(k), v) for k, v in btf.items())}


def _checksum(entry):
    body = dict((k, v) for k, v in entry.items() if k != 'checksum')
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def entry_path(key, cache_dir=None):
    return os.path.join(cache_dir or CACHE_DIR, key + '.json')


def _check_dir(path):
    """The cache feeds the kernel as root: refuse a directory someone else could write to."""
    st = os.stat(path)
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheMiss('cache directory %s is writable by others or not owned by uid %d: not trusted'
                        % (path, os.geteuid()))


def store(key, entry, cache_dir=None):
    """Write an entry atomically (mode 0600 in a 0700 directory); returns its path."""
    directory = cache_dir or CACHE_DIR
    agent_state.make_dirs(directory, 0o700)
    _check_dir(directory)
    entry = dict(entry, key=key)
    entry['checksum'] = _checksum(entry)
    agent_state.write_atomic(entry_path(key, directory), json.dumps(entry, sort_keys=True), mode=0o600)
    prune(directory)
    return entry_path(key, directory)


def prune(directory, keep=None):
    """Remove all but the keep (MAX_ENTRIES) most recently used entries (read() refreshes their mtime)."""
    keep = MAX_ENTRIES if keep is None else keep
    entries = []
    for name in os.listdir(directory):
        if name.endswith('.json') and not name.startswith('.'):
            try:
                entries.append((os.stat(os.path.join(directory, name)).st_mtime, name))
            except OSError:
                continue
    for _mtime, name in sorted(entries, reverse=True)[keep:]:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def read(key, cache_dir=None):
    """The entry for key, checked; raises CacheMiss (missing, corrupt, another key or format)."""
    directory = cache_dir or CACHE_DIR
    path = entry_path(key, directory)
    if not os.path.exists(path):
        raise CacheMiss('no cached copy')
    _check_dir(directory)
    try:
        with open(path) as f:
            entry = json.load(f)
    except (IOError, OSError, ValueError) as e:
        raise CacheMiss('cache entry %s unreadable: %s' % (path, e))
    if not isinstance(entry, dict) or entry.get('checksum') != _checksum(entry):
        raise CacheMiss('cache entry %s is corrupt (checksum mismatch)' % path)
    if entry.get('format') != FORMAT or entry.get('key') != key:
        raise CacheMiss('cache entry %s is of another format or key' % path)
    try:
        os.utime(path, None)  # recently used: kept by prune()
    except OSError:
        pass
    return entry


def discard(key, cache_dir=None):
    try:
        os.unlink(entry_path(key, cache_dir))
    except OSError:
        pass


SPEC_FIELDS = ('type_id', 'key_size', 'value_size', 'max_entries', 'flags')


def _open_or_create_map(name, spec, pin_path, btf_fds, created_pins):
    if pin_path and os.path.exists(pin_path):
        fd = bpf_syscall.obj_get(pin_path)
        have = bpf_syscall.map_info(fd)
        if any(have[k] != spec[k] for k in SPEC_FIELDS):
            os.close(fd)
            raise CacheMiss('pinned map %s differs from the cached spec (%s)' % (
                pin_path, ', '.join('%s %s != %s' % (k, have[k], spec[k]) for k in SPEC_FIELDS if have[k] != spec[k])))
        return fd
    btf_fd = btf_fds.get(spec.get('btf')) or 0
    fd = bpf_syscall.map_create(spec['type_id'], spec['key_size'], spec['value_size'], spec['max_entries'],
                                spec['flags'], spec['name'], btf_fd, spec['btf_key_type_id'] if btf_fd else 0,
                                spec['btf_value_type_id'] if btf_fd else 0)
    if pin_path:
        try:
            bpf_syscall.obj_pin(fd, pin_path)
        except bpf_syscall.BpfError:
            os.close(fd)
            raise
        created_pins.append(pin_path)
    return fd


def _load_program(fn, prog, insns, license_text):
    """Load without a verifier log (a log of a large program does not fit any buffer: ENOSPC); only when the
    kernel refuses, load again with one to say why."""
    try:
        return bpf_syscall.prog_load(prog['prog_type'], insns, license_text, fn, prog['expected_attach_type'])
    except bpf_syscall.BpfError as e:
        first = e
    log = ''
    try:
        fd = bpf_syscall.prog_load(prog['prog_type'], insns, license_text, fn, prog['expected_attach_type'],
                                   VERIFIER_LOG_SIZE)
        os.close(fd)  # accepted the second time: keep the first refusal as the answer
    except bpf_syscall.BpfError as e:
        log = getattr(e, 'log', '')
    tail = '\n'.join(log.strip().splitlines()[-5:])
    raise CacheMiss('the kernel refused cached program %s: %s%s' % (fn, first, '\n' + tail if tail else ''))


def load(entry, pinned_maps=None):
    """Load an entry: ({function: prog fd}, {map name: map fd}); the caller closes both.

    pinned_maps: {map name: pin path}: open the map pinned there (its spec must match), or create it and
    pin it there, as bcc's BPF_TABLE_PINNED does. Every other map is created. Raises CacheMiss (with the
    verifier's log when it refuses a program); a failed load leaves nothing open, and unpins what it pinned.
    """
    pinned_maps = pinned_maps or {}
    created_pins = []
    btf_fds = {}
    map_fds = {}
    prog_fds = {}
    try:
        for bid, blob in entry['btf'].items():
            btf_fds[bid] = bpf_syscall.btf_load(base64.b64decode(blob))
        for name, spec in sorted(entry['maps'].items()):
            map_fds[name] = _open_or_create_map(name, spec, pinned_maps.get(name), btf_fds, created_pins)
        for fn, prog in sorted(entry['programs'].items()):
            insns = patch(base64.b64decode(prog['insns']), prog['map_refs'], map_fds)
            prog_fds[fn] = _load_program(fn, prog, insns, entry['license'])
        return prog_fds, map_fds
    except CacheMiss:
        _undo(prog_fds, map_fds, created_pins)
        raise
    except (bpf_syscall.BpfError, KeyError, TypeError, ValueError, struct.error, OSError) as e:
        _undo(prog_fds, map_fds, created_pins)
        raise CacheMiss('cached entry could not be loaded: %s' % (e,))
    finally:
        for fd in btf_fds.values():
            os.close(fd)


def _undo(prog_fds, map_fds, created_pins):
    for d in (prog_fds, map_fds):
        for fd in d.values():
            os.close(fd)
        d.clear()
    for path in created_pins:
        try:
            os.unlink(path)
        except OSError:
            pass
