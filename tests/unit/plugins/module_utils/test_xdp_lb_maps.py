# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import os
import re
import struct

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import xdp_lb_maps as m

HEADER = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'bpf', 'xdp_lb.h')


def svc(**kw):
    base = {'vip': '10.0.0.10', 'port': 80, 'backends': [{'ip': '10.0.0.11'}, {'ip': '10.0.0.12', 'weight': 3}]}
    base.update(kw)
    return base


def test_normalize_fills_defaults_and_sorts():
    out = m.normalize_services([svc(backends=['10.0.0.12', {'ip': '10.0.0.2', 'port': 8080}])], m.Limits(), '10.0.0.10')
    assert out == [{'vip': '10.0.0.10', 'port': 80, 'protocol': 'tcp', 'forwarding': 'nat', 'tunnel_source': None,
                    'snat_ip': ['10.0.0.10'], 'backends': [{'ip': '10.0.0.2', 'port': 8080, 'weight': 1},
                                                           {'ip': '10.0.0.12', 'port': 80, 'weight': 1}]}]


def test_same_config_in_other_order_normalizes_equal():
    a = [svc(), svc(vip='10.0.0.20', protocol='udp', port=53)]
    b = [dict(a[1], backends=list(reversed(a[1]['backends']))), a[0]]
    assert m.normalize_services(a, m.Limits(), '10.0.0.1') == m.normalize_services(b, m.Limits(), '10.0.0.1')


@pytest.mark.parametrize('services,message', [
    ([], 'services is empty'),
    ([svc(backends=[])], 'has no backends'),
    ([svc(vip='10.0.0')], 'is not an IPv4 address'),
    ([svc(vip='fe80::1')], 'is not an IPv4 address'),
    ([svc(port=0)], 'out of range'),
    ([svc(port=70000)], 'out of range'),
    ([svc(protocol='sctp')], 'not supported'),
    ([svc(backends=[{'ip': '10.0.0.11', 'weight': -1}])], 'weight -1 is out of range'),
    ([svc(backends=[{'ip': '10.0.0.11', 'weight': 1001}])], 'weight 1001 is out of range'),
    ([svc(vip='0.0.0.0')], 'is unspecified'),
    ([svc(vip='255.255.255.255')], 'is the broadcast address'),
    ([svc(vip='224.0.0.1')], 'is a multicast address'),
    ([svc(vip='127.0.0.1')], 'is a loopback address'),
    ([svc(vip='240.0.0.1')], 'is reserved'),
    ([svc(backends=['255.255.255.255'])], r'backends\[0\].ip 255.255.255.255 is the broadcast'),
    ([svc(backends=['0.0.0.0'])], 'is unspecified'),
    ([svc(snat_ip='239.1.1.1')], r'snat_ip 239.1.1.1 is a multicast'),
    ([svc(snat_ip=['10.0.0.1', '10.0.0.1'])], 'lists an address twice'),
    ([svc(snat_ip=['10.0.0.%d' % i for i in range(1, 6)])], 'at most 4 per service'),
    ([svc(vip=None)], 'is not an IPv4 address'),
    ([svc(backends=[{'ip': '10.0.0.11', 'port': 'http'}])], 'is not a number'),
    ([svc(backends=['10.0.0.11', '10.0.0.11'])], 'listed twice'),
    ([svc(), svc()], 'listed twice'),
    ([svc(port=20080)], 'lies in snat_port_range'),
])
def test_bad_input_is_named(services, message):
    with pytest.raises(m.ConfigError, match=message):
        m.normalize_services(services, m.Limits(), '10.0.0.10')


