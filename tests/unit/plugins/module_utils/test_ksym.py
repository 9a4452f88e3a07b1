# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

from ansible_collections.ebpf.networking.plugins.module_utils import ksym


def note(name, ntype, desc):
    pad = lambda b: b + b'\0' * (-len(b) % 4)  # noqa: E731
    return struct.pack('<III', len(name) + 1, len(desc), ntype) + pad(name + b'\0') + pad(desc)


def test_build_id_from_kernel_notes():
    blob = note(b'Xen', 6, b'\1\2\3\4') + note(b'GNU', 3, bytes(bytearray(range(20))))
    assert ksym.parse_notes(blob) == bytes(bytearray(range(20))).hex()
    assert ksym.parse_notes(note(b'Linux', 1, b'\0' * 4)) is None


def test_addr2line_output_is_split_per_address_with_inlined_frames():
    text = ('0x0000000000001139\ntwice\n/src/prog.c:5\ncompute\n/src/prog.c:9\n'
            '0x0000000000001160\nmain\n/src/prog.c:14 (discriminator 1)\n')
    groups = dict(ksym._addr2line_groups(text))
    assert [f['function'] for f in groups[0x1139]] == ['twice', 'compute']
    assert groups[0x1160] == [{'function': 'main', 'file': '/src/prog.c', 'line': 14}]


def test_module_debug_file_is_found_by_name(tmp_path):
    deep = tmp_path / 'kernel' / 'net' / 'netfilter'
    deep.mkdir(parents=True)
    (deep / 'nf_tables.ko.debug').write_text('')
    (tmp_path / 'other.ko').write_text('')
    assert ksym.find_module_file('nf_tables', [str(tmp_path)]) == str(deep / 'nf_tables.ko.debug')
    assert ksym.find_module_file('nf-tables', [str(tmp_path)]) == str(deep / 'nf_tables.ko.debug')
    assert ksym.find_module_file('missing', [str(tmp_path)]) is None
