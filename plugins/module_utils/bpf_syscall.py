# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The few bpf(2) commands the collection needs, called through ctypes.

Reading and writing pinned maps must work without compiling anything (xdp_stats, state checks,
absent), so this does not depend on bcc.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import ctypes.util
import errno
import os
import struct

__all__ = ['BpfError', 'obj_get', 'obj_pin', 'map_lookup', 'map_update', 'map_delete', 'map_keys', 'map_clear',
           'map_info', 'prog_info', 'prog_fd_by_id', 'prog_query', 'prog_attach', 'prog_detach',
           'prog_test_run', 'prog_load_return', 'possible_cpus', 'BPF_ANY', 'BPF_NOEXIST', 'map_create', 'prog_load',
           'btf_load', 'btf_fd_by_id', 'btf_data', 'map_btf']

_NR_BPF = {'x86_64': 321, 'aarch64': 280, 'armv7l': 386, 'ppc64le': 361, 's390x': 351, 'riscv64': 280}

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_BTF_LOAD = 18
BPF_BTF_GET_FD_BY_ID = 19

BPF_ANY = 0
BPF_NOEXIST = 1

# map types whose values are per CPU
PERCPU_MAP_TYPES = (5, 6, 10)  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
MAP_TYPE_NAMES = {1: 'hash', 2: 'array', 5: 'percpu_hash', 6: 'percpu_array', 9: 'lru_hash',
                  10: 'lru_percpu_hash', 15: 'sockmap', 18: 'sockhash'}
PROG_TYPE_NAMES = {1: 'socket_filter', 5: 'tracepoint', 6: 'xdp', 13: 'sock_ops', 16: 'sk_msg',
                   17: 'raw_tracepoint', 26: 'tracing'}

_ATTR_SIZE = 128
_libc = None


class BpfError(OSError):
    pass


def _syscall_nr():
    machine = os.uname()[4]
    if machine not in _NR_BPF:
        raise BpfError(errno.ENOSYS, 'bpf(2) syscall number unknown for %s' % machine)
    return _NR_BPF[machine]


def _bpf(cmd, attr, what, buf=None):
    """bpf(cmd, attr). Pass buf (a ctypes buffer holding attr) to read what the kernel writes back."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    if buf is None:
        buf = ctypes.create_string_buffer(bytes(attr).ljust(_ATTR_SIZE, b'\0'), _ATTR_SIZE)
    ret = _libc.syscall(ctypes.c_long(_syscall_nr()), ctypes.c_int(cmd), buf, ctypes.c_uint(_ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, '%s: %s' % (what, os.strerror(err)))
    return ret


def _ptr(buf):
    return ctypes.addressof(buf) if buf is not None else 0


def obj_get(path):
    """Open a pinned program or map; returns an fd the caller closes."""
    cpath = ctypes.create_string_buffer(path.encode())
    fd = _bpf(BPF_OBJ_GET, struct.pack('=QII', _ptr(cpath), 0, 0), 'open pin %s' % path)
    return fd


def obj_pin(fd, path):
    cpath = ctypes.create_string_buffer(path.encode())
    _bpf(BPF_OBJ_PIN, struct.pack('=QII', _ptr(cpath), fd, 0), 'pin %s' % path)


def _elem_attr(fd, key, value_or_next, flags=0):
    return struct.pack('=IIQQQ', fd, 0, _ptr(key), _ptr(value_or_next), flags)


def map_lookup(fd, key, value_size):
    """Raw value bytes, or None when the key is absent. value_size is the full buffer size
    (value_size x possible CPUs, 8-byte aligned, for per-CPU maps)."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_size)
    try:
        _bpf(BPF_MAP_LOOKUP_ELEM, _elem_attr(fd, kbuf, vbuf), 'map lookup')
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    return vbuf.raw


def map_update(fd, key, value, flags=BPF_ANY):
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, len(value))
    _bpf(BPF_MAP_UPDATE_ELEM, _elem_attr(fd, kbuf, vbuf, flags), 'map update')


