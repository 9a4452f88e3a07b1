# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The XDP load balancer's configuration as BPF map entries, both ways.

Layouts mirror bpf/xdp_lb.h. Addresses and ports are packed in network byte order, as the
program compares them with packet fields.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import json
import os
import re
import socket
import struct
import time

from ansible_collections.ebpf.networking.plugins.module_utils import agent_state, bpf_syscall, maglev

PROTOCOLS = {'tcp': 6, 'udp': 17}
PROTOCOL_NAMES = dict((v, k) for k, v in PROTOCOLS.items())

# bump with LB_LAYOUT_VERSION in bpf/xdp_lb.h: flow tables are kept across a reload only when
# their layout is the same
LAYOUT_VERSION = 2
SVC_SNAT_MAX = 4  # LB_SVC_SNAT_MAX

SERVICE_KEY = struct.Struct('=4s2sBx')
SERVICE = struct.Struct('=IIIHBx' + '4sI' * SVC_SNAT_MAX)
ADDR_KEY = struct.Struct('=4s')
ADDR = struct.Struct('=II')
ADDR_VIP = 1
ADDR_SNAT = 2
# lb_addr_cache (struct lb_addr_slot): lb_addrs as a direct-mapped array, derived from it
ADDR_SHARED = 4
ADDR_CACHE_BITS = 10
ADDR_CACHE_SLOTS = 1 << ADDR_CACHE_BITS
ADDR_CACHE_SLOT = struct.Struct('=4sHH')
BACKEND = struct.Struct('=4s2s6sBBH')
FLOW_KEY = struct.Struct('=4s4s2s2sB3x')
FLOW = struct.Struct('=4s4s2s2sHHII6s6s6s6sIHBB')
SNAT_SLOT = struct.Struct('=4s4s2s2sB3xQ')
NEXTHOP = struct.Struct('=4s4sIIIBB6s6s2x')  # struct lb_nexthop
COUNTERS = struct.Struct('=7Q')
META = struct.Struct('=32sIIIIHHII4xQB3xI16s96sII4I')
U32 = struct.Struct('=I')
U64 = struct.Struct('=Q')

COUNTER_FIELDS = ('packets', 'bytes', 'new_flows', 'reply_packets', 'reply_bytes', 'drops', 'refused')
# enum lb_global_counter
GLOBAL_COUNTERS = ('passed', 'no_backend', 'no_neighbour', 'snat_ports_exhausted', 'flow_insert_failed',
                   'fragments_dropped', 'orphan_replies_dropped', 'ttl_expired_passed', 'snat_ports_reclaimed',
                   'snat_port_scans', 'flows_lost', 'udp_flows_moved', 'icmp_translated', 'encap_too_big_dropped',
                   'dsr_backend_not_neighbour', 'icmp_too_big_sent', 'encap_aggregates_dropped', 'nexthop_lookups',
                   'snat_ports_rested', 'snat_ports_not_rested')
# global counters that count events, not packets the program dropped (passes to the stack, reclaims, scans,
# moves, ICMP translated or answered): left out of any sum of drops
NOT_DROP_COUNTERS = ('passed', 'ttl_expired_passed', 'snat_ports_reclaimed', 'snat_port_scans', 'udp_flows_moved',
                     'icmp_translated', 'icmp_too_big_sent', 'nexthop_lookups', 'snat_ports_rested',
                     'snat_ports_not_rested')
# how a service reaches its backends (LB_FWD_*): nat rewrites addresses and ports and sees the replies;
# dsr rewrites the destination MAC only; ipip encapsulates. With dsr and ipip the backends answer directly.
FORWARDING = {'nat': 0, 'dsr': 1, 'ipip': 2}
FORWARDING_NAMES = dict((v, k) for k, v in FORWARDING.items())
MODES = {1: 'native', 2: 'generic'}
MODE_IDS = dict((v, k) for k, v in MODES.items())

MAP_NAMES = ('lb_services', 'lb_addrs', 'lb_addr_cache', 'lb_backends', 'lb_maglev', 'lb_nexthops', 'lb_conntrack',
             'lb_snat_ports', 'lb_svc_stats', 'lb_be_stats', 'lb_global', 'lb_meta')
# kept across a reload when the layout is unchanged: the live connections
FLOW_MAPS = ('lb_conntrack', 'lb_snat_ports')
# derived from other maps and rewritten by every apply() (lb_addr_cache), or a cache the program fills
# itself (lb_nexthops): pins of a version without them are still ours
DERIVED_MAPS = ('lb_addr_cache', 'lb_nexthops')

# flow state bits (LB_ST_*)
ST_REPLIED, ST_FIN_FWD, ST_FIN_REPLY, ST_RST = 1, 2, 4, 8

# the flow clock is jiffies: timeouts are compiled in as seconds * HZ of the running kernel
# tcp_time_wait is not a flow's timeout: how long a SNAT port whose TCP flow ended is passed over while rested
# ports are found (the backends' TIME_WAIT); 0 turns that off and is what pins of versions without it read
TIMEOUT_NAMES = ('tcp_syn', 'tcp_established', 'tcp_closing', 'udp', 'tcp_time_wait')
TIMEOUT_DEFAULTS = {'tcp_syn': 60, 'tcp_established': 21600, 'tcp_closing': 10, 'udp': 60, 'tcp_time_wait': 60}
TIMEOUT_FLAGS = {'tcp_syn': 'LB_TO_TCP_SYN', 'tcp_established': 'LB_TO_TCP_EST', 'tcp_closing': 'LB_TO_TCP_CLOSING',
                 'udp': 'LB_TO_UDP', 'tcp_time_wait': 'LB_TO_TCP_TIME_WAIT'}
