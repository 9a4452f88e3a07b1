# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compiled-program cache against the kernel (issue 12: restore without clang).

A program loaded from the cache must be the program bcc loads: the same kernel tag (the kernel hashes the
instructions with map fds blanked) and the same behaviour, shown by running the packet harness's datapath
tests (test_xdp_datapath.py, every test that needs only a loaded bench) against the cached program and its
freshly created maps. A damaged entry, a verifier refusal or another source falls back to bcc.
Namespaces q12-*, deployments q12_*; the cache lives in a temporary directory.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import inspect
import json
import os
import struct
import subprocess

import pytest

from conftest import COLLECTION, XDP_SOURCES, read_sources, run_module
import test_xdp_datapath as datapath

bpf_cache = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.bpf_cache')
bpf_loader = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.bpf_loader')
bpf_syscall = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.bpf_syscall')
xdp_lb_maps = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.xdp_lb_maps')
xdp_testbed = pytest.importorskip('ansible_collections.ebpf.networking.plugins.module_utils.xdp_testbed')

FUNCTIONS = {'xdp_lb': 'xdp', 'xdp_peer_pass': 'xdp'}


def tag(fd):
    return bpf_syscall.prog_info(fd)['tag']


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('q12cache') / 'programs')


@pytest.fixture(scope='module')
def cached_bed(require_root, cache_dir):
    """The datapath bench, its program and maps loaded from the cache (a compile filled it first)."""
    pytest.importorskip('bcc')
    limits = xdp_lb_maps.Limits(snat_port_min=datapath.SNAT_RANGE[0], snat_port_max=datapath.SNAT_RANGE[1],
                                max_flows=datapath.MAX_FLOWS)
    bed = xdp_testbed.XdpTestBed('q12-cache', os.path.join(COLLECTION, 'bpf'), limits)
    sources = xdp_testbed.bpf_sources(bed.bpf_dir)
    compiled = cached = None
    try:
        bed.up()
        compiled = bpf_loader.load_programs(sources, xdp_testbed.MAIN_SOURCE, limits.cflags(), FUNCTIONS,
                                            maps=xdp_lb_maps.MAP_NAMES, cache_dir=cache_dir)
        assert compiled.origin == 'compiled' and 'kept in the compiled-program cache' in compiled.note, compiled.note
        cached = bpf_loader.load_programs(sources, xdp_testbed.MAIN_SOURCE, limits.cflags(), FUNCTIONS,
                                          maps=xdp_lb_maps.MAP_NAMES, cache_dir=cache_dir)
        assert cached.origin == 'cache', cached.note
        bed.compiled, bed.cached = compiled, cached
        bed.prog_fd = cached.prog_fds['xdp_lb']
        bed.maps = xdp_lb_maps.LbMaps(cached.map_fds, limits)   # closed with `cached`, not through LbMaps
        yield bed
    finally:
        bed.prog_fd = bed.maps = None
        for loaded in (cached, compiled):
            if loaded is not None:
                loaded.close()
        bed.down()


def test_cached_programs_are_what_bcc_loaded(cached_bed):
    for fn in FUNCTIONS:
        assert tag(cached_bed.cached.prog_fds[fn]) == tag(cached_bed.compiled.prog_fds[fn]), fn
        assert bpf_syscall.prog_info(cached_bed.cached.prog_fds[fn])['name'] == fn
    for name in xdp_lb_maps.MAP_NAMES:
        mine, bccs = (bpf_syscall.map_info(x.map_fds[name]) for x in (cached_bed.cached, cached_bed.compiled))
        assert mine['id'] != bccs['id'], 'a cached load has maps of its own'
        for key in ('type', 'key_size', 'value_size', 'max_entries', 'flags', 'name'):
            assert mine[key] == bccs[key], (name, key)
    ids = bpf_syscall.prog_map_ids(cached_bed.cached.prog_fds['xdp_lb'])
    own = set(bpf_syscall.map_info(fd)['id'] for fd in cached_bed.cached.map_fds.values())
    assert ids and set(ids) <= own, 'the cached program uses its own maps, none of the compiled load'


