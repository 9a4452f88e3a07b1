# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Source lines from a real ELF with DWARF, built here with -g (no vmlinux with DWARF exists for
this custom kernel, so the faddr2line path is proven on our own binary)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from conftest import run_module

SOURCE = r'''
#include <stdio.h>
static inline __attribute__((always_inline)) int twice(int x)
{
    return x * 2;
}
int compute(int v)
{
    int r = twice(v) + 1;
    printf("%d\n", r);
    return r;
}
int main(int argc, char **argv)
{
    return compute(argc);
}
'''


@pytest.fixture(scope='module')
def elf(tmp_path_factory):
    cc = shutil.which('gcc') or shutil.which('clang')
    if not cc or not shutil.which('addr2line'):
        pytest.fail('a C compiler and binutils are needed (the bpf_toolchain role installs clang and binutils)')
    d = tmp_path_factory.mktemp('elf')
    src = d / 'prog.c'
    src.write_text(SOURCE)
    out = d / 'prog'
    subprocess.run([cc, '-g', '-O0', '-o', str(out), str(src)], check=True)
    return str(out), str(src)


def test_function_offset_maps_to_file_and_line(elf):
    path, src = elf
    result = run_module('kernel_symbolize', {'locations': ['main+0x0', 'compute+0x0'], 'vmlinux': path})
    assert result['line_info'] == {'available': True} and result['vmlinux'] == path
    assert result['symbols'][0]['source'] == ['main %s:14' % src]  # SOURCE starts with a newline
    assert result['symbols'][1]['source'][0].startswith('compute %s:' % src)


def test_inlined_frames_are_listed_innermost_first(elf):
    path, src = elf
    locations = ['compute+0x%x' % off for off in range(0, 48)]
    result = run_module('kernel_symbolize', {'locations': locations, 'vmlinux': path})
    chains = [s['source'] for s in result['symbols'] if len(s.get('source', [])) > 1]
    assert chains, 'some offset of compute() lies in the inlined twice()'
    assert chains[0] == ['twice %s:5' % src, 'compute %s:9' % src]


def test_no_dwarf_is_reported_not_guessed(elf, tmp_path):
    path, _src = elf
    stripped = str(tmp_path / 'stripped')
    subprocess.run(['objcopy', '--strip-debug', path, stripped], check=True)
    result = run_module('kernel_symbolize', {'locations': ['main+0x0'], 'vmlinux': stripped})
    assert result['line_info']['available'] is False and 'no DWARF' in result['line_info']['reason']
    assert 'source' not in result['symbols'][0]
    failed = run_module('kernel_symbolize', {'locations': ['main+0x0'], 'vmlinux': stripped, 'require_lines': True})
    assert failed.get('failed') and 'no DWARF' in failed['msg']


def test_kernel_addresses_resolve_through_kallsyms(require_root):
    with open('/proc/kallsyms') as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if name == 'ip_local_out' and kind in 'tT':
                break
    result = run_module('kernel_symbolize', {'locations': ['0x%x' % (int(addr, 16) + 0x1c)]})
    assert result['symbols'][0]['location'] == 'ip_local_out+0x1c'
    if not os.path.exists('/usr/lib/debug/boot/vmlinux-%s' % os.uname()[2]):
        assert result['line_info']['available'] is False and 'no vmlinux' in result['line_info']['reason']
