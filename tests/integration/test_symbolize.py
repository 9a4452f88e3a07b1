# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Source lines from real ELFs with DWARF, built here with -g (no vmlinux with DWARF exists for this
custom kernel, so the faddr2line path is proven on our own binaries): a program standing in for
vmlinux, a relocatable object standing in for a module's debug file, same-named static functions,
return-address adjustment, the build-id check and one addr2line per ELF."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from conftest import run_module
from ansible_collections.ebpf.networking.plugins.module_utils import ksym

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


MODULE = r'''
int dt_counter;
int dt_mod_helper(int x)
{
    return x * 3;
}
int dt_mod_func(int v)
{
    int r = dt_mod_helper(v);
    dt_counter += r;
    return r;
}
'''
# two translation units with a static function of the same name and different sizes
SMALL = r'''
static int dt_twin(int x)
{
    return x + 1;
}
int dt_small(int x) { return dt_twin(x); }
'''
BIG = r'''
static int dt_twin(int x)
{
    int a = x * 7;
    a ^= a >> 3;
    a += x * 11;
    a ^= a << 2;
    a -= 5;
    return a;
}
int dt_big(int x) { return dt_twin(x); }
int main(void) { return 0; }
'''


def compiler():
    cc = shutil.which('gcc') or shutil.which('clang')
    if not cc or not shutil.which('addr2line'):
        pytest.fail('a C compiler and binutils are needed (the bpf_toolchain role installs clang and binutils)')
    return cc


@pytest.fixture(scope='module')
def elf(tmp_path_factory):
    cc = compiler()
    d = tmp_path_factory.mktemp('elf')
    src = d / 'prog.c'
    src.write_text(SOURCE)
    out = d / 'prog'
    subprocess.run([cc, '-g', '-O0', '-Wl,--build-id', '-o', str(out), str(src)], check=True)
    return str(out), str(src)


@pytest.fixture(scope='module')
def module_debug(tmp_path_factory):
    """dtmod.ko: a relocatable object with DWARF, as a kernel module's debug file is."""
    cc = compiler()
    d = tmp_path_factory.mktemp('mod')
    src = d / 'dtmod.c'
    src.write_text(MODULE)
    subprocess.run([cc, '-g', '-O0', '-c', '-o', str(d / 'dtmod.ko'), str(src)], check=True)
    return str(d), str(src)


@pytest.fixture(scope='module')
def twins(tmp_path_factory):
    cc = compiler()
    d = tmp_path_factory.mktemp('twins')
    (d / 'small.c').write_text(SMALL)
    (d / 'big.c').write_text(BIG)
    out = d / 'twins'
    subprocess.run([cc, '-g', '-O0', '-o', str(out), str(d / 'small.c'), str(d / 'big.c')], check=True)
    return str(out), str(d / 'small.c'), str(d / 'big.c')


def symbolize(**args):
    args.setdefault('check_build_id', False)  # our test ELFs are not the running kernel
    return run_module('kernel_symbolize', args)


def test_function_offset_maps_to_file_and_line(elf):
    path, src = elf
    result = symbolize(locations=['main+0x0', 'compute+0x0'], vmlinux=path)
    assert result['line_info']['available'] is True and result['vmlinux'] == path
    assert result['symbols'][0]['source'] == ['main %s:14' % src]  # SOURCE starts with a newline
    assert result['symbols'][1]['source'][0].startswith('compute %s:' % src)


def test_inlined_frames_are_listed_innermost_first(elf):
    path, src = elf
    locations = ['compute+0x%x' % off for off in range(0, 48)]
    result = symbolize(locations=locations, vmlinux=path)
    chains = [s['source'] for s in result['symbols'] if len(s.get('source', [])) > 1]
    assert chains, 'some offset of compute() lies in the inlined twice()'
    assert chains[0] == ['twice %s:5' % src, 'compute %s:9' % src]


def test_no_dwarf_is_reported_not_guessed(elf, tmp_path):
    path, _src = elf
    stripped = str(tmp_path / 'stripped')
    subprocess.run(['objcopy', '--strip-debug', path, stripped], check=True)
    result = symbolize(locations=['main+0x0'], vmlinux=stripped)
    assert result['line_info']['available'] is False and 'no DWARF' in result['line_info']['reason']
    assert 'source' not in result['symbols'][0]
    failed = symbolize(locations=['main+0x0'], vmlinux=stripped, require_lines=True)
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