def map_delete(fd, key):
    """Delete a key; False when it was not there."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    try:
        _bpf(BPF_MAP_DELETE_ELEM, _elem_attr(fd, kbuf, None), 'map delete')
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def map_keys(fd, key_size, limit=None):
    """All keys of a hash map (for arrays, every index). Bounded by limit when given."""
    keys = []
    nbuf = ctypes.create_string_buffer(key_size)
    kbuf = None
    while limit is None or len(keys) < limit:
        try:
            _bpf(BPF_MAP_GET_NEXT_KEY, _elem_attr(fd, kbuf, nbuf), 'map next key')
        except BpfError as e:
            if e.errno == errno.ENOENT:
                break
            raise
        keys.append(nbuf.raw)
        kbuf = ctypes.create_string_buffer(nbuf.raw, key_size)
    return keys


def map_clear(fd, key_size):
    """Delete every key of a hash-type map."""
    for key in map_keys(fd, key_size):
        map_delete(fd, key)


def _info(fd, size):
    ibuf = ctypes.create_string_buffer(size)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack('=IIQ', fd, size, _ptr(ibuf)), 'object info')
    return ibuf.raw


def map_info(fd):
    raw = _info(fd, 40)
    mtype, mid, key_size, value_size, max_entries, flags = struct.unpack_from('=6I', raw)
    name = raw[24:40].split(b'\0', 1)[0].decode()
    return {'type': MAP_TYPE_NAMES.get(mtype, str(mtype)), 'type_id': mtype, 'id': mid, 'key_size': key_size,
            'value_size': value_size, 'max_entries': max_entries, 'flags': flags, 'name': name}


def prog_info(fd):
    # struct bpf_prog_info up to name[16]: type, id, tag[8], jited_len, xlated_len, jited_insns,
    # xlated_insns, load_time, created_by_uid, nr_map_ids, map_ids, name
    raw = _info(fd, 80)
    ptype, pid = struct.unpack_from('=II', raw)
    tag = raw[8:16].hex()
    name = raw[64:80].split(b'\0', 1)[0].decode()
    return {'type': PROG_TYPE_NAMES.get(ptype, str(ptype)), 'type_id': ptype, 'id': pid, 'tag': tag, 'name': name}


def prog_map_ids(fd, max_maps=32):
    """Ids of the maps a program uses."""
    ids = (ctypes.c_uint32 * max_maps)()
    ibuf = ctypes.create_string_buffer(80)
    struct.pack_into('=IQ', ibuf, 52, max_maps, ctypes.addressof(ids))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack('=IIQ', fd, 80, _ptr(ibuf)), 'object info')
    count = struct.unpack_from('=I', ibuf.raw, 52)[0]
    return list(ids[:min(count, max_maps)])


def prog_fd_by_id(prog_id):
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack('=III', prog_id, 0, 0), 'program id %d' % prog_id)
    return fd


def map_fd_by_id(map_id):
    return _bpf(BPF_MAP_GET_FD_BY_ID, struct.pack('=III', map_id, 0, 0), 'map id %d' % map_id)


def prog_query(target_fd, attach_type, max_progs=64):
    """Program ids attached to a cgroup (or other target) for one attach type."""
    ids = (ctypes.c_uint32 * max_progs)()
    attr = struct.pack('=IIIIQI', target_fd, attach_type, 0, 0, ctypes.addressof(ids), max_progs)
    buf = ctypes.create_string_buffer(attr.ljust(_ATTR_SIZE, b'\0'), _ATTR_SIZE)
    _bpf(BPF_PROG_QUERY, attr, 'query attached programs', buf)  # the kernel writes prog_cnt back
    count = struct.unpack_from('=I', buf.raw, 24)[0]
    return list(ids[:min(count, max_progs)])


def prog_attach(target_fd, prog_fd, attach_type, flags=0):
    _bpf(BPF_PROG_ATTACH, struct.pack('=IIIII', target_fd, prog_fd, attach_type, flags, 0), 'attach program')


def prog_detach(target_fd, prog_fd, attach_type):
    _bpf(BPF_PROG_DETACH, struct.pack('=IIIII', target_fd, prog_fd, attach_type, 0, 0), 'detach program')


XDP_MD = struct.Struct('=6I')  # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress
_TEST_RUN = struct.Struct('=IIIIQQIIIIQQIII')  # bpf_attr.test up to batch_size


def prog_test_run(prog_fd, data, ctx=None, repeat=1):
    """Run a loaded program once (or repeat times on the same buffer) on data with BPF_PROG_TEST_RUN.

    ctx: for XDP, a dict of struct xdp_md fields (e.g. {'ingress_ifindex': 3}); the kernel resolves the
    ifindex in the caller's network namespace, so enter the device's namespace first. Returns
    (retval, data_out, duration_ns) where duration_ns is the kernel's mean over the repeats.
    """
    data = bytes(data)
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(len(data) + 4096)  # XDP may grow the frame into its tailroom
    ctx_buf = None
    if ctx is not None:
        fields = dict(data=0, data_end=len(data), data_meta=0, ingress_ifindex=0, rx_queue_index=0,
                      egress_ifindex=0)
        unknown = set(ctx) - set(fields)
        if unknown:
            raise ValueError('unknown xdp_md fields: %s' % ', '.join(sorted(unknown)))
        fields.update(ctx)
        order = ('data', 'data_end', 'data_meta', 'ingress_ifindex', 'rx_queue_index', 'egress_ifindex')
        raw = XDP_MD.pack(*(fields[k] for k in order))
        ctx_buf = ctypes.create_string_buffer(raw, len(raw))
    attr = _TEST_RUN.pack(prog_fd, 0, len(data), len(dout), _ptr(din), _ptr(dout), repeat, 0,
                          len(ctx_buf) if ctx_buf is not None else 0, 0, _ptr(ctx_buf), 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr.ljust(_ATTR_SIZE, b'\0'), _ATTR_SIZE)
    _bpf(BPF_PROG_TEST_RUN, attr, 'test run of program fd %d' % prog_fd, buf)
    _fd, retval, _size_in, size_out = struct.unpack_from('=IIII', buf.raw, 0)
    duration = struct.unpack_from('=I', buf.raw, 36)[0]
    return retval, dout.raw[:size_out], duration


def possible_cpus():
    """Number of possible CPUs: the stride of per-CPU map values."""
    try:
        with open('/sys/devices/system/cpu/possible') as f:
            text = f.read().strip()
    except (IOError, OSError):
        return os.cpu_count() or 1
    count = 0
    for part in text.split(','):
        if '-' in part:
            lo, hi = part.split('-')
            count += int(hi) - int(lo) + 1
        elif part:
            count += 1
    return count or 1


BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5


def _insns_return(value):
    return struct.pack('<BBhi', 0xb7, 0, 0, value) + struct.pack('<BBhi', 0x95, 0, 0, 0)  # r0 = value; exit


def prog_load_return(prog_type, value=0, expected_attach_type=0):
    """Load a program that only returns value (e.g. an empty XDP_PASS program); returns its fd."""
    code = _insns_return(value)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b'GPL')
    attr = struct.pack('=IIQQIIQII16sII', prog_type, len(code) // 8, _ptr(insns), _ptr(lic), 0, 0, 0, 0, 0, b'', 0,
                       expected_attach_type)
    return _bpf(BPF_PROG_LOAD, attr, 'load program type %d returning %d' % (prog_type, value))


def probe_prog_type(prog_type, expected_attach_type=0):
    """True when the kernel loads a minimal program of this type ('return 0')."""
    try:
        fd = prog_load_return(prog_type, 0, expected_attach_type)
    except BpfError:
        return False
    os.close(fd)
    return True


def probe_map_type(map_type, key_size=4, value_size=4, max_entries=4):
    attr = struct.pack('=IIIII', map_type, key_size, value_size, max_entries, 0)
    try:
        fd = _bpf(BPF_MAP_CREATE, attr, 'probe map type %d' % map_type)
    except BpfError:
        return False
    os.close(fd)
    return True


# --- loading without a compiler (the compiled-program cache, bpf_cache.py) ---------------------------

_MAP_CREATE = struct.Struct('=7I16s5IQ')  # bpf_attr for BPF_MAP_CREATE up to map_extra
_PROG_LOAD = struct.Struct('=IIQQIIQII16sII')  # up to expected_attach_type


def map_create(map_type, key_size, value_size, max_entries, flags=0, name='', btf_fd=0, btf_key_type_id=0,
               btf_value_type_id=0):
    """Create a map; returns its fd."""
    attr = _MAP_CREATE.pack(map_type, key_size, value_size, max_entries, flags, 0, 0, name.encode()[:15], 0,
                            btf_fd, btf_key_type_id, btf_value_type_id, 0, 0)
    return _bpf(BPF_MAP_CREATE, attr, 'create map %s (type %d)' % (name, map_type))


def prog_load(prog_type, insns, license_text='GPL', name='', expected_attach_type=0, log_size=0):
    """Load a program from raw instructions; returns its fd. On a refusal the BpfError carries the verifier's
    log (as .log) when log_size was given."""
    code = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license_text.encode())
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = _PROG_LOAD.pack(prog_type, len(insns) // 8, _ptr(code), _ptr(lic), 1 if log_size else 0, log_size,
                           _ptr(log), 0, 0, name.encode()[:15], 0, expected_attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr, 'load program %s (type %d)' % (name, prog_type))
    except BpfError as e:
        e.log = log.value.decode('utf-8', 'replace') if log is not None else ''
        raise


def btf_load(data):
    """Load a BTF blob (as btf_data returns it); returns its fd."""
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    return _bpf(BPF_BTF_LOAD, struct.pack('=QQIII', _ptr(buf), 0, len(data), 0, 0), 'load BTF')


def btf_fd_by_id(btf_id):
    return _bpf(BPF_BTF_GET_FD_BY_ID, struct.pack('=III', btf_id, 0, 0), 'BTF id %d' % btf_id)


def btf_data(fd):
    """The raw BTF blob behind a BTF fd (struct bpf_btf_info: btf, btf_size, id)."""
    size = struct.unpack_from('=QII', _info_struct(fd, struct.pack('=QII', 0, 0, 0)))[1]
    blob = ctypes.create_string_buffer(size)
    _info_struct(fd, struct.pack('=QII', _ptr(blob), size, 0))
    return blob.raw


def _info_struct(fd, initial):
    ibuf = ctypes.create_string_buffer(initial, len(initial))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack('=IIQ', fd, len(initial), _ptr(ibuf)), 'object info')
    return ibuf.raw


def map_btf(fd):
    """(btf_id, btf_key_type_id, btf_value_type_id) of a map; btf_id 0 when it has none."""
    raw = _info(fd, 88)
    return struct.unpack_from('=III', raw, 64)