@pytest.fixture
def lb(cached_bed):
    return datapath.fresh(cached_bed)


# the datapath suite again, on the cached program: every test that needs only a loaded bench (`lb`)
for _name, _test in sorted(vars(datapath).items()):
    if _name.startswith('test_') and callable(_test) and 'lb' in inspect.signature(_test).parameters:
        globals()[_name + '_from_cache'] = _test
del _name, _test


# -- bpf_cache.load on a hand-made entry: no bcc involved --

def _ins(code, dst=0, src=0, off=0, imm=0):
    return struct.pack('<BBhi', code, dst | (src << 4), off, imm)


# r1 = map; r2 = fp - 4; *(u32 *)(fp - 4) = 0; r0 = lookup(r1, r2); if r0 { *(u64 *)r0 = 42 }; return XDP_PASS
HAND_PROGRAM = (_ins(0x18, 1, 1) + _ins(0) + _ins(0xbf, 2, 10) + _ins(0x07, 2, 0, 0, -4) + _ins(0x62, 10, 0, -4, 0) +
                _ins(0x85, 0, 0, 0, 1) + _ins(0x15, 0, 0, 1, 0) + _ins(0x7a, 0, 0, 0, 42) + _ins(0xb7, 0, 0, 0, 2) +
                _ins(0x95))


def hand_entry(program=HAND_PROGRAM, max_entries=1):
    return {'format': bpf_cache.FORMAT, 'license': 'GPL', 'btf': {},
            'maps': {'q12_arr': {'name': 'q12_arr', 'type_id': 2, 'key_size': 4, 'value_size': 8,
                                 'max_entries': max_entries, 'flags': 0, 'btf_id': 0, 'btf_key_type_id': 0,
                                 'btf_value_type_id': 0}},
            'programs': {'q12_prog': {'prog_type': 6, 'expected_attach_type': 0,
                                      'insns': base64.b64encode(program).decode(), 'map_refs': [[0, 'q12_arr']]}}}


@pytest.fixture
def pin_dir(require_root):
    path = '/sys/fs/bpf/q12_cache_%d' % os.getpid()
    os.mkdir(path)
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def test_a_hand_made_entry_loads_patches_its_map_and_runs(pin_dir):
    pin = os.path.join(pin_dir, 'map_q12_arr')
    progs, maps = bpf_cache.load(hand_entry(), {'q12_arr': pin})
    try:
        assert os.path.exists(pin), 'created and pinned where asked'
        retval, _out, _ns = bpf_syscall.prog_test_run(progs['q12_prog'], b'\0' * 64)
        assert retval == 2
        assert struct.unpack('=Q', bpf_syscall.map_lookup(maps['q12_arr'], struct.pack('=I', 0), 8))[0] == 42
        assert bpf_syscall.prog_map_ids(progs['q12_prog']) == [bpf_syscall.map_info(maps['q12_arr'])['id']]
        again_progs, again_maps = bpf_cache.load(hand_entry(), {'q12_arr': pin})
        try:
            assert bpf_syscall.map_info(again_maps['q12_arr'])['id'] == bpf_syscall.map_info(maps['q12_arr'])['id'], \
                'an existing pin is opened, not replaced'
            assert tag(again_progs['q12_prog']) == tag(progs['q12_prog'])
        finally:
            for fd in list(again_progs.values()) + list(again_maps.values()):
                os.close(fd)
        with pytest.raises(bpf_cache.CacheMiss, match='differs from the cached spec'):
            bpf_cache.load(hand_entry(max_entries=2), {'q12_arr': pin})
    finally:
        for fd in list(progs.values()) + list(maps.values()):
            os.close(fd)