def test_limits_are_enforced():
    five_backends = [svc(backends=['10.0.1.%d' % i for i in range(1, 6)])]
    with pytest.raises(m.ConfigError, match='raise max_backends'):
        m.normalize_services(five_backends, m.Limits(max_backends=4, ring_size=101), '10.0.0.1')
    with pytest.raises(m.ConfigError, match='raise max_services'):
        m.normalize_services([svc(port=p) for p in (80, 81)], m.Limits(max_services=1), '10.0.0.1')
    with pytest.raises(m.ConfigError, match='must be a prime'):
        m.Limits(ring_size=4096)
    with pytest.raises(m.ConfigError, match='too small for max_backends'):
        m.Limits(max_backends=64, ring_size=601)
    with pytest.raises(m.ConfigError, match='at least 64 ports'):
        m.Limits(snat_port_min=30000, snat_port_max=30010)


def test_snat_ip_defaults_to_interface_address_and_is_required():
    assert m.normalize_services([svc()], m.Limits(), '10.0.0.99')[0]['snat_ip'] == ['10.0.0.99']
    with pytest.raises(m.ConfigError, match='no snat_ip'):
        m.normalize_services([svc()], m.Limits(), None)


def test_service_key_is_network_order():
    key = m.pack_service_key({'vip': '10.1.2.3', 'port': 80, 'protocol': 'udp'})
    assert key == bytes([10, 1, 2, 3, 0, 80, 17, 0])


def _c_struct_sizes():
    """Sizes of the structs in bpf/xdp_lb.h, computed from their member types (natural alignment)."""
    sizes = {'__be32': 4, '__u32': 4, '__be16': 2, '__u16': 2, '__u8': 1, '__u64': 8, 'char': 1}
    aligns = dict(sizes)
    text = open(HEADER).read()
    defines = dict(re.findall(r'#define (\w+) (\d+)', text))
    out = {}
    for name, body in re.findall(r'struct (\w+) \{(.*?)\};', text, re.S):
        offset = align = 0
        body = re.sub(r'/\*.*?\*/', '', body, flags=re.S)
        for typ, field, count in re.findall(r'(?:struct )?(\w+) (\w+)(?:\[(\w+)\])?;', body):
            size, falign = sizes[typ], aligns[typ]
            count = int(defines.get(count, count or 1))
            offset = (offset + falign - 1) // falign * falign + size * count
            align = max(align, falign)
        out[name] = (offset + align - 1) // align * align
        sizes[name], aligns[name] = out[name], align
    return out


def test_python_layouts_match_the_c_header():
    c = _c_struct_sizes()
    assert c['lb_service_key'] == m.SERVICE_KEY.size
    assert c['lb_service'] == m.SERVICE.size
    assert c['lb_addr'] == m.ADDR.size
    assert c['lb_addr_slot'] == m.ADDR_CACHE_SLOT.size == 8  # read and written as one 64-bit word
    assert c['lb_backend'] == m.BACKEND.size
    assert c['lb_flow_key'] == m.FLOW_KEY.size
    assert c['lb_flow'] == m.FLOW.size == 56
    assert c['lb_snat_slot'] == m.SNAT_SLOT.size
    assert c['lb_nexthop'] == m.NEXTHOP.size
    assert c['lb_counters'] == m.COUNTERS.size
    assert c['lb_meta'] == m.META.size


def test_constants_match_the_c_header():
    text = open(HEADER).read()
    assert re.search(r'#define LB_LAYOUT_VERSION (\d+)', text).group(1) == str(m.LAYOUT_VERSION)
    assert re.search(r'#define LB_SVC_SNAT_MAX (\d+)', text).group(1) == str(m.SVC_SNAT_MAX)
    assert re.search(r'#define LB_ADDR_CACHE_BITS (\d+)', text).group(1) == str(m.ADDR_CACHE_BITS)
    assert re.search(r'#define LB_ADDR_SHARED (\d+)', text).group(1) == str(m.ADDR_SHARED)
    assert re.search(r'#define LB_ADDR_VIP (\d+)', text).group(1) == str(m.ADDR_VIP)
    assert re.search(r'#define LB_ADDR_SNAT (\d+)', text).group(1) == str(m.ADDR_SNAT)
    enum = re.search(r'enum lb_global_counter \{(.*?)\};', text, re.S).group(1)
    names = re.findall(r'(LB_CNT_\w+)', re.sub(r'/\*.*?\*/', '', enum, flags=re.S))
    assert names[-1] == 'LB_CNT_MAX' and len(names) - 1 == len(m.GLOBAL_COUNTERS)
    for name, flag in m.TIMEOUT_FLAGS.items():
        assert re.search(r'#define %s \((\d+) \* LB_HZ\)' % flag, text).group(1) == str(m.TIMEOUT_DEFAULTS[name])


