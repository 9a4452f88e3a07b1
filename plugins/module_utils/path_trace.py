# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A packet's path through the kernel from tracepoints only (bpf/skb_path.bpf.c): compile, fill the
filter, attach, follow packets while a command runs, and put each packet's steps in order, ending at
its drop or consume. No ansible import."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import struct
import time

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_loader, drop_trace, drop_tracer
from ansible_collections.ebpf.networking.plugins.module_utils import kernel_layout, ksym, netns_names
from ansible_collections.ebpf.networking.plugins.module_utils.btf import Btf

MAIN = 'skb_path.bpf.c'
SOURCES = ('skb_path.bpf.c', 'skb_path.h', 'kernel_layout.h', 'skb_flow.h', 'skb_filter.h')
STEP_HEAD = struct.Struct('=QQQIHHii')
STEP_SIZE = STEP_HEAD.size + drop_trace.WHERE.size + drop_trace.FLOW.size
STEPS = {1: 'net:netif_receive_skb', 2: 'net:netif_rx', 3: 'net:napi_gro_receive_entry', 4: 'net:net_dev_queue',
         5: 'net:net_dev_start_xmit', 6: 'net:net_dev_xmit', 7: 'fib:fib_table_lookup', 8: 'sock:sock_rcvqueue_full',
         9: 'udp:udp_fail_queue_rcv_skb', 10: 'tcp:tcp_retransmit_skb', 11: 'skb:kfree_skb', 12: 'skb:consume_skb'}
# raw tracepoint -> program function
ATTACH = (('netif_receive_skb', 'path_netif_receive_skb'), ('netif_rx', 'path_netif_rx'),
          ('napi_gro_receive_entry', 'path_napi_gro_receive_entry'), ('net_dev_queue', 'path_net_dev_queue'),
          ('net_dev_start_xmit', 'path_net_dev_start_xmit'), ('net_dev_xmit', 'path_net_dev_xmit'),
          ('fib_table_lookup', 'path_fib_table_lookup'), ('sock_rcvqueue_full', 'path_sock_rcvqueue_full'),
          ('udp_fail_queue_rcv_skb', 'path_udp_fail_queue_rcv_skb'),
          ('tcp_retransmit_skb', 'path_tcp_retransmit_skb'), ('kfree_skb', 'path_kfree_skb'),
          ('consume_skb', 'path_consume_skb'))
COUNTERS = ('steps', 'submit_failed', 'not_followed')


def decode_step(raw):
    ts, skb, location, packet, kind, cpu, a, b = STEP_HEAD.unpack_from(raw)
    st = {'ts_ns': ts, 'skbaddr': '0x%x' % skb, 'packet': packet, 'step': STEPS.get(kind, str(kind)), 'cpu': cpu,
          'location_addr': location, 'a': a, 'b': b}
    st.update(drop_trace.decode_where(raw, STEP_HEAD.size))
    st.update(drop_trace.decode_flow(raw, STEP_HEAD.size + drop_trace.WHERE.size))
    return st


def assemble(steps, reasons, name_of, label_netns):
    """[{packet, steps: [...], end: drop|consume|open, reason?, location?, namespaces: [...]}] in order."""
    packets = {}
    for st in sorted(steps, key=lambda s: s['ts_ns']):
        packets.setdefault(st['packet'], []).append(st)
    out = []
    for pid in sorted(packets):
        seq = packets[pid]
        start = seq[0]['ts_ns']
        shown = []
        namespaces = []
        last_where = None
        for st in seq:
            item = {'t_us': round((st['ts_ns'] - start) / 1000.0, 3), 'step': st['step'], 'cpu': st['cpu'],
                    'context': st['context'], 'softirq': st['softirq']}
            if st['step'] == 'fib:fib_table_lookup':
                # no skb in this tracepoint: tied to the packet by CPU and time, where it was last seen
                item.update({'table': st['a'] & 0xffffffff, 'error': st['b'], 'correlated': True})
                if last_where:
                    item.update(last_where)
            else:
                last_where = {'netns': label_netns(st['netns_inode']), 'ifname': st['ifname'] or None,
                              'ifindex': st['ifindex']}
                item.update(last_where)
                if st.get('src'):
                    item['flow'] = drop_trace.flow_text(st)
            if st['step'] == 'skb:kfree_skb':
                item.update({'reason': reasons.get(st['a'], str(st['a'])), 'location': name_of(st['location_addr'])})
            elif st['step'] == 'skb:consume_skb':
                item['location'] = name_of(st['location_addr'])
            elif st['step'] == 'net:net_dev_xmit':
                item['rc'] = st['a']
            elif st['step'] == 'udp:udp_fail_queue_rcv_skb':
                item['rc'] = st['a']
            if item.get('netns') and item['netns'] not in namespaces:
                namespaces.append(item['netns'])
            shown.append(item)
        last = shown[-1]
        packet = {'packet': pid, 'steps': shown, 'namespaces': namespaces, 'skbaddr': seq[0]['skbaddr'],
                  'flow': next((s['flow'] for s in shown if s.get('flow')), None)}
        if last['step'] == 'skb:kfree_skb':
            packet.update({'end': 'drop', 'reason': last['reason'], 'location': last['location']})
        elif last['step'] == 'skb:consume_skb':
            packet.update({'end': 'consume', 'location': last['location']})
        else:
            packet['end'] = 'open'  # still in flight (queued, or freed after the trace stopped)
        out.append(packet)
    return out


