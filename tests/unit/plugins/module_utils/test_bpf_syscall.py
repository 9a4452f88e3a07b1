# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpf_syscall.prog_test_run: the bpf_attr it builds and what it reads back (the syscall is faked)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_syscall


@pytest.fixture
def fake_kernel(monkeypatch):
    """Stands in for bpf(BPF_PROG_TEST_RUN): records the attr, writes data_out and the results back."""
    seen = {}

    def fake_bpf(cmd, attr, what, buf=None):
        fields = struct.unpack_from('=IIIIQQIIIIQQIII', buf.raw)
        seen.update(cmd=cmd, fields=fields)
        (_fd, _ret, size_in, _size_out, data_in, data_out, _rep, _dur, ctx_size, _cso, ctx_in, _co, _fl, _cpu,
         _batch) = fields
        seen['data'] = ctypes.string_at(data_in, size_in)
        seen['ctx'] = ctypes.string_at(ctx_in, ctx_size) if ctx_size else None
        ctypes.memmove(data_out, b'OUT!', 4)
        struct.pack_into('=I', buf, 4, 3)     # retval XDP_TX
        struct.pack_into('=I', buf, 12, 4)    # data_size_out
        struct.pack_into('=I', buf, 36, 57)   # duration
        return 0

    monkeypatch.setattr(bpf_syscall, '_bpf', fake_bpf)
    return seen


def test_prog_test_run_packs_the_attr_and_reads_the_results(fake_kernel):
    retval, out, duration = bpf_syscall.prog_test_run(7, b'frame', ctx={'ingress_ifindex': 4}, repeat=3)
    assert (retval, out, duration) == (3, b'OUT!', 57)
    fields = fake_kernel['fields']
    assert fake_kernel['cmd'] == bpf_syscall.BPF_PROG_TEST_RUN
    assert fields[0] == 7 and fields[2] == 5 and fields[6] == 3
    assert fake_kernel['data'] == b'frame'
    # struct xdp_md: data 0, data_end = frame length, data_meta 0, ingress_ifindex, rx_queue 0, egress 0
    assert struct.unpack('=6I', fake_kernel['ctx']) == (0, 5, 0, 4, 0, 0)


def test_prog_test_run_without_ctx_passes_none(fake_kernel):
    bpf_syscall.prog_test_run(7, b'frame')
    assert fake_kernel['ctx'] is None and fake_kernel['fields'][6] == 1


def test_prog_test_run_refuses_unknown_ctx_fields(fake_kernel):
    with pytest.raises(ValueError, match='ifindex'):
        bpf_syscall.prog_test_run(7, b'frame', ctx={'ifindex': 4})