def test_timeouts_become_jiffies_in_cflags():
    flags = m.Limits(timeouts={'tcp_closing': 2, 'udp': None}, hz=250).cflags()
    assert '-DLB_HZ=250' in flags and '-DLB_TO_TCP_CLOSING=500' in flags and '-DLB_TO_UDP=15000' in flags
    assert '-DLB_TO_TCP_EST=%d' % (21600 * 1000) in m.Limits(hz=1000).cflags()
    with pytest.raises(m.ConfigError, match='unknown keys tcp_fin'):
        m.Limits(timeouts={'tcp_fin': 3})
    with pytest.raises(m.ConfigError, match='timeouts.udp 0 is out of range'):
        m.Limits(timeouts={'udp': 0})


def _timer_list(path, samples, padding=''):
    """A sleep() stand-in that writes the next (nsecs, jiffies) sample as /proc/timer_list shows it; padding
    plays the active timers listed before the first jiffies line."""
    samples = iter(samples)

    def write(_seconds=None):
        now, jiffies = next(samples)
        path.write_text('Timer List Version: v0.9\nnow at %d nsecs\n\ncpu: 0\n%sjiffies: %d\n' % (now, padding, jiffies))
    write()
    return write


def _windows(*jiffies_per_tenth):
    """Samples 0.1 s apart whose jiffies advance by the given counts (one count per window)."""
    samples, now, jiffies = [(10 ** 9, 5000)], 10 ** 9, 5000
    for count in jiffies_per_tenth:
        now, jiffies = now + 10 ** 8, jiffies + count
        samples.append((now, jiffies))
    return samples


def _measure_only(**kw):
    return dict(dict(configs=(), memo=None), **kw)


@pytest.mark.parametrize('jiffies_per_tenth,expected', [(25, 250), (100, 1000), (10, 100), (31, 300), (26, 250)])
def test_kernel_hz_is_measured_from_timer_list(tmp_path, jiffies_per_tenth, expected):
    path = tmp_path / 'timer_list'
    write = _timer_list(path, _windows(*[jiffies_per_tenth] * 3))
    assert m.kernel_hz(str(path), sleep=write, **_measure_only()) == expected


def test_one_window_stretched_by_a_delay_does_not_decide_hz(tmp_path):
    """A reader descheduled between the "now at" and the jiffies line (a busy VM) makes one 0.1 s window read
    31 jiffies on a HZ 250 kernel, which is 300: the median of three windows is not fooled by one."""
    path = tmp_path / 'timer_list'
    assert m.kernel_hz(str(path), sleep=_timer_list(path, _windows(31, 25, 25)), **_measure_only()) == 250
    assert m.kernel_hz(str(path), sleep=_timer_list(path, _windows(25, 25, 19)), **_measure_only()) == 250


def test_kernel_hz_finds_jiffies_after_many_active_timers(tmp_path):
    """A busy host lists hundreds of active timers before the first jiffies line (measured: 200 sleeping
    processes put it at byte 16,344); the first 8 KiB alone made HZ fall back to 100 on such a host."""
    path = tmp_path / 'timer_list'
    timer = ' #0: <00000000>, hrtimer_wakeup, S:01\n # expires at 37902443644061-37902443694061 nsecs\n'
    write = _timer_list(path, _windows(25, 25, 25), padding=timer * 400)
    assert m.kernel_hz(str(path), sleep=write, **_measure_only()) == 250


