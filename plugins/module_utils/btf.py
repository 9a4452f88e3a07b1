# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Just enough of a BTF reader to ask the running kernel for struct member offsets and enum names.

bcc compiles against whatever headers are installed, which may belong to another kernel (here:
6.1 headers on 6.18). Offsets read from /sys/kernel/btf/vmlinux are the running kernel's own, so
programs that read kernel structs by hand (bpf_probe_read_kernel at an offset) stay right.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

VMLINUX_BTF = '/sys/kernel/btf/vmlinux'
BTF_MAGIC = 0xeB9F
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC_PROTO = 8, 9, 10, 11, 13
KIND_VAR, KIND_DATASEC, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 14, 15, 17, 18, 19
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


class BtfError(Exception):
    pass


class Btf(object):
    def __init__(self, data):
        if len(data) < 24:
            raise BtfError('BTF data too short')
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from('<HBBIIIII', data)
        if magic != BTF_MAGIC:
            raise BtfError('not BTF (magic %#x)' % magic)
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self.types = [None]  # type id 0 is void
        self._parse(data, hdr_len + type_off, hdr_len + type_off + type_len)
        self._by_name = {}
        for tid, t in enumerate(self.types):
            if t and t['name']:
                self._by_name.setdefault((t['kind'], t['name']), tid)

    @classmethod
    def from_file(cls, path=VMLINUX_BTF):
        with open(path, 'rb') as f:
            return cls(f.read())

    def _str(self, off):
        end = self.strings.find(b'\0', off)
        return self.strings[off:end].decode('utf-8', 'replace')

    def _parse(self, data, pos, end):
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from('<III', data, pos)
            pos += 12
            kind = (info >> 24) & 0x1f
            vlen = info & 0xffff
            kind_flag = info >> 31
            t = {'kind': kind, 'name': self._str(name_off), 'size': size_or_type, 'type': size_or_type}
            if kind == KIND_INT:
                pos += 4
            elif kind == KIND_ARRAY:
                t['elem'], _index, t['nelems'] = struct.unpack_from('<III', data, pos)
                pos += 12
            elif kind in (KIND_STRUCT, KIND_UNION):
                members = []
                for _i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from('<III', data, pos)
                    pos += 12
                    bit_off = m_off & 0xffffff if kind_flag else m_off
                    members.append({'name': self._str(m_name), 'type': m_type, 'bit_offset': bit_off})
                t['members'] = members
            elif kind == KIND_ENUM:
                values = {}
                for _i in range(vlen):
                    e_name, e_val = struct.unpack_from('<Ii', data, pos)
                    pos += 8
                    values[self._str(e_name)] = e_val
                t['values'] = values
            elif kind == KIND_ENUM64:
                values = {}
                for _i in range(vlen):
                    e_name, lo, hi = struct.unpack_from('<III', data, pos)
                    pos += 12
                    values[self._str(e_name)] = (hi << 32) | lo
                t['values'] = values
            elif kind == KIND_FUNC_PROTO:
                t['params'] = vlen
                pos += 8 * vlen
            elif kind in (KIND_VAR, KIND_DECL_TAG):
                pos += 4
            elif kind == KIND_DATASEC:
                pos += 12 * vlen
            self.types.append(t)

    def find(self, kind, name):
        tid = self._by_name.get((kind, name))
        if tid is None:
            raise BtfError('no %s %s in BTF' % ({KIND_STRUCT: 'struct', KIND_ENUM: 'enum', KIND_TYPEDEF: 'typedef'}
                                                 .get(kind, kind), name))
        return tid

    def _resolve(self, tid):
        while self.types[tid] and self.types[tid]['kind'] in _MODIFIERS:
            tid = self.types[tid]['type']
        return tid

    def member_offset(self, struct_name, member):
        """Byte offset of member in struct struct_name, looking through anonymous unions/structs."""
        found = self._member(self.find(KIND_STRUCT, struct_name), member)
        if found is None:
            raise BtfError('struct %s has no member %s' % (struct_name, member))
        return found[0] // 8, found[1]

    def path_offset(self, struct_name, path):
        """(byte offset, size) of a nested member, e.g. path_offset('net', 'ns.inum')."""
        tid = self.find(KIND_STRUCT, struct_name)
        bits = 0
        size = 0
        for member in path.split('.'):
            found = self._member(tid, member)
            if found is None:
                raise BtfError('struct %s has no member %s' % (struct_name, path))
            bits += found[0]
            size = found[1]
            tid = found[2]
        return bits // 8, size

    def func_proto_params(self, typedef_name):
        """Number of parameters of the function a typedef points to (btf_trace_<tracepoint> typedefs
        list the raw tracepoint's arguments after a leading void *)."""
        tid = self._resolve(self.find(KIND_TYPEDEF, typedef_name))
        t = self.types[tid]
        while t is not None and t['kind'] == KIND_PTR:
            t = self.types[self._resolve(t['type'])]
        if t is None or t['kind'] != KIND_FUNC_PROTO:
            raise BtfError('%s is not a function pointer' % typedef_name)
        return t['params']

    def _member(self, tid, member):
        t = self.types[self._resolve(tid)]
        for m in t.get('members', []):
            if m['name'] == member:
                return m['bit_offset'], self.type_size(m['type']), m['type']
            if not m['name']:
                inner = self._member(m['type'], member)
                if inner is not None:
                    return m['bit_offset'] + inner[0], inner[1], inner[2]
        return None

    def type_size(self, tid):
        t = self.types[self._resolve(tid)]
        if t is None:
            return 0
        if t['kind'] == KIND_PTR:
            return 8
        if t['kind'] == KIND_ARRAY:
            return self.type_size(t['elem']) * t['nelems']
        return t['size']

    def enum_values(self, name):
        tid = self._by_name.get((KIND_ENUM, name))
        if tid is None:
            tid = self.find(KIND_ENUM64, name)
        return dict(self.types[tid]['values'])