class PathTracer(drop_tracer.Tracer):

    def run(self):
        p = self.p
        spec = drop_tracer.validate(p)
        for ignored in ('pid', 'comm', 'cgroup_id'):
            if ignored in spec:
                raise drop_trace.DropTraceError('%s cannot select a path: a packet is chosen where it is first '
                                                'seen, by namespace, interface and flow' % ignored)
        if not 0 < p['max_packets'] <= 1000:
            raise drop_trace.DropTraceError('max_packets %d is out of range: use 1-1000' % p['max_packets'])
        sources = p.get('bpf_sources') or {}
        bpf_loader.require_sources(sources, SOURCES)
        packed = drop_trace.pack_filter(**spec)
        if self.check_mode:
            return dict(changed=bool(p.get('command')), packets=[], stats={}, truncated=False,
                        check_mode_note='check mode: inputs validated, nothing compiled, attached or run')
        bpf_loader.require_bcc()
        reasons, _source = drop_trace.load_reasons(Btf.from_file)
        bpf, _fds = bpf_loader.compile_and_load(sources, MAIN, kernel_layout.cflags(), {})
        raw = []
        lost = [0]
        command_result = None
        max_steps = p['max_packets'] * 64

        def on_step(_cpu, data, size):
            if len(raw) < max_steps:
                raw.append(ctypes.string_at(data, size))

        def on_lost(count):
            lost[0] += count

        try:
            table = bpf['path_filter']
            table[ctypes.c_int(0)] = table.Leaf.from_buffer_copy(packed)
            config = bpf['path_config']
            config[ctypes.c_int(0)] = ctypes.c_ulonglong(p['max_packets'])
            bpf['path_events'].open_perf_buffer(on_step, page_cnt=p['buffer_pages'], lost_cb=on_lost)
            untracked = kernel_layout.track_softirqs(bpf, 'path')  # before the steps: every step's context is known
            if untracked:
                self.warnings.append(untracked)
            attached = []
            for tp, fn in ATTACH:
                try:
                    bpf.attach_raw_tracepoint(tp=tp.encode(), fn_name=fn.encode())
                    attached.append(tp)
                except Exception as e:  # pylint: disable=broad-except
                    self.warnings.append('tracepoint %s not followed: %s' % (tp, e))
            started = time.time()
            deadline = started + p['duration']
            runner = None
            if p.get('command'):
                runner = drop_tracer.CommandRunner(self.run_command, p['command'], p['duration'])
                runner.start()
            while time.time() < deadline:
                bpf.perf_buffer_poll(timeout=100)
                if runner is not None and not runner.is_alive():
                    grace = time.time() + 0.5
                    while time.time() < grace:
                        bpf.perf_buffer_poll(timeout=50)
                    break
            for tp in attached:
                bpf.detach_raw_tracepoint(tp=tp.encode())
            bpf.perf_buffer_poll(timeout=10)
            traced = time.time() - started
            if runner is not None:
                runner.join(p['duration'] + 5)
                command_result = runner.result
            counters = dict((name, sum(bpf['path_counters'][ctypes.c_int(i)])) for i, name in enumerate(COUNTERS))
        finally:
            bpf.cleanup()
        try:
            name_of = ksym.Kallsyms().format
        except (IOError, OSError, ksym.SymbolError):
            name_of = '0x{0:x}'.format
        labels = netns_names.NetnsNames()
        packets = assemble([decode_step(r) for r in raw], reasons, name_of, labels.label)
        stats = dict(counters, lost=lost[0], returned_steps=len(raw), seconds=round(traced, 3),
                     tracepoints=attached)
        truncated = bool(lost[0] or counters['submit_failed'] or counters['steps'] > len(raw))
        if truncated:
            self.warnings.append('some steps are missing (lost %d, not submitted %d): raise buffer_pages or narrow '
                                 'the filter' % (lost[0], counters['submit_failed']))
        result = dict(changed=command_result is not None, packets=packets, stats=stats, truncated=truncated)
        if command_result is not None:
            result['command_result'] = command_result
        return result