def test_kernel_hz_falls_back_to_the_safe_side(tmp_path):
    """Timeouts are compiled as seconds * HZ jiffies: an assumed HZ below the kernel's ends flows early (HZ 100
    on a HZ 250 kernel: a 10 s closing timeout after 4 s). The fallback must be the largest HZ there is."""
    fallback = m.kernel_hz(str(tmp_path / 'missing'), **_measure_only())
    assert fallback == m.FALLBACK_HZ
    for real_hz in m.KNOWN_HZ:
        flags = m.Limits(timeouts={'tcp_closing': 10}, hz=fallback).cflags()
        jiffies = int([f for f in flags if f.startswith('-DLB_TO_TCP_CLOSING=')][0].split('=')[1])
        assert jiffies / float(real_hz) >= 10, 'on a HZ %d kernel the 10 s timeout lasts %.1f s' % (
            real_hz, jiffies / float(real_hz))


def _no_sleep(_seconds=None):
    raise AssertionError('HZ was measured although the kernel config says it')


@pytest.mark.parametrize('compressed', [True, False])
def test_kernel_hz_is_read_from_the_kernel_config_without_measuring(tmp_path, compressed):
    text = b'CONFIG_NO_HZ=y\n# CONFIG_HZ_1000 is not set\nCONFIG_HZ_300=y\nCONFIG_HZ=300\n'
    config = tmp_path / ('config.gz' if compressed else 'config-6.18')
    config.write_bytes(gzip.compress(text) if compressed else text)
    missing = str(tmp_path / 'no-such-config')
    assert m.kernel_hz(str(tmp_path / 'missing'), sleep=_no_sleep, configs=(missing, str(config)), memo=None) == 300


def test_a_kernel_config_without_a_usable_hz_is_measured_instead(tmp_path):
    config = tmp_path / 'config'
    config.write_text('CONFIG_HZ=banana\nCONFIG_HZ_250=y\n')
    path = tmp_path / 'timer_list'
    write = _timer_list(path, _windows(100, 100, 100))
    assert m.kernel_hz(str(path), sleep=write, configs=(str(config),), memo=None) == 1000


def test_a_measured_hz_is_remembered_for_the_boot(tmp_path):
    """Every process of a boot must compile the same timeouts: a module run and the host agent that measured
    250 and 100 built different programs (another program-cache key, and a reload on the next run)."""
    boot = tmp_path / 'boot_id'
    boot.write_text('b1\n')
    memo = str(tmp_path / 'run' / 'kernel_hz.json')
    path = tmp_path / 'timer_list'
    first = m.kernel_hz(str(path), sleep=_timer_list(path, _windows(25, 25, 25)),
                        configs=(), memo=memo, boot_id=str(boot))
    noisy = m.kernel_hz(str(path), sleep=_timer_list(path, _windows(31, 31, 31)),
                        configs=(), memo=memo, boot_id=str(boot))
    assert (first, noisy) == (250, 250)
    boot.write_text('b2\n')
    assert m.kernel_hz(str(path), sleep=_timer_list(path, _windows(31, 31, 31)),
                       configs=(), memo=memo, boot_id=str(boot)) == 300, 'another boot measures again'


def test_a_damaged_hz_memo_is_measured_again(tmp_path):
    boot = tmp_path / 'boot_id'
    boot.write_text('b1\n')
    memo = tmp_path / 'kernel_hz.json'
    path = tmp_path / 'timer_list'
    for text in ('{not json', '{"boot_id": "b1", "hz": 7}', '[]'):
        memo.write_text(text)
        assert m.kernel_hz(str(path), sleep=_timer_list(path, _windows(100, 100, 100)),
                           configs=(), memo=str(memo), boot_id=str(boot)) == 1000, text