TIMEOUT_MIN = {'tcp_time_wait': 0}
# the four u32 at the end of struct lb_meta, in order (tcp_time_wait sits after mode, in former padding)
META_TAIL_TIMEOUTS = ('tcp_syn', 'tcp_established', 'tcp_closing', 'udp')
KNOWN_HZ = (100, 250, 300, 1000)
# when HZ can be neither read nor measured: the largest, so timeouts (seconds * HZ jiffies) last longer, never shorter
FALLBACK_HZ = max(KNOWN_HZ)


_DEFAULT = object()
BOOT_ID = '/proc/sys/kernel/random/boot_id'


def kernel_config_paths():
    return ('/proc/config.gz', '/boot/config-%s' % os.uname()[2])


def _config_hz(paths):
    """CONFIG_HZ from the first readable kernel config, or None."""
    for path in paths:
        try:
            with (gzip.open(path, 'rt') if path.endswith('.gz') else open(path)) as f:
                for line in f:
                    match = re.match(r'CONFIG_HZ=(\d+)\s*$', line)
                    if match and 10 <= int(match.group(1)) <= 10000:
                        return int(match.group(1))
        except (OSError, IOError, EOFError, ValueError, UnicodeDecodeError):
            continue
    return None


def _measured_hz(timer_list, sleep):
    def sample():
        # the first jiffies line comes after CPU 0's active timers: hundreds of lines on a busy host
        now = None
        with open(timer_list) as f:
            for line in f:
                if now is None:
                    match = re.match(r'now at (\d+) nsecs', line)
                    now = int(match.group(1)) if match else None
                elif line.startswith('jiffies: '):
                    return now, int(line.split()[1])
        raise ValueError('no "now at" and "jiffies" lines in %s' % timer_list)
    # three 0.1 s windows, the median: one window stretched by a descheduled reader does not decide
    rates = []
    try:
        before = sample()
        for _window in range(3):
            (sleep or time.sleep)(0.1)
            after = sample()
            rates.append((after[1] - before[1]) * 1e9 / max(1, after[0] - before[0]))
            before = after
    except (OSError, IOError, ValueError):
        return None
    measured = sorted(rates)[1]
    return min(KNOWN_HZ, key=lambda hz: abs(hz - measured))


def _boot_id(path):
    try:
        with open(path) as f:
            return f.read().strip() or None
    except (OSError, IOError):
        return None