def test_a_refused_program_leaves_nothing_behind(pin_dir):
    pin = os.path.join(pin_dir, 'map_q12_arr')
    out_of_range = HAND_PROGRAM[:-8] + _ins(0x05, 0, 0, 100)
    before = sorted(os.listdir('/proc/self/fd'))
    with pytest.raises(bpf_cache.CacheMiss, match='kernel refused cached program q12_prog') as e:
        bpf_cache.load(hand_entry(out_of_range), {'q12_arr': pin})
    assert 'jump out of range' in str(e.value) or 'invalid' in str(e.value), str(e.value)
    assert not os.path.exists(pin), 'the map it pinned is unpinned again'
    assert sorted(os.listdir('/proc/self/fd')) == before, 'no fd left open'


# -- falling back --

def _loads(cache_dir, sources=None):
    limits = xdp_lb_maps.Limits(hz=250)
    return bpf_loader.load_programs(sources or xdp_testbed.bpf_sources(os.path.join(COLLECTION, 'bpf')),
                                    xdp_testbed.MAIN_SOURCE, limits.cflags(), FUNCTIONS,
                                    maps=xdp_lb_maps.MAP_NAMES, cache_dir=cache_dir)


def _entry_file(cache_dir, loaded):
    return bpf_cache.entry_path(loaded.key, cache_dir)


def _rewrite(path, change):
    with open(path) as f:
        doc = json.load(f)
    change(doc)
    doc['checksum'] = bpf_cache._checksum(doc)  # pylint: disable=protected-access
    with open(path, 'w') as f:
        json.dump(doc, f)


def test_fallbacks(require_root, tmp_path):
    """One compile, then: hit; a different source misses; a corrupt entry, a program the verifier refuses
    and a map spec the kernel refuses each fall back to bcc, say so, and leave a good entry behind."""
    pytest.importorskip('bcc')
    cache_dir = str(tmp_path / 'programs')
    first = _loads(cache_dir)
    path = _entry_file(cache_dir, first)
    first.close()
    hit = _loads(cache_dir)
    assert hit.origin == 'cache', hit.note
    hit.close()

    sources = xdp_testbed.bpf_sources(os.path.join(COLLECTION, 'bpf'))
    sources['xdp_lb.h'] += '\n/* another source */\n'
    other = _loads(cache_dir, sources)
    assert other.origin == 'compiled' and 'no cached copy' in other.note
    other.close()

    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b'#')
    corrupt = _loads(cache_dir)
    assert corrupt.origin == 'compiled' and 'not usable' in corrupt.note, corrupt.note
    corrupt.close()
    assert _loads(cache_dir).origin == 'cache', 'the fallback compile stored a good entry again'

    def bad_jump(doc):
        insns = bytearray(base64.b64decode(doc['programs']['xdp_lb']['insns']))
        insns[-8:] = bytes([0x05, 0, 0x00, 0x7f, 0, 0, 0, 0])  # the final exit becomes a jump out of the program
        doc['programs']['xdp_lb']['insns'] = base64.b64encode(bytes(insns)).decode()
    _rewrite(path, bad_jump)
    refused = _loads(cache_dir)
    assert refused.origin == 'compiled' and 'kernel refused cached program xdp_lb' in refused.note, refused.note
    refused.close()

    _rewrite(path, lambda doc: doc['maps']['lb_meta'].update(type_id=4242))
    bad_map = _loads(cache_dir)
    assert bad_map.origin == 'compiled' and 'not usable' in bad_map.note, bad_map.note
    bad_map.close()
    assert _loads(cache_dir).origin == 'cache'


# -- the module, the agent's code path --

SVC_NETNS = 'q12-mod'