def test_flow_layout_decides_whether_a_reload_keeps_flows():
    base = m.Limits()
    assert m.Limits(timeouts={'udp': 5}).flow_layout() == base.flow_layout(), 'timeouts do not change the layout'
    assert m.Limits(hz=1000).flow_layout() == m.Limits(hz=100).flow_layout()
    assert m.Limits(ring_size=8191).flow_layout() == base.flow_layout()
    assert m.Limits(max_flows=1024).flow_layout() != base.flow_layout()
    assert m.Limits(max_snat_ips=8).flow_layout() != base.flow_layout()
    assert m.Limits(snat_port_max=30999).flow_layout() != base.flow_layout()


def test_weight_zero_drains_and_snat_lists_are_counted():
    out = m.normalize_services([svc(backends=[{'ip': '10.0.0.11', 'weight': 0}, '10.0.0.12'],
                                    snat_ip=['10.0.0.3', '10.0.0.2'])], m.Limits(), '10.0.0.10')
    assert out[0]['backends'][0]['weight'] == 0 and out[0]['snat_ip'] == ['10.0.0.2', '10.0.0.3']
    with pytest.raises(m.ConfigError, match='raise max_snat_ips'):
        m.normalize_services([svc(snat_ip=['10.0.0.2', '10.0.0.3']), svc(port=81, snat_ip=['10.0.0.4'])],
                             m.Limits(max_snat_ips=2), '10.0.0.10')


def test_flow_state_names():
    assert m.state_name(0, 6) == 'syn_sent'
    assert m.state_name(m.ST_REPLIED, 6) == 'established'
    assert m.state_name(m.ST_REPLIED | m.ST_FIN_REPLY, 6) == 'closing'
    assert m.state_name(m.ST_FIN_FWD | m.ST_FIN_REPLY, 6) == 'closed'
    assert m.state_name(m.ST_RST, 6) == 'closed'
    assert m.state_name(0, 17) == 'udp'


def test_diff_names_every_change():
    before = m.normalize_services([svc(), svc(port=81)], m.Limits(), '10.0.0.10')
    after = m.normalize_services([svc(backends=[{'ip': '10.0.0.11', 'weight': 2}, '10.0.0.13']),
                                  svc(port=82)], m.Limits(), '10.0.0.10')
    changes = m.diff_services(before, after)
    assert 'remove service 10.0.0.10:81/tcp' in changes
    assert any(c.startswith('add service 10.0.0.10:82/tcp') for c in changes)
    assert 'service 10.0.0.10:80/tcp: remove backend 10.0.0.12:80' in changes
    assert 'service 10.0.0.10:80/tcp: add backend 10.0.0.13:80 (weight 1)' in changes
    assert 'service 10.0.0.10:80/tcp: backend 10.0.0.11:80 weight 1 -> 2' in changes
    drained = m.normalize_services([svc(backends=[{'ip': '10.0.0.11', 'weight': 0}, {'ip': '10.0.0.12', 'weight': 3}])], m.Limits(),
                                   '10.0.0.10')
    assert m.diff_services(before[:1], drained) == [
        'service 10.0.0.10:80/tcp: backend 10.0.0.11:80 weight 1 -> 0 (draining: no new flows, existing ones continue)']
    assert m.diff_services(after, after) == []