def test_a_vmlinux_of_another_build_is_refused(elf):
    path, _src = elf
    result = run_module('kernel_symbolize', {'locations': ['main+0x0'], 'vmlinux': path})
    assert result['line_info']['available'] is False and 'build id' in result['line_info']['reason']
    assert 'source' not in result['symbols'][0]


def test_module_frame_uses_the_module_debug_file(module_debug):
    d, src = module_debug
    result = symbolize(locations=['dt_mod_func+0x8 [dtmod]', 'dt_mod_helper+0x0 [dtmod]'], module_debug_dirs=[d])
    first, second = result['symbols']
    assert (first['function'], first['module']) == ('dt_mod_func', 'dtmod')
    assert first['source'] == ['dt_mod_func %s:8' % src], first  # MODULE starts with a newline
    assert second['source'] == ['dt_mod_helper %s:4' % src]
    assert result['modules'] == {'dtmod': os.path.join(d, 'dtmod.ko')}
    missing = symbolize(locations=['nft_do_chain+0x3e8 [dt_nope]'], module_debug_dirs=[d])
    assert 'no debug file for module dt_nope' in missing['symbols'][0]['source_error']


def test_same_named_static_functions_are_told_apart_by_size(twins):
    path, small, big = twins
    sizes = [int(line.split()[2]) for line in subprocess.run(['readelf', '-sW', path], stdout=subprocess.PIPE,
                                                               universal_newlines=True, check=True).stdout.splitlines()
             if line.endswith(' dt_twin')]
    assert len(sizes) == 2 and min(sizes) < max(sizes)
    past_small = min(sizes) + 1  # only the big twin is that long
    result = symbolize(locations=['dt_twin+0x%x' % past_small, 'dt_twin+0x0'], vmlinux=path)
    only_big, both = result['symbols']
    assert only_big['source'][0].startswith('dt_twin %s:' % big), only_big
    assert sorted(chain[0].split(' ')[1].rsplit(':', 1)[0] for chain in both['ambiguous']) == sorted([small, big])


def test_return_addresses_are_looked_up_at_the_call(elf):
    path, src = elf
    calls = ElfFacts(path)
    after_call = calls.return_offset('main', 'compute')
    plain = symbolize(locations=['main+0x%x' % after_call], vmlinux=path)
    adjusted = symbolize(locations=['main+0x%x' % after_call], vmlinux=path, return_addresses=True)
    assert adjusted['symbols'][0]['source'] == ['main %s:15' % src]  # the line of `return compute(argc);`
    assert plain['symbols'][0]['source'] != adjusted['symbols'][0]['source'] or after_call == 0


def test_one_addr2line_per_elf_for_a_whole_trace(elf):
    path, _src = elf
    calls = []

    def counting_run(argv, **kw):
        calls.append(argv[0])
        return subprocess.run(argv, **kw)
    symbolizer = ksym.Symbolizer(vmlinux=ksym.ElfLines(path, run=counting_run), run=counting_run)
    found = symbolizer.sources(['compute+0x%x' % off for off in range(1, 30)] + ['main+0x4'])
    assert len(found) == 30 and all(isinstance(v, list) for v in found.values()), found
    assert calls.count('addr2line') == 1


class ElfFacts(object):
    """Offsets of call instructions, from objdump, to build return addresses."""

    def __init__(self, path):
        self.text = subprocess.run(['objdump', '-d', '--no-show-raw-insn', path], stdout=subprocess.PIPE,
                                   universal_newlines=True, check=True).stdout

    def return_offset(self, func, callee):
        start = None
        lines = self.text.splitlines()
        for i, line in enumerate(lines):
            if line.endswith('<%s>:' % func):
                start = int(line.split()[0], 16)
            elif start is not None and 'call' in line and '<%s>' % callee in line:
                return int(lines[i + 1].split(':')[0], 16) - start
        raise AssertionError('no call to %s in %s' % (callee, func))