def _remembered_hz(memo, boot):
    try:
        with open(memo) as f:
            doc = json.load(f)
    except (OSError, IOError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get('boot_id') == boot and doc.get('hz') in KNOWN_HZ:
        return doc['hz']
    return None


def kernel_hz(timer_list='/proc/timer_list', sleep=None, configs=None, memo=_DEFAULT, boot_id=BOOT_ID):
    """The kernel's HZ: CONFIG_HZ from the kernel config when there is one; else measured from the jiffies
    and nanosecond clocks in /proc/timer_list (the median of three 0.1 s windows), and remembered for this
    boot in the run directory (memo) so that every process of a boot (module runs, the host agent) compiles
    the same timeouts. FALLBACK_HZ when neither works (timeouts then last longer, never shorter)."""
    hz = _config_hz(kernel_config_paths() if configs is None else configs)
    if hz:
        return hz
    if memo is _DEFAULT:
        memo = os.path.join(agent_state.RUN_DIR, 'kernel_hz.json')
    boot = _boot_id(boot_id) if memo else None
    if boot:
        hz = _remembered_hz(memo, boot)
        if hz:
            return hz
    hz = _measured_hz(timer_list, sleep)
    if hz is None:
        return FALLBACK_HZ
    if boot:
        try:
            agent_state.write_atomic(memo, json.dumps({'boot_id': boot, 'hz': hz}) + '\n', mode=0o644)
        except (OSError, IOError):
            pass  # a read-only run directory: measured again next time
    return hz


class ConfigError(ValueError):
    pass


def ip_bytes(ip, what):
    try:
        return socket.inet_aton(ip) if ip.count('.') == 3 else _bad(ip, what)
    except (OSError, socket.error, AttributeError, TypeError):
        return _bad(ip, what)


def usable_ip(ip, what):
    """ip_bytes() for an address packets are sent to or from: refuses those that cannot work."""
    raw = ip_bytes(ip, what)
    first = bytearray(raw)[0]
    reason = None
    if raw == b'\0\0\0\0' or first == 0:
        reason = 'is unspecified ("this network")'
    elif raw == b'\xff\xff\xff\xff':
        reason = 'is the broadcast address'
    elif 224 <= first <= 239:
        reason = 'is a multicast address'
    elif first >= 240:
        reason = 'is reserved (class E)'
    elif first == 127:
        reason = 'is a loopback address (XDP never sees loopback traffic)'
    if reason:
        raise ConfigError('%s %s %s: use a unicast address the interface can send to or receive on' % (what, ip, reason))
    return raw


def _bad(ip, what):
    raise ConfigError('%s %r is not an IPv4 address (dotted quad, e.g. 172.30.0.10)' % (what, ip))


def ip_str(raw):
    return socket.inet_ntoa(raw)


def port_bytes(port):
    return struct.pack('>H', port)


def port_int(raw):
    return struct.unpack('>H', raw)[0]


def _int(value, what, lo, hi):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError('%s %r is not a number' % (what, value))
    if not lo <= number <= hi:
        raise ConfigError('%s %d is out of range: use %d-%d' % (what, number, lo, hi))
    return number


def addr_cache_index(ip):
    """lb_addr_cache slot of an address (lb_addr_cache_index() in bpf/xdp_lb.h): the program multiplies
    the address as it lies in the packet, loaded as a native 32-bit word."""
    word = U32.unpack(ip_bytes(ip, 'address'))[0]
    return ((word * 0x9E3779B1) & 0xffffffff) >> (32 - ADDR_CACHE_BITS)


def addr_cache_slots(addrs):
    """{slot index: packed struct lb_addr_slot} for lb_addrs' content {ip: (flags, snat index)}. A slot
    two addresses share is marked LB_ADDR_SHARED (the program then asks lb_addrs); others are empty."""
    by_slot = {}
    for ip, value in addrs.items():
        by_slot.setdefault(addr_cache_index(ip), []).append((ip, value))
    out = {}
    for index, entries in by_slot.items():
        if len(entries) == 1:
            ip, (flags, snat_index) = entries[0]
            out[index] = ADDR_CACHE_SLOT.pack(ip_bytes(ip, 'address'), flags, snat_index)
        else:
            out[index] = ADDR_CACHE_SLOT.pack(b'\0' * 4, ADDR_SHARED, 0)
    return out


class Limits(object):
    def __init__(self, max_services=16, max_backends=64, ring_size=4099, max_flows=65536,
                 snat_port_min=20000, snat_port_max=29999, max_snat_ips=2, timeouts=None, hz=None):
        self.max_services = _int(max_services, 'max_services', 1, 1024)
        self.max_backends = _int(max_backends, 'max_backends', 1, 1024)
        self.ring_size = _int(ring_size, 'ring_size', 3, 1000003)
        self.max_flows = _int(max_flows, 'max_flows', 64, 16777216)
        self.snat_port_min = _int(snat_port_min, 'snat_port_range start', 1024, 65535)
        self.snat_port_max = _int(snat_port_max, 'snat_port_range end', 1024, 65535)
        self.max_snat_ips = _int(max_snat_ips, 'max_snat_ips', 1, 64)
        if not maglev.is_prime(self.ring_size):
            raise ConfigError('ring_size %d must be a prime number (e.g. 4099, 16381, 65537)' % self.ring_size)
        if self.ring_size <= self.max_backends * 10:
            raise ConfigError('ring_size %d is too small for max_backends %d: use a prime above %d so '
                              'Maglev spreads flows evenly' % (self.ring_size, self.max_backends,
                                                               self.max_backends * 10))
        if self.snat_port_max - self.snat_port_min < 63:
            raise ConfigError('snat_port_range %d-%d is too small: give at least 64 ports'
                              % (self.snat_port_min, self.snat_port_max))
        timeouts = dict((k, v) for k, v in (timeouts or {}).items() if v is not None)
        unknown = sorted(set(timeouts) - set(TIMEOUT_NAMES))
        if unknown:
            raise ConfigError('timeouts has unknown keys %s: use %s' % (', '.join(unknown), ', '.join(TIMEOUT_NAMES)))
        self.timeouts = dict(TIMEOUT_DEFAULTS)
        for name, value in timeouts.items():
            self.timeouts[name] = _int(value, 'timeouts.%s' % name, TIMEOUT_MIN.get(name, 1), 7 * 86400)
        self._hz = hz

    @property
    def hz(self):
        """The kernel's HZ (measured on first use unless given)."""
        if self._hz is None:
            self._hz = kernel_hz()
        return self._hz

    def cflags(self):
        flags = ['-DLB_MAX_SERVICES=%d' % self.max_services, '-DLB_MAX_BACKENDS=%d' % self.max_backends,
                 '-DLB_RING_SIZE=%d' % self.ring_size, '-DLB_MAX_FLOWS=%d' % self.max_flows,
                 '-DLB_SNAT_PORT_MIN=%d' % self.snat_port_min, '-DLB_SNAT_PORT_MAX=%d' % self.snat_port_max,
                 '-DLB_MAX_SNAT_IPS=%d' % self.max_snat_ips]
        flags += ['-DLB_HZ=%d' % self.hz]
        flags += ['-D%s=%d' % (TIMEOUT_FLAGS[n], self.timeouts[n] * self.hz) for n in TIMEOUT_NAMES]
        return flags

    def flow_layout(self):
        """What the flow tables' shape and meaning depend on (flows record service rows and backend
        slots): equal layouts let a reload keep them."""
        return (LAYOUT_VERSION, self.max_flows, self.max_snat_ips, self.snat_port_min, self.snat_port_max,
                self.max_services, self.max_backends)

    @property
    def snat_ports(self):
        return self.snat_port_max - self.snat_port_min + 1

    def as_dict(self):
        return dict(max_services=self.max_services, max_backends=self.max_backends, ring_size=self.ring_size,
                    max_flows=self.max_flows, snat_port_range=[self.snat_port_min, self.snat_port_max],
                    max_snat_ips=self.max_snat_ips, timeouts=dict(self.timeouts))


def normalize_services(services, limits, default_snat_ip):
    """Validate the user's services; returns a sorted list of plain dicts (the comparable form)."""
    if not services:
        raise ConfigError('services is empty: give at least one service with backends, or state=absent')
    if len(services) > limits.max_services:
        raise ConfigError('%d services given but max_services is %d: raise max_services'
                          % (len(services), limits.max_services))
    result = []
    seen = set()
    for n, svc in enumerate(services):
        where = 'services[%d]' % n
        if not isinstance(svc, dict):
            raise ConfigError('%s must be a dict with vip, port, protocol and backends' % where)
        vip = svc.get('vip')
        usable_ip(vip, '%s.vip' % where)
        port = _int(svc.get('port'), '%s.port' % where, 1, 65535)
        proto = (svc.get('protocol') or 'tcp').lower()
        if proto not in PROTOCOLS:
            raise ConfigError('%s.protocol %r is not supported: use tcp or udp' % (where, proto))
        forwarding = svc.get('forwarding') or 'nat'
        if forwarding not in FORWARDING:
            raise ConfigError('%s.forwarding %r is not supported: use nat, dsr or ipip' % (where, forwarding))
        tunnel_source = svc.get('tunnel_source')
        if forwarding != 'nat':
            _check_direct(svc, where, forwarding, tunnel_source)
            if forwarding == 'ipip':
                usable_ip(tunnel_source, '%s.tunnel_source' % where)
        elif tunnel_source:
            raise ConfigError('%s.tunnel_source is only used with forwarding: ipip (this service is nat); '
                              'remove it or set forwarding: ipip' % where)
        snat_ips = (svc.get('snat_ip') or default_snat_ip) if forwarding == 'nat' else []
        if not snat_ips and forwarding == 'nat':
            raise ConfigError('%s: no snat_ip given and the interface has no IPv4 address to use' % where)
        if not isinstance(snat_ips, list):
            snat_ips = [snat_ips]
        if len(snat_ips) > SVC_SNAT_MAX:
            raise ConfigError('%s.snat_ip lists %d addresses: at most %d per service'
                              % (where, len(snat_ips), SVC_SNAT_MAX))
        if len(set(snat_ips)) != len(snat_ips):
            raise ConfigError('%s.snat_ip lists an address twice' % where)
        for snat_ip in snat_ips:
            usable_ip(snat_ip, '%s.snat_ip' % where)
        snat_ips = sorted(snat_ips, key=socket.inet_aton)
        if (vip, port, proto) in seen:
            raise ConfigError('%s: service %s:%d/%s is listed twice' % (where, vip, port, proto))
        seen.add((vip, port, proto))
        if vip in snat_ips and limits.snat_port_min <= port <= limits.snat_port_max:
            raise ConfigError('%s: port %d lies in snat_port_range %d-%d on the same address; move the '
                              'service port or the range'
                              % (where, port, limits.snat_port_min, limits.snat_port_max))
        backends = svc.get('backends') or []
        if not backends:
            raise ConfigError('%s (%s:%d/%s) has no backends: give at least one, or remove the service'
                              % (where, vip, port, proto))
        if len(backends) > limits.max_backends:
            raise ConfigError('%s has %d backends but max_backends is %d: raise max_backends'
                              % (where, len(backends), limits.max_backends))
        norm_backends = []
        bseen = set()
        for m, be in enumerate(backends):
            bwhere = '%s.backends[%d]' % (where, m)
            if isinstance(be, str):
                be = {'ip': be}
            if not isinstance(be, dict):
                raise ConfigError('%s must be a dict with ip, port and weight' % bwhere)
            bip = be.get('ip')
            usable_ip(bip, '%s.ip' % bwhere)
            bport = _int(be.get('port') if be.get('port') is not None else port, '%s.port' % bwhere, 1, 65535)
            weight = _int(be.get('weight') if be.get('weight') is not None else 1, '%s.weight' % bwhere, 0, 1000)
            if (bip, bport) in bseen:
                raise ConfigError('%s: backend %s:%d is listed twice' % (bwhere, bip, bport))
            if forwarding != 'nat' and bport != port:
                raise ConfigError('%s.port %d differs from the service port %d: forwarding %s does not rewrite ports '
                                  '(the backend receives VIP:%d); drop the backend port or use forwarding: nat'
                                  % (bwhere, bport, port, forwarding, port))
            if forwarding != 'nat' and bip == vip:
                raise ConfigError('%s.ip %s is the VIP: with forwarding %s the backends hold the VIP themselves; '
                                  'give their own addresses' % (bwhere, bip, forwarding))
            bseen.add((bip, bport))
            norm_backends.append({'ip': bip, 'port': bport, 'weight': weight})
        norm_backends.sort(key=lambda b: (socket.inet_aton(b['ip']), b['port']))
        result.append({'vip': vip, 'port': port, 'protocol': proto, 'forwarding': forwarding,
                       'tunnel_source': tunnel_source if forwarding == 'ipip' else None, 'snat_ip': snat_ips,
                       'backends': norm_backends})
    result.sort(key=service_sort_key)
    snat_all = set(ip for s in result for ip in s['snat_ip'])
    if len(snat_all) > limits.max_snat_ips:
        raise ConfigError('the services use %d SNAT addresses but max_snat_ips is %d: raise max_snat_ips'
                          % (len(snat_all), limits.max_snat_ips))
    return result


def _check_direct(svc, where, forwarding, tunnel_source):
    """Options a dsr or ipip service cannot have: they never translate, so nothing to translate to."""
    if svc.get('snat_ip'):
        raise ConfigError('%s.snat_ip has no use with forwarding %s: the backends answer clients directly, '
                          'nothing is source-translated; remove snat_ip or use forwarding: nat' % (where, forwarding))
    if forwarding == 'ipip' and not tunnel_source:
        raise ConfigError('%s: forwarding ipip needs tunnel_source, the outer source address of the '
                          'encapsulated packets (an address of the load balancer the backends can route to)' % where)
    if forwarding == 'dsr' and tunnel_source:
        raise ConfigError('%s.tunnel_source is only used with forwarding: ipip; remove it' % where)


def service_sort_key(svc):
    return (socket.inet_aton(svc['vip']), svc['port'], svc['protocol'])


def service_label(svc):
    return '%s:%d/%s' % (svc['vip'], svc['port'], svc['protocol'])


def backend_label(be):
    return '%s:%d' % (be['ip'], be['port'])


def pack_service_key(svc):
    return SERVICE_KEY.pack(ip_bytes(svc['vip'], 'vip'), port_bytes(svc['port']), PROTOCOLS[svc['protocol']])


class LbMaps(object):
    """Open fds of a pinned (or staged) map set, with typed access."""

    def __init__(self, fds, limits):
        self.fds = fds
        self.limits = limits
        self.ncpus = bpf_syscall.possible_cpus()

    def close(self):
        import os  # pylint: disable=import-outside-toplevel
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    # -- reading --
    def services(self):
        """{service key bytes: {index, ring_gen, backend_count, snat: [(ip str, snat index)]}}"""
        fd = self.fds['lb_services']
        result = {}
        for key in bpf_syscall.map_keys(fd, SERVICE_KEY.size, limit=self.limits.max_services * 2):
            raw = bpf_syscall.map_lookup(fd, key, SERVICE.size)
            if raw is not None:
                fields = SERVICE.unpack(raw)
                count = min(fields[3], SVC_SNAT_MAX)
                snat = [(ip_str(fields[5 + 2 * i]), fields[6 + 2 * i]) for i in range(count)]
                forwarding = FORWARDING_NAMES.get(fields[4], str(fields[4]))
                result[key] = {'index': fields[0], 'ring_gen': fields[1], 'backend_count': fields[2], 'snat': snat,
                               'forwarding': forwarding,
                               'tunnel_source': ip_str(fields[5]) if forwarding == 'ipip' else None}
        return result

    def addrs(self):
        """{ip str: (flags, snat index)} of lb_addrs."""
        fd = self.fds['lb_addrs']
        result = {}
        for key in bpf_syscall.map_keys(fd, ADDR_KEY.size, limit=(self.limits.max_services + self.limits.max_snat_ips) * 2):
            raw = bpf_syscall.map_lookup(fd, key, ADDR.size)
            if raw is not None:
                result[ip_str(key)] = ADDR.unpack(raw)
        return result

    def addr_cache_stale(self):
        """Slots of lb_addr_cache that differ from what lb_addrs says they should hold: {index: wanted}."""
        fd = self.fds.get('lb_addr_cache')
        if fd is None:
            return {}
        want = addr_cache_slots(self.addrs())
        empty = ADDR_CACHE_SLOT.pack(b'\0' * 4, 0, 0)
        stale = {}
        for index in range(ADDR_CACHE_SLOTS):
            value = want.get(index, empty)
            if bpf_syscall.map_lookup(fd, U32.pack(index), ADDR_CACHE_SLOT.size) != value:
                stale[index] = value
        return stale

    def sync_addr_cache(self):
        """Make lb_addr_cache agree with lb_addrs (one 8-byte slot write each, atomic for the program)."""
        for index, value in sorted(self.addr_cache_stale().items()):
            bpf_syscall.map_update(self.fds['lb_addr_cache'], U32.pack(index), value)

    def backend_row(self, svc_index, slot):
        raw = bpf_syscall.map_lookup(self.fds['lb_backends'], U32.pack(svc_index * self.limits.max_backends + slot),
                                     BACKEND.size)
        ip, port, mac, active, mac_valid, weight = BACKEND.unpack(raw)
        return {'ip': ip_str(ip), 'port': port_int(port), 'mac': mac, 'active': active, 'mac_valid': mac_valid,
                'weight': weight}

    def active_backends(self, svc_index):
        """{slot: row} of active rows of a service (draining ones included)."""
        rows = {}
        for slot in range(self.limits.max_backends):
            row = self.backend_row(svc_index, slot)
            if row['active']:
                rows[slot] = row
        return rows

    def ring(self, svc_index, gen):
        fd = self.fds['lb_maglev']
        base = (svc_index * 2 + gen) * self.limits.ring_size
        return [U32.unpack(bpf_syscall.map_lookup(fd, U32.pack(base + i), U32.size))[0]
                for i in range(self.limits.ring_size)]

    def read_config(self):
        """The live configuration as normalize_services() would return it, plus consistency flags."""
        config = []
        consistent = True
        addrs = self.addrs()
        for key, entry in self.services().items():
            vip, port, proto = SERVICE_KEY.unpack(key)
            index = entry['index']
            rows = self.active_backends(index)
            backends = sorted(({'ip': r['ip'], 'port': r['port'], 'weight': r['weight']} for r in rows.values()),
                              key=lambda b: (socket.inet_aton(b['ip']), b['port']))
            snat = sorted((ip for ip, _i in entry['snat']), key=socket.inet_aton)
            svc = {'vip': ip_str(vip), 'port': port_int(port), 'protocol': PROTOCOL_NAMES.get(proto, str(proto)),
                   'forwarding': entry['forwarding'], 'tunnel_source': entry['tunnel_source'],
                   'snat_ip': snat, 'backends': backends}
            weighted = dict((s, r) for s, r in rows.items() if r['weight'] > 0)
            expected = maglev.build_table([(s, backend_label(r), r['weight']) for s, r in weighted.items()],
                                          self.limits.ring_size)
            if entry['backend_count'] != len(weighted) or (weighted and self.ring(index, entry['ring_gen']) != expected):
                consistent = False  # a run died between steps: rewrite this service
            if svc['vip'] not in addrs or any(addrs.get(ip, (0, 0))[1] != i or not addrs[ip][0] & ADDR_SNAT
                                              for ip, i in entry['snat']):
                consistent = False
            config.append(svc)
        config.sort(key=service_sort_key)
        if self.addr_cache_stale():
            consistent = False  # a run died between writing lb_addrs and its cache
        return config, consistent

    def percpu_sum(self, map_name, index, fmt):
        fd = self.fds[map_name]
        stride = (fmt.size + 7) // 8 * 8
        raw = bpf_syscall.map_lookup(fd, U32.pack(index), stride * self.ncpus)
        totals = [0] * len(fmt.unpack(b'\0' * fmt.size))
        if raw is None:
            return totals
        for cpu in range(self.ncpus):
            for i, v in enumerate(fmt.unpack_from(raw, cpu * stride)):
                totals[i] += v
        return totals

    def counters(self, config):
        services = self.services()
        out = []
        for svc in config:
            entry = services.get(pack_service_key(svc))
            if entry is None:
                continue
            index = entry['index']
            stats = dict(zip(COUNTER_FIELDS, self.percpu_sum('lb_svc_stats', index, COUNTERS)))
            backends = []
            for slot, row in sorted(self.active_backends(index).items()):
                b = dict(zip(COUNTER_FIELDS, self.percpu_sum('lb_be_stats', index * self.limits.max_backends + slot,
                                                             COUNTERS)))
                del b['refused']
                b.update({'ip': row['ip'], 'port': row['port'], 'weight': row['weight'],
                          'draining': row['weight'] == 0})
                backends.append(b)
            stats.update({'service': service_label(svc), 'backends': backends})
            out.append(stats)
        return out

    def global_counters(self):
        return dict((name, self.percpu_sum('lb_global', i, U64)[0]) for i, name in enumerate(GLOBAL_COUNTERS))

    def flow_count(self, limit=None):
        return len(bpf_syscall.map_keys(self.fds['lb_conntrack'], FLOW_KEY.size, limit=limit))

    def flows(self, limit=None):
        """[(key tuple, flow dict)] of lb_conntrack entries."""
        fd = self.fds['lb_conntrack']
        out = []
        for key in bpf_syscall.map_keys(fd, FLOW_KEY.size, limit=limit):
            raw = bpf_syscall.map_lookup(fd, key, FLOW.size)
            if raw is not None:
                out.append((FLOW_KEY.unpack(key), unpack_flow(raw)))
        return out

    def read_meta(self):
        raw = bpf_syscall.map_lookup(self.fds['lb_meta'], U32.pack(0), META.size)
        (digest, max_services, max_backends, ring_size, max_flows, pmin, pmax, ifindex, peer_ifindex, netns_ino,
         mode, to_time_wait, ifname, netns, layout, max_snat_ips, to_syn, to_est, to_closing, to_udp) = META.unpack(raw)
        return {'digest': digest, 'max_services': max_services, 'max_backends': max_backends,
                'ring_size': ring_size, 'max_flows': max_flows, 'snat_port_min': pmin, 'snat_port_max': pmax,
                'ifindex': ifindex, 'peer_ifindex': peer_ifindex, 'netns_ino': netns_ino,
                'mode': MODES.get(mode), 'ifname': ifname.split(b'\0', 1)[0].decode(),
                'netns': netns.split(b'\0', 1)[0].decode(), 'layout_version': layout, 'max_snat_ips': max_snat_ips,
                'timeouts': dict(zip(META_TAIL_TIMEOUTS, (to_syn, to_est, to_closing, to_udp)), tcp_time_wait=to_time_wait)}

    # -- writing --
    def write_meta(self, digest, ifindex, peer_ifindex, netns_ino, mode, ifname, netns):
        lim = self.limits
        raw = META.pack(digest, lim.max_services, lim.max_backends, lim.ring_size, lim.max_flows,
                        lim.snat_port_min, lim.snat_port_max, ifindex, peer_ifindex or 0, netns_ino,
                        MODE_IDS.get(mode, 0), lim.timeouts['tcp_time_wait'], ifname.encode()[:15], netns.encode()[:95],
                        LAYOUT_VERSION, lim.max_snat_ips, *[lim.timeouts[n] for n in META_TAIL_TIMEOUTS])
        bpf_syscall.map_update(self.fds['lb_meta'], U32.pack(0), raw)

    # -- carrying the configuration into a reloaded program that keeps the flow tables --
    CONFIG_MAPS = (('lb_services', SERVICE_KEY, SERVICE), ('lb_addrs', ADDR_KEY, ADDR))

    def export_config(self):
        """Raw service, address and backend rows: flows refer to their service rows, backend slots and
        SNAT rows, so a program that keeps the flows must start from the same rows."""
        out = {}
        for name, kfmt, vfmt in self.CONFIG_MAPS:
            fd = self.fds[name]
            out[name] = dict((k, bpf_syscall.map_lookup(fd, k, vfmt.size))
                             for k in bpf_syscall.map_keys(fd, kfmt.size, limit=4096))
        rows = {}
        for entry in self.services().values():
            for slot in self.active_backends(entry['index']):
                idx = U32.pack(entry['index'] * self.limits.max_backends + slot)
                rows[idx] = bpf_syscall.map_lookup(self.fds['lb_backends'], idx, BACKEND.size)
        out['lb_backends'] = rows
        return out

    def import_config(self, config):
        """Write export_config() rows. The Maglev tables are not copied: apply() writes the idle table
        of every service and flips to it before the program is attached."""
        for name, entries in config.items():
            for key, value in entries.items():
                if value is not None:
                    bpf_syscall.map_update(self.fds[name], key, value)

    def _snat_indexes(self, desired, live_addrs):
        """SNAT address -> row in lb_snat_ports. An address keeps its row while it stays in use: the
        ports of its live flows are recorded there."""
        wanted = sorted(set(ip for s in desired for ip in s['snat_ip']), key=socket.inet_aton)
        result = dict((ip, live_addrs[ip][1]) for ip in wanted
                      if ip in live_addrs and live_addrs[ip][0] & ADDR_SNAT)
        free = [i for i in range(self.limits.max_snat_ips) if i not in result.values()]
        for ip in wanted:
            if ip not in result:
                result[ip] = free.pop(0)
        return result

    def apply(self, desired, neighbour_mac=None):
        """Make the maps hold `desired` (normalized). Order keeps the data path consistent at each step:
        addresses first, new backend rows, then the idle Maglev table, then one service update flips to
        it, and only then are removed rows and addresses cleared. Established flows live in lb_conntrack
        and are untouched; they carry their backend's address, so removed backends' TCP flows continue."""
        lim = self.limits
        live = self.services()
        live_addrs = self.addrs()
        wanted_keys = set(pack_service_key(s) for s in desired)
        snat_index = self._snat_indexes(desired, live_addrs)
        want_addrs = {}
        for svc in desired:
            flags, idx = want_addrs.get(svc['vip'], (0, 0))
            want_addrs[svc['vip']] = (flags | ADDR_VIP, idx)
        for ip, idx in snat_index.items():
            want_addrs[ip] = (want_addrs.get(ip, (0, 0))[0] | ADDR_SNAT, idx)
        for ip, value in sorted(want_addrs.items()):
            if live_addrs.get(ip) != value:
                bpf_syscall.map_update(self.fds['lb_addrs'], ip_bytes(ip, 'address'), ADDR.pack(*value))
        self.sync_addr_cache()

        # services that go away stop taking new flows first; their flows in lb_conntrack carry the
        # backend address themselves, so clearing the rows does not cut them
        for key, value in live.items():
            if key not in wanted_keys:
                bpf_syscall.map_delete(self.fds['lb_services'], key)
                self._clear_rows(value['index'])
        used = set(v['index'] for k, v in live.items() if k in wanted_keys)
        free = [i for i in range(lim.max_services) if i not in used]

        for svc in desired:
            key = pack_service_key(svc)
            if key in live:
                index, gen = live[key]['index'], live[key]['ring_gen']
                new_gen = 1 - gen
            else:
                index = free.pop(0)
                new_gen = 0
                self._clear_rows(index)
                self._reset_counters(index, service=True)
            rows = self.active_backends(index) if key in live else {}
            by_label = dict((backend_label(r), s) for s, r in rows.items())
            want_labels = set(backend_label(b) for b in svc['backends'])
            # never-used slots first; rows of removed backends are still in the live table until the flip
            free_slots = [s for s in range(lim.max_backends) if s not in rows]
            free_slots += [s for label, s in sorted(by_label.items()) if label not in want_labels]
            slots = []
            for be in svc['backends']:
                label = backend_label(be)
                if label in by_label:
                    slot = by_label[label]
                else:
                    slot = free_slots.pop(0)
                    if key in live:
                        self._reset_counters(index, slot=slot)  # a slot's new backend starts from zero
                mac = neighbour_mac(be['ip']) if neighbour_mac else None
                self._write_row(index, slot, be, mac)
                slots.append((slot, label, be['weight']))
            weighted = [entry for entry in slots if entry[2] > 0]  # weight 0: draining, in no table
            table = maglev.build_table(weighted, lim.ring_size) if weighted else []
            if table:
                self._write_ring(index, new_gen, table)
            snat = [(ip, snat_index[ip]) for ip in svc['snat_ip']]
            # ipip: the outer source address sits in the first SNAT entry, which counts 0 entries
            slots_used = snat if svc['forwarding'] != 'ipip' else [(svc['tunnel_source'], 0)]
            packed_snat = []
            for i in range(SVC_SNAT_MAX):
                packed_snat += ([ip_bytes(slots_used[i][0], 'snat_ip'), slots_used[i][1]] if i < len(slots_used)
                                else [b'\0' * 4, 0])
            bpf_syscall.map_update(self.fds['lb_services'], key,
                                   SERVICE.pack(index, new_gen, len(weighted), len(snat), FORWARDING[svc['forwarding']],
                                                *packed_snat))
            keep = set(entry[0] for entry in slots)
            for slot in rows:
                if slot not in keep:
                    self._write_row(index, slot, None, None)
        for ip in live_addrs:
            if ip not in want_addrs:
                bpf_syscall.map_delete(self.fds['lb_addrs'], ip_bytes(ip, 'address'))
        self.sync_addr_cache()

    def _write_row(self, index, slot, be, mac):
        if be is None:
            raw = BACKEND.pack(b'\0' * 4, b'\0\0', b'\0' * 6, 0, 0, 0)
        else:
            mac_raw = bytes(bytearray(int(x, 16) for x in mac.split(':'))) if mac else b'\0' * 6
            raw = BACKEND.pack(ip_bytes(be['ip'], 'backend ip'), port_bytes(be['port']), mac_raw, 1,
                               1 if mac else 0, be['weight'])
        bpf_syscall.map_update(self.fds['lb_backends'], U32.pack(index * self.limits.max_backends + slot), raw)

    def _reset_counters(self, index, service=False, slot=None):
        """A reused service row or backend slot starts from zero, not from the counters of what it held."""
        stride = (COUNTERS.size + 7) // 8 * 8
        zeros = b'\0' * (stride * self.ncpus)
        if service:
            bpf_syscall.map_update(self.fds['lb_svc_stats'], U32.pack(index), zeros)
        slots = range(self.limits.max_backends) if slot is None else [slot]
        for s in slots:
            bpf_syscall.map_update(self.fds['lb_be_stats'], U32.pack(index * self.limits.max_backends + s), zeros)

    def _clear_rows(self, index):
        for slot in range(self.limits.max_backends):
            row = self.backend_row(index, slot)
            if row['active']:
                self._write_row(index, slot, None, None)

    def _write_ring(self, index, gen, table):
        fd = self.fds['lb_maglev']
        base = (index * 2 + gen) * self.limits.ring_size
        for i, slot in enumerate(table):
            bpf_syscall.map_update(fd, U32.pack(base + i), U32.pack(slot))


def unpack_flow(raw):
    (backend_ip, snat_ip, backend_port, snat_port, svc_index, backend_slot, client_ifindex, backend_ifindex,
     client_mac, client_lb_mac, backend_mac, backend_lb_mac, last_seen, snat_index, state,
     forwarding) = FLOW.unpack(raw)
    return {'backend_ip': ip_str(backend_ip), 'snat_ip': ip_str(snat_ip), 'backend_port': port_int(backend_port),
            'snat_port': port_int(snat_port), 'svc_index': svc_index, 'backend_slot': backend_slot,
            'client_ifindex': client_ifindex, 'backend_ifindex': backend_ifindex, 'last_seen': last_seen,
            'snat_index': snat_index, 'state': state, 'forwarding': FORWARDING_NAMES.get(forwarding, str(forwarding))}


def state_name(state, proto):
    if proto == PROTOCOLS['udp']:
        return 'udp'
    if state & ST_RST or (state & ST_FIN_FWD and state & ST_FIN_REPLY):
        return 'closed'
    if state & (ST_FIN_FWD | ST_FIN_REPLY):
        return 'closing'
    return 'established' if state & ST_REPLIED else 'syn_sent'


def diff_services(before, after):
    """Human-readable changes, for --diff and the `changes` return value."""
    changes = []
    b = dict((service_label(s), s) for s in before)
    a = dict((service_label(s), s) for s in after)
    for label in sorted(set(b) - set(a)):
        changes.append('remove service %s' % label)
    for label in sorted(set(a) - set(b)):
        changes.append('add service %s with backends %s' % (
            label, ', '.join('%s(w=%d)' % (backend_label(x), x['weight']) for x in a[label]['backends'])))
    for label in sorted(set(a) & set(b)):
        old = dict((backend_label(x), x) for x in b[label]['backends'])
        new = dict((backend_label(x), x) for x in a[label]['backends'])
        for bl in sorted(set(old) - set(new)):
            changes.append('service %s: remove backend %s' % (label, bl))
        for bl in sorted(set(new) - set(old)):
            changes.append('service %s: add backend %s (weight %d)' % (label, bl, new[bl]['weight']))
        for bl in sorted(set(new) & set(old)):
            if new[bl]['weight'] != old[bl]['weight']:
                changes.append('service %s: backend %s weight %d -> %d%s' % (
                    label, bl, old[bl]['weight'], new[bl]['weight'],
                    ' (draining: no new flows, existing ones continue)' if new[bl]['weight'] == 0 else ''))
        for field in ('forwarding', 'tunnel_source'):
            if a[label].get(field) != b[label].get(field):
                changes.append('service %s: %s %s -> %s%s' % (
                    label, field, b[label].get(field), a[label].get(field),
                    ': new connections take the new path; live ones keep the old one while they last' if field == 'forwarding'
                    else ''))
        if a[label]['snat_ip'] != b[label]['snat_ip']:
            changes.append('service %s: snat_ip %s -> %s' % (label, ', '.join(b[label]['snat_ip']),
                                                             ', '.join(a[label]['snat_ip'])))
    return changes