def test_default_sizes_keep_map_memory_per_connection_within_the_issue_10_budget():
    # what xdp_stats reports as memory.per_connection_bytes: the LRU flow entry (48 B kernel header +
    # key + value, each rounded to 8) plus the preallocated lb_snat_ports array shared by max_flows
    limits = m.Limits()
    flow_entry = 48 + (m.FLOW_KEY.size + 7) // 8 * 8 + (m.FLOW.size + 7) // 8 * 8
    ports = limits.snat_port_max - limits.snat_port_min + 1
    snat_array = limits.max_snat_ips * ports * ((m.SNAT_SLOT.size + 7) // 8 * 8)
    assert flow_entry + snat_array // limits.max_flows <= 128


# -- forwarding modes (issue 13) --

def test_dsr_and_ipip_services_normalize_without_snat():
    dsr, ipip = m.normalize_services([svc(forwarding='dsr'), svc(port=81, forwarding='ipip', tunnel_source='10.0.0.5')],
                                     m.Limits(), '10.0.0.10')
    assert dsr['forwarding'] == 'dsr' and dsr['snat_ip'] == [] and dsr['tunnel_source'] is None
    assert ipip['forwarding'] == 'ipip' and ipip['snat_ip'] == [] and ipip['tunnel_source'] == '10.0.0.5'
    # no SNAT address is needed (none counts against max_snat_ips), even when the interface has none
    assert m.normalize_services([svc(forwarding='dsr')], m.Limits(max_snat_ips=1), None)[0]['snat_ip'] == []


@pytest.mark.parametrize('service,message', [
    (svc(forwarding='dr'), "forwarding 'dr' is not supported: use nat, dsr or ipip"),
    (svc(forwarding='ipip'), 'forwarding ipip needs tunnel_source'),
    (svc(forwarding='ipip', tunnel_source='224.0.0.5'), 'tunnel_source 224.0.0.5 is a multicast'),
    (svc(forwarding='ipip', tunnel_source='not-an-ip'), 'tunnel_source .* is not an IPv4 address'),
    (svc(forwarding='dsr', tunnel_source='10.0.0.5'), 'tunnel_source is only used with forwarding: ipip'),
    (svc(tunnel_source='10.0.0.5'), 'tunnel_source is only used with forwarding: ipip'),
    (svc(forwarding='dsr', snat_ip='10.0.0.3'), 'snat_ip has no use with forwarding dsr'),
    (svc(forwarding='ipip', tunnel_source='10.0.0.5', snat_ip=['10.0.0.3']), 'snat_ip has no use with forwarding ipip'),
    (svc(forwarding='dsr', backends=[{'ip': '10.0.0.11', 'port': 8080}]),
     r'backends\[0\].port 8080 differs from the service port 80: forwarding dsr does not rewrite ports'),
    (svc(forwarding='ipip', tunnel_source='10.0.0.5', backends=['10.0.0.10']), 'is the VIP'),
])
def test_bad_forwarding_input_is_named(service, message):
    with pytest.raises(m.ConfigError, match=message):
        m.normalize_services([service], m.Limits(), '10.0.0.10')


def test_forwarding_ids_match_the_c_header():
    text = open(HEADER).read()
    for name, value in m.FORWARDING.items():
        assert re.search(r'#define LB_FWD_%s (\d+)' % name.upper(), text).group(1) == str(value)


def test_old_service_rows_read_as_nat():
    # before issue 13 snat_count was a u32: its high bytes, now forwarding, were 0
    old_row = struct.pack('=IIII' + '4sI' * m.SVC_SNAT_MAX, 3, 1, 2, 1, b'\x0a\0\0\x01', 0, *([b'\0' * 4, 0] * 3))
    fields = m.SERVICE.unpack(old_row)
    assert fields[3] == 1 and m.FORWARDING_NAMES[fields[4]] == 'nat'


def test_diff_names_a_forwarding_change():
    before = m.normalize_services([svc()], m.Limits(), '10.0.0.10')
    after = m.normalize_services([svc(forwarding='ipip', tunnel_source='10.0.0.5')], m.Limits(), '10.0.0.10')
    changes = m.diff_services(before, after)
    assert any(c.startswith('service 10.0.0.10:80/tcp: forwarding nat -> ipip') for c in changes)
    assert 'service 10.0.0.10:80/tcp: tunnel_source None -> 10.0.0.5' in changes
    assert 'service 10.0.0.10:80/tcp: snat_ip 10.0.0.10 -> ' in changes


def test_addr_cache_index_is_the_programs_fibonacci_hash():
    text = open(HEADER).read()
    body = re.search(r'lb_addr_cache_index\(__be32 ip\)\s*\{(.*?)\}', text, re.S).group(1)
    assert re.sub(r'\s+', ' ', body).strip() == 'return ((__u32)ip * 0x9E3779B1u) >> (32 - LB_ADDR_CACHE_BITS);'
    # the program multiplies the address as loaded from the packet: a native-order word of its bytes
    word = int.from_bytes(bytes([10, 1, 2, 3]), 'little')
    assert m.addr_cache_index('10.1.2.3') == ((word * 0x9E3779B1) % 2 ** 32) >> (32 - m.ADDR_CACHE_BITS)
    indexes = set(m.addr_cache_index('10.0.%d.%d' % (a, b)) for a in range(4) for b in range(256))
    assert len(indexes) > m.ADDR_CACHE_SLOTS // 2, 'a /22 spreads over the slots'


def test_addr_cache_slots_mark_shared_slots_and_leave_others_empty():
    vip = '10.0.0.10'
    same = [ip for ip in ('10.9.%d.%d' % (a, b) for a in range(256) for b in range(256))
            if m.addr_cache_index(ip) == m.addr_cache_index(vip)][:2]
    other = next(ip for ip in ('10.8.0.%d' % b for b in range(256))
                 if m.addr_cache_index(ip) != m.addr_cache_index(vip))
    slots = m.addr_cache_slots({vip: (m.ADDR_VIP | m.ADDR_SNAT, 1), other: (m.ADDR_SNAT, 3)})
    assert slots == {m.addr_cache_index(vip): bytes([10, 0, 0, 10]) + m.struct.pack('=HH', 3, 1),
                     m.addr_cache_index(other): m.ip_bytes(other, 'ip') + m.struct.pack('=HH', 2, 3)}
    shared = m.addr_cache_slots({vip: (m.ADDR_VIP, 0), same[0]: (m.ADDR_VIP, 0), other: (m.ADDR_SNAT, 0)})
    assert shared[m.addr_cache_index(vip)] == b'\0' * 4 + m.struct.pack('=HH', m.ADDR_SHARED, 0)
    assert len(shared) == 2
    assert m.addr_cache_slots({}) == {}


def test_tcp_time_wait_is_compiled_in_and_may_be_zero():
    flags = m.Limits(timeouts={'tcp_time_wait': 0}, hz=250).cflags()
    assert '-DLB_TO_TCP_TIME_WAIT=0' in flags
    assert '-DLB_TO_TCP_TIME_WAIT=15000' in m.Limits(hz=250).cflags(), 'default 60 s'
    with pytest.raises(m.ConfigError, match='timeouts.tcp_syn'):
        m.Limits(timeouts={'tcp_syn': 0}, hz=250)


def test_meta_of_pins_from_before_tcp_time_wait_reads_zero():
    """lb_meta kept its size: the wait sits in what was padding after mode, zero in older pins, which had
    no wait - so an upgrade sees a changed setting and reloads, keeping the flows."""
    assert m.META.size == 32 + 4 * 4 + 2 * 2 + 2 * 4 + 4 + 8 + 8 + 16 + 96 + 2 * 4 + 4 * 4
    old = struct.Struct('=32sIIIIHHII4xQB7x16s96sII4I')
    assert old.size == m.META.size
    raw = old.pack(b'd' * 32, 16, 64, 4099, 65536, 20000, 29999, 5, 0, 1, 1, b'eth0', b'', 2, 2, 60, 21600, 10, 60)
    fields = m.META.unpack(raw)
    assert fields[11] == 0 and fields[10] == 1, 'mode kept, the wait reads 0'
    assert fields[-4:] == (60, 21600, 10, 60)
