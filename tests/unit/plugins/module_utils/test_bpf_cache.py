# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compiled-program cache without a kernel: relocation records, the entry file (atomic, checked,
trusted only in a private directory), the key (any input change is a miss), and bpf_loader.load_programs'
choice between cache and compile (bcc and the kernel faked). Loading real programs from the cache is in
tests/integration/test_bpf_cache.py."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import os
import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_cache, bpf_loader

INSN = struct.Struct('<BBhi')


def insn(code, dst=0, src=0, off=0, imm=0):
    return INSN.pack(code, dst | (src << 4), off, imm)


def ld_map(dst, fd):
    return insn(0x18, dst, 1, 0, fd) + insn(0, 0, 0, 0, 0)


PROGRAM = (insn(0xb7, 0, 0, 0, 2) + ld_map(1, 7) + insn(0x85, 0, 0, 0, 1) + ld_map(2, 9) +
           insn(0x18, 3, 0, 0, 0x1234) + insn(0, 0, 0, 0, 0x5678) + insn(0x95))


def test_map_refs_finds_every_map_fd_load_and_skips_second_slots():
    # slot 0 mov, 1-2 ld_imm64 map 7, 3 call, 4-5 map 9, 6-7 plain 64-bit constant, 8 exit
    assert bpf_cache.map_refs(PROGRAM) == [(1, 7), (4, 9)]


def test_a_second_slot_that_looks_like_a_map_load_is_not_one():
    # the high half of a constant whose bytes read as code 0x18 / src 1
    tricky = insn(0x18, 1, 0, 0, 5) + insn(0x18, 0, 1, 0, 99) + insn(0x95)
    assert bpf_cache.map_refs(tricky) == []


@pytest.mark.parametrize('code,src,what', [(0x18, 2, 'ld_imm64 with src_reg 2'), (0x18, 3, 'src_reg 3'),
                                           (0x85, 2, 'call with src_reg 2')])
def test_relocations_the_cache_cannot_keep_are_refused(code, src, what):
    prog = insn(code, 1, src, 0, 1) + insn(0, 0, 0, 0, 0) + insn(0x95)
    with pytest.raises(bpf_cache.CacheMiss, match=what):
        bpf_cache.map_refs(prog)


def test_truncated_instructions_are_refused():
    with pytest.raises(bpf_cache.CacheMiss):
        bpf_cache.map_refs(PROGRAM[:-3])
    with pytest.raises(bpf_cache.CacheMiss, match='truncated'):
        bpf_cache.map_refs(insn(0x18, 1, 1, 0, 7))


def test_patch_puts_the_new_fds_only_where_maps_are_loaded():
    out = bpf_cache.patch(PROGRAM, [(1, 'a'), (4, 'b')], {'a': 41, 'b': 42})
    assert bpf_cache.map_refs(out) == [(1, 41), (4, 42)]
    assert out[:8] == PROGRAM[:8] and out[16:32] == PROGRAM[16:32] and out[48:] == PROGRAM[48:]


@pytest.mark.parametrize('refs,words', [([(99, 'a')], 'outside the program'), ([(-1, 'a')], 'outside the program'),
                                        ([(0, 'a')], 'not a map fd load'), ([(2, 'a')], 'not a map fd load')])
def test_patch_refuses_a_reference_that_is_not_a_map_load(refs, words):
    # slot 0 is a mov, slot 2 the second half of a ld_imm64: writing an fd there would change the program
    with pytest.raises(ValueError, match=words):
        bpf_cache.patch(PROGRAM, refs, {'a': 41})


def entry():
    return {'format': bpf_cache.FORMAT, 'license': 'GPL', 'btf': {},
            'maps': {'m': {'name': 'm', 'type_id': 2, 'key_size': 4, 'value_size': 8, 'max_entries': 1, 'flags': 0,
                           'btf_id': 0, 'btf_key_type_id': 0, 'btf_value_type_id': 0}},
            'programs': {'f': {'prog_type': 6, 'expected_attach_type': 0,
                               'insns': base64.b64encode(PROGRAM).decode(), 'map_refs': [[1, 'm'], [4, 'm']]}}}


@pytest.fixture
def cache_dir(tmp_path):
    d = tmp_path / 'cache'
    return str(d)


def test_an_entry_reads_back_as_written_in_a_private_directory(cache_dir):
    path = bpf_cache.store('k1', entry(), cache_dir)
    assert oct(os.stat(cache_dir).st_mode & 0o777) == '0o700' and oct(os.stat(path).st_mode & 0o777) == '0o600'
    got = bpf_cache.read('k1', cache_dir)
    assert got['programs'] == entry()['programs'] and got['key'] == 'k1'
    assert os.listdir(cache_dir) == ['k1.json'], 'no temporary file left'