@pytest.fixture
def q12_netns(require_root):
    subprocess.run(['ip', 'netns', 'del', SVC_NETNS], stderr=subprocess.DEVNULL, check=False)
    subprocess.run(['ip', 'netns', 'add', SVC_NETNS], check=True)
    subprocess.run(['ip', '-n', SVC_NETNS, 'link', 'add', 'q12a', 'type', 'veth', 'peer', 'name', 'q12b'], check=True)
    subprocess.run(['ip', '-n', SVC_NETNS, 'addr', 'add', '10.212.0.1/24', 'dev', 'q12a'], check=True)
    for dev in ('q12a', 'q12b', 'lo'):
        subprocess.run(['ip', '-n', SVC_NETNS, 'link', 'set', dev, 'up'], check=True)
    yield SVC_NETNS
    run_module('xdp_proxy', {'name': 'q12_cache', 'state': 'absent'})
    subprocess.run(['ip', 'netns', 'del', SVC_NETNS], check=False)


def test_module_reload_after_unpin_uses_the_cache(q12_netns):
    """What a reboot restore does: the pins are gone, the module loads from the cache, reports it, and the
    deployment is whole (stats read it back)."""
    args = {'name': 'q12_cache', 'netns': q12_netns, 'interface': 'q12a', 'persistent': False,
            'bpf_sources': read_sources(XDP_SOURCES),
            'services': [{'vip': '10.212.0.1', 'port': 80, 'backends': ['10.212.0.2', '10.212.0.3']}]}
    first = run_module('xdp_proxy', args)
    assert not first.get('failed'), first.get('msg')
    assert any('compiled with bcc' in c for c in first['changes']) or \
        any('compiled-program cache' in c for c in first['changes']), first['changes']
    subprocess.run(['ip', '-n', q12_netns, 'link', 'set', 'q12a', 'xdpgeneric', 'off'], check=True)
    subprocess.run(['rm', '-rf', '/sys/fs/bpf/ebpf_networking/q12_cache'], check=True)
    again = run_module('xdp_proxy', args)
    assert not again.get('failed'), again.get('msg')
    assert any('loaded from the compiled-program cache' in c for c in again['changes']), again['changes']
    assert again['prog_id'] and again['prog_id'] != first['prog_id'] and again['attach_mode'] == 'generic'
    stats = run_module('xdp_stats', {'name': 'q12_cache'})
    assert not stats.get('failed'), stats.get('msg')
    assert [s['vip'] for s in again['services']] == ['10.212.0.1']


def _conntrack_id():
    fd = bpf_syscall.obj_get('/sys/fs/bpf/ebpf_networking/q12_cache/map_lb_conntrack')
    try:
        return bpf_syscall.map_info(fd)['id']
    finally:
        os.close(fd)


def test_module_reload_keeping_flows_from_the_cache_opens_the_live_flow_table(q12_netns):
    """A reload that keeps the flow table (new timeouts: same layout) loads the new program with the live pinned
    flow maps (BPF_TABLE_PINNED through LB_FLOWS_PIN). From the cache, those maps must be opened, not created."""
    args = {'name': 'q12_cache', 'netns': q12_netns, 'interface': 'q12a', 'persistent': False,
            'bpf_sources': read_sources(XDP_SOURCES),
            'services': [{'vip': '10.212.0.1', 'port': 80, 'backends': ['10.212.0.2']}]}
    slow = dict(tcp_syn=60, tcp_established=21600, tcp_closing=10, udp=60)
    fast = dict(slow, tcp_syn=31)
    first = run_module('xdp_proxy', dict(args, timeouts=slow))
    assert not first.get('failed'), first.get('msg')
    table = _conntrack_id()
    for timeouts in (fast, slow, fast):
        result = run_module('xdp_proxy', dict(args, timeouts=timeouts))
        assert not result.get('failed'), result.get('msg')
        assert any('keeping the flow table' in c for c in result['changes']), result['changes']
        assert _conntrack_id() == table, 'the flow table was replaced: %s' % result['changes']
    assert any('loaded from the compiled-program cache' in c for c in result['changes']), result['changes']
