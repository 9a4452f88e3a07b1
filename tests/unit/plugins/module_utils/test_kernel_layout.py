# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ebpf.networking.plugins.module_utils import kernel_layout


class FakeBpf(object):
    def __init__(self, refuse=None):
        self.attached = []
        self.refuse = refuse

    def attach_raw_tracepoint(self, tp, fn_name):
        if tp == self.refuse:
            raise Exception('Failed to attach BPF to raw tracepoint')
        self.attached.append((tp, fn_name))


def test_softirq_exit_is_tracked_before_entry_and_then_it_settles(monkeypatch):
    slept = []
    monkeypatch.setattr(kernel_layout.time, 'sleep', slept.append)
    bpf = FakeBpf()
    assert kernel_layout.track_softirqs(bpf, 'drop') is None
    # exit first: a softirq already running when they attach ends as "outside", never stays "inside"
    assert bpf.attached == [(b'softirq_exit', b'drop_softirq_exit'), (b'softirq_entry', b'drop_softirq_entry')]
    assert slept == [kernel_layout.SOFTIRQ_SETTLE_SECONDS] and slept[0] >= 0.002  # MAX_SOFTIRQ_TIME


def test_without_the_softirq_tracepoints_the_trace_says_what_it_cannot_tell(monkeypatch):
    monkeypatch.setattr(kernel_layout.time, 'sleep', lambda s: None)
    warning = kernel_layout.track_softirqs(FakeBpf(refuse=b'softirq_entry'), 'path')
    assert 'irq:softirq_entry could not be attached' in warning and 'reported as that process' in warning