def test_a_failed_store_keeps_the_old_entry_and_leaves_no_temporary(cache_dir, monkeypatch):
    path = bpf_cache.store('k1', entry(), cache_dir)
    old = open(path).read()

    def broken_rename(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'rename', broken_rename)
    changed = entry()
    changed['license'] = 'Dual BSD/GPL'
    with pytest.raises(OSError):
        bpf_cache.store('k1', changed, cache_dir)
    assert open(path).read() == old and os.listdir(cache_dir) == ['k1.json']


def test_a_missing_entry_is_a_plain_miss(cache_dir):
    with pytest.raises(bpf_cache.CacheMiss, match='^no cached copy$'):
        bpf_cache.read('nothere', cache_dir)


@pytest.mark.parametrize('damage,reason', [
    (lambda t: t[:len(t) // 2], 'unreadable'),
    (lambda t: t.replace('"GPL"', '"BSD"'), 'corrupt'),
    (lambda t: t.replace('"prog_type": 6', '"prog_type": 7'), 'corrupt'),
    (lambda t: '[]', 'corrupt'),
    (lambda t: '', 'unreadable'),
])
def test_a_damaged_entry_is_a_miss_that_says_so(cache_dir, damage, reason):
    path = bpf_cache.store('k1', entry(), cache_dir)
    text = open(path).read()
    with open(path, 'w') as f:
        f.write(damage(text))
    with pytest.raises(bpf_cache.CacheMiss, match=reason):
        bpf_cache.read('k1', cache_dir)


def test_an_entry_under_another_name_is_not_used(cache_dir):
    path = bpf_cache.store('k1', entry(), cache_dir)
    os.rename(path, bpf_cache.entry_path('k2', cache_dir))
    with pytest.raises(bpf_cache.CacheMiss, match='another format or key'):
        bpf_cache.read('k2', cache_dir)


def test_a_directory_others_can_write_is_not_trusted(cache_dir):
    bpf_cache.store('k1', entry(), cache_dir)
    os.chmod(cache_dir, 0o777)
    with pytest.raises(bpf_cache.CacheMiss, match='not trusted'):
        bpf_cache.read('k1', cache_dir)


SOURCES = {'p.bpf.c': 'int f(void *ctx) { return 2; }\n', 'p.h': '#define X 1\n'}


def key(**change):
    args = dict(sources=SOURCES, main='p.bpf.c', cflags=['-DA=1'], functions={'f': (6, 0)}, bcc_version='0.26.0')
    args.update(change)
    return bpf_cache.cache_key(**args)


def test_the_key_changes_with_every_input(monkeypatch):
    base = key()
    assert key() == base
    others = [key(sources=dict(SOURCES, **{'p.h': '#define X 2\n'})), key(sources=dict(SOURCES, **{'q.h': ''})),
              key(main='p.h'), key(cflags=['-DA=2']), key(cflags=['-DA=1', '-DB']), key(functions={'f': (13, 0)}),
              key(functions={'f': (6, 0), 'g': (6, 0)}), key(bcc_version='0.29.1')]
    assert len(set(others + [base])) == len(others) + 1
    real = os.uname()
    monkeypatch.setattr(os, 'uname', lambda: (real[0], real[1], '9.9.9-other', real[3], real[4]))
    assert key() != base, 'another kernel release is another key'
    monkeypatch.setattr(os, 'uname', lambda: (real[0], real[1], real[2], '#2 SMP rebuilt', real[4]))
    assert key() != base, 'another build of the same release is another key'


# -- bpf_loader.load_programs: cache first, bcc otherwise, and what it says --

@pytest.fixture
def fake(monkeypatch, cache_dir):
    state = {'compiles': 0, 'loads': [], 'load_error': None}

    def compile_and_load(sources, main, cflags, functions):
        state['compiles'] += 1
        return 'BPF', dict((fn, 100 + i) for i, fn in enumerate(sorted(functions)))

    def capture_compiled(bpf, functions, map_fds):
        return entry()

    def load(ent, pinned_maps=None):
        if state['load_error']:
            raise bpf_cache.CacheMiss(state['load_error'])
        state['loads'].append(pinned_maps)
        return {'f': 200}, {'m': 201}

    monkeypatch.setattr(bpf_loader, 'compile_and_load', compile_and_load)
    monkeypatch.setattr(bpf_loader, 'capture_compiled', capture_compiled)
    monkeypatch.setattr(bpf_loader, 'table_fd', lambda bpf, name: 300)
    monkeypatch.setattr(bpf_cache, 'load', load)
    monkeypatch.setattr(os, 'close', lambda fd: None)
    return state


def load(cache_dir, sources=None, **kw):
    return bpf_loader.load_programs(sources or SOURCES, 'p.bpf.c', ['-DA=1'], {'f': 'xdp'}, maps=('m',), cache_dir=cache_dir,
                                    **kw)


def test_first_load_compiles_and_keeps_it_the_second_does_not_compile(fake, cache_dir):
    first = load(cache_dir)
    assert first.origin == 'compiled' and fake['compiles'] == 1
    assert 'no cached copy' in first.note and 'kept in the compiled-program cache' in first.note
    assert first.prog_fds == {'f': 100} and first.map_fds == {'m': 300}
    second = load(cache_dir, pinned_maps={'m': '/sys/fs/bpf/x/map_m'})
    assert second.origin == 'cache' and fake['compiles'] == 1
    assert second.prog_fds == {'f': 200} and second.map_fds == {'m': 201}
    assert fake['loads'] == [{'m': '/sys/fs/bpf/x/map_m'}], 'pinned maps are passed to the cached load'
    assert 'loaded from the compiled-program cache' in second.note


def test_a_cache_of_another_source_is_not_used(fake, cache_dir):
    load(cache_dir)
    other = load(cache_dir, sources=dict(SOURCES, **{'p.h': '#define X 2\n'}))
    assert other.origin == 'compiled' and fake['compiles'] == 2 and fake['loads'] == []


def test_a_corrupt_entry_falls_back_to_bcc_says_so_and_is_replaced(fake, cache_dir):
    load(cache_dir)
    path = os.path.join(cache_dir, os.listdir(cache_dir)[0])
    with open(path, 'w') as f:
        f.write('{"format": 1, "checksum": "x"}')
    again = load(cache_dir)
    assert again.origin == 'compiled' and fake['compiles'] == 2
    assert 'not usable' in again.note and 'corrupt' in again.note
    assert bpf_cache.read(os.listdir(cache_dir)[0][:-5], cache_dir)['checksum'] != 'x', 'a good entry replaced it'
    assert load(cache_dir).origin == 'cache'


def test_a_verifier_refusal_falls_back_to_bcc(fake, cache_dir):
    load(cache_dir)
    fake['load_error'] = 'the kernel refused cached program f: Permission denied'
    again = load(cache_dir)
    assert again.origin == 'compiled' and 'kernel refused cached program f' in again.note


def test_an_entry_without_a_function_asked_for_is_not_used(fake, cache_dir):
    load(cache_dir)
    path = os.path.join(cache_dir, os.listdir(cache_dir)[0])
    doc = json.load(open(path))
    doc['programs'] = {'g': doc['programs']['f']}
    doc['checksum'] = bpf_cache._checksum(doc)  # pylint: disable=protected-access
    json.dump(doc, open(path, 'w'))
    again = load(cache_dir)
    assert again.origin == 'compiled' and 'lacks functions or maps' in again.note


def test_use_cache_false_never_reads_or_writes_it(fake, cache_dir):
    first = load(cache_dir, use_cache=False)
    assert first.origin == 'compiled' and not os.path.exists(cache_dir)


def test_an_uncacheable_program_still_loads(fake, cache_dir, monkeypatch):
    def refuse(bpf, functions, map_fds):
        raise bpf_cache.CacheMiss('ld_imm64 with src_reg 2 at instruction 5 is not cacheable')
    monkeypatch.setattr(bpf_loader, 'capture_compiled', refuse)
    got = load(cache_dir)
    assert got.origin == 'compiled' and 'not cached: ld_imm64' in got.note


def test_the_least_recently_used_entries_are_pruned(cache_dir, monkeypatch):
    monkeypatch.setattr(bpf_cache, 'MAX_ENTRIES', 3)
    for n in range(3):
        bpf_cache.store('k%d' % n, entry(), cache_dir)
        os.utime(bpf_cache.entry_path('k%d' % n, cache_dir), (1000 + n, 1000 + n))
    bpf_cache.read('k0', cache_dir)   # used now: the newest
    bpf_cache.prune(cache_dir, keep=3)
    bpf_cache.store('k3', entry(), cache_dir)
    bpf_cache.prune(cache_dir, keep=3)
    assert sorted(os.listdir(cache_dir)) == ['k0.json', 'k2.json', 'k3.json']
