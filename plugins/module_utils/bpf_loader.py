# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading, pinning and attaching BPF programs: the one place that does it for every module.

Pins are the state. Each deployment named NAME owns /sys/fs/bpf/ebpf_networking/NAME/ with its
programs (prog_<function>) and maps (map_<name>). A new set is pinned under _staging_NAME and
renamed into place, so a crash leaves either the old set, the new one, or a staging directory that
the next run removes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.ebpf.networking.plugins.module_utils import bpf_cache, bpf_syscall

try:
    from bcc import BPF
    import bcc as _bcc
    HAS_BCC = True
    BCC_IMPORT_ERROR = None
except Exception as e:  # pylint: disable=broad-except
    BPF = None
    _bcc = None
    HAS_BCC = False
    BCC_IMPORT_ERROR = e

BPFFS = '/sys/fs/bpf'
PIN_ROOT = BPFFS + '/ebpf_networking'
STAGING_PREFIX = '_staging_'
NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,47}$')

# program types (enum bpf_prog_type) and attach types (enum bpf_attach_type) we use
PROG_TYPES = {'xdp': 6, 'sock_ops': 13, 'sk_msg': 16}
ATTACH_CGROUP_SOCK_OPS = 3
ATTACH_SK_MSG_VERDICT = 7


class LoaderError(Exception):
    """A failure with a message for the user: what is wrong and how to fix it."""


def source_digest(sources, cflags):
    """sha256 over the BPF sources and compile flags: the identity of a loaded program set."""
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b'\0' + sources[name].encode() + b'\0')
    for flag in cflags:
        h.update(flag.encode() + b'\0')
    return h.digest()


def invocation(params):
    """module_args for the result, with the shipped C sources shown as sizes, not pages of C."""
    args = dict(params)
    if args.get('bpf_sources'):
        args['bpf_sources'] = dict((k, '<%d bytes>' % len(v)) for k, v in args['bpf_sources'].items())
    return {'module_args': args}


def mounts():
    """{mount point: fs type} from /proc/self/mounts."""
    result = {}
    with open('/proc/self/mounts') as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                result[parts[1]] = parts[2]
    return result


def require_bpffs():
    if mounts().get(BPFFS) != 'bpf':
        raise LoaderError('bpffs is not mounted at %s. Mount it with `mount -t bpf bpf %s` '
                          '(the ebpf.networking.bpf_toolchain role does this).' % (BPFFS, BPFFS))


def require_source(sources, main):
    """The module's BPF sources, shipped by its action plugin, must hold its program."""
    if not sources or main not in sources:
        raise LoaderError('bpf_sources has no %s: run this module through its action plugin (the ebpf.networking '
                          'collection must be installed on the controller)' % main)


def require_sources(sources, names):
    """Every one of names must be among the BPF sources the module's action plugin shipped (the tracers'
    several programs and headers; require_source for a deployment's one program)."""
    missing = [n for n in names if n not in (sources or {})]
    if missing:
        raise LoaderError('bpf_sources lacks %s: run this module through its action plugin' % ', '.join(missing))


def require_bcc():
    if not HAS_BCC:
        raise LoaderError('bcc is not importable by this Python (%s). Install python3-bpfcc and run '
                          'modules with ansible_python_interpreter=/usr/bin/python3 (the '
                          'ebpf.networking.bpf_toolchain role sets this up).' % BCC_IMPORT_ERROR)


def validate_name(name):
    if not NAME_RE.match(name or ''):
        raise LoaderError("name %r is invalid: use 1-48 characters of a-z, 0-9, '_' and '-', starting with "
                          "a letter or digit" % (name,))


@contextlib.contextmanager
def _stderr_captured():
    """bcc prints clang's diagnostics on fd 2; keep them to put in the error message."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as tmp:
        os.dup2(tmp.fileno(), 2)
        captured = []
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode('utf-8', 'replace'))


def compile_and_load(sources, main, cflags, functions):
    """Compile sources (a {file name: text} dict) with bcc and load the given functions.

    functions: {function name: program type name}. Returns (bpf, {function: fd}); the caller keeps
    bpf alive until everything is pinned.
    """
    require_bcc()
    workdir = tempfile.mkdtemp(prefix='ebpf_networking_')
    try:
        for fname, text in sources.items():
            if '/' in fname or fname.startswith('.'):
                raise LoaderError('invalid BPF source file name %r' % fname)
            with open(os.path.join(workdir, fname), 'w') as f:
                f.write(text)
        flags = ['-I' + workdir, '-Wno-macro-redefined'] + list(cflags)
        with _stderr_captured() as diag:
            try:
                bpf = BPF(src_file=os.path.join(workdir, main).encode(), cflags=flags)
            except Exception as e:  # bcc raises bare Exception on compile errors
                bpf = e
        if isinstance(bpf, Exception):
            raise LoaderError('compiling %s with bcc failed: %s\n%s\nIf headers are missing, run the '
                              'ebpf.networking.bpf_toolchain role (kernel headers under /lib/modules/%s/build).'
                              % (main, bpf, _tail(diag[0]), os.uname()[2]))
        fds = {}
        for fn, ptype in functions.items():
            with _stderr_captured() as diag:
                try:
                    fds[fn] = bpf.load_func(fn.encode(), PROG_TYPES[ptype]).fd
                except Exception as e:
                    fds = e
            if isinstance(fds, Exception):
                raise LoaderError('the kernel refused program %s (%s): %s\nverifier log (end):\n%s'
                                  % (fn, ptype, fds, _tail(diag[0])))
        return bpf, fds
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class LoadedPrograms(object):
    """Programs and maps loaded by load_programs: prog_fds {function: fd}, map_fds {map name: fd}.

    origin is 'cache' or 'compiled'; note says what happened with the cache (for the log). The fds stay
    valid until close(): keep the object until everything is pinned and attached.
    """

    def __init__(self, prog_fds, map_fds, origin, note, bpf=None, key=None):
        self.key = key  # the cache key of this build
        self.prog_fds = prog_fds
        self.map_fds = map_fds
        self.origin = origin
        self.note = note
        self.bpf = bpf  # the bcc module owning the fds of a compiled load

    def close(self):
        if self.bpf is None:
            for fd in list(self.prog_fds.values()) + list(self.map_fds.values()):
                os.close(fd)
        self.prog_fds, self.map_fds, self.bpf = {}, {}, None


def load_programs(sources, main, cflags, functions, maps=(), pinned_maps=None, cache_dir=None, use_cache=True):
    """Load functions ({name: program type name}) of sources, with the fds of maps (names) for pinning.

    The one loader path of modules and host agent: from the compiled-program cache (bpf_cache) when it holds
    this exact build, else compiled with bcc, and the compiled result then kept in the cache. pinned_maps
    {map name: pin path}: maps the program shares through bpffs (bcc's BPF_TABLE_PINNED, whose paths are in
    cflags): a cached load opens them there, or creates and pins them, as bcc would.
    Returns LoadedPrograms; .note tells why the cache was or was not used.
    """
    types = dict((fn, (PROG_TYPES[t], 0)) for fn, t in functions.items())
    key = bpf_cache.cache_key(sources, main, cflags, types, _bcc.__version__ if HAS_BCC else None)
    note = 'compiled with bcc (cache off)'
    if use_cache:
        try:
            entry = bpf_cache.read(key, cache_dir)
            if set(entry['programs']) != set(functions) or not set(maps) <= set(entry['maps']):
                raise bpf_cache.CacheMiss('cache entry %s lacks functions or maps asked for' % key[:12])
            prog_fds, map_fds = bpf_cache.load(entry, pinned_maps)
            return LoadedPrograms(prog_fds, map_fds, 'cache',
                                  'loaded from the compiled-program cache (%s, no compile)' % key[:12], key=key)
        except bpf_cache.CacheMiss as e:
            note = 'compiled with bcc (%s)' % e
            if str(e) != 'no cached copy':
                note = 'compiled with bcc: the cached copy was not usable: %s' % e
                bpf_cache.discard(key, cache_dir)
        except (OSError, KeyError, TypeError, ValueError) as e:
            note = 'compiled with bcc: the cached copy was not usable: %s' % e
            bpf_cache.discard(key, cache_dir)
    bpf, prog_fds = compile_and_load(sources, main, cflags, functions)
    map_fds = dict((n, table_fd(bpf, n)) for n in maps)
    if use_cache:
        try:
            entry = capture_compiled(bpf, functions, map_fds)
            bpf_cache.store(key, entry, cache_dir)
            note += '; kept in the compiled-program cache as %s' % key[:12]
        except (bpf_cache.CacheMiss, OSError, LoaderError) as e:
            note += '; not cached: %s' % e
    return LoadedPrograms(prog_fds, map_fds, 'compiled', note, bpf, key)


def capture_compiled(bpf, functions, map_fds):
    """A cache entry of what bcc loaded: each function's instructions and every map they use."""
    all_maps = dict(map_fds)
    programs = {}
    for fn, ptype in functions.items():
        insns = bpf.dump_func(fn.encode())
        for _slot, fd in bpf_cache.map_refs(insns):
            if fd in all_maps.values():
                continue
            name = bpf_syscall.map_info(fd)['name']
            if _bcc.lib.bpf_table_fd(bpf.module, name.encode()) != fd:
                raise bpf_cache.CacheMiss('%s uses a map (fd %d, %r) not found by its name in the module'
                                          % (fn, fd, name))
            all_maps[name] = fd
        programs[fn] = (insns, PROG_TYPES[ptype], 0)
    license_text = _bcc.lib.bpf_module_license(bpf.module).decode()
    return bpf_cache.capture(programs, all_maps, license_text)


def _tail(text, lines=40):
    rows = [r for r in text.splitlines() if r.strip()]
    return '\n'.join(rows[-lines:])


def table_fd(bpf, name):
    """fd of a map in a bcc module, also for map types bcc's Python has no class for."""
    fd = _bcc.lib.bpf_table_fd(bpf.module, name.encode())
    if fd < 0:
        raise LoaderError('map %s not found in the compiled program' % name)
    return fd


class PinSet(object):
    """The pinned programs and maps of one deployment."""

    def __init__(self, name, root=PIN_ROOT):
        validate_name(name)
        self.name = name
        self.root = root
        self.path = os.path.join(root, name)
        self.staging = os.path.join(root, STAGING_PREFIX + name)

    def exists(self):
        return os.path.isdir(self.path)

    def entries(self):
        return sorted(os.listdir(self.path)) if self.exists() else []

    def prog_path(self, fn, base=None):
        return os.path.join(base or self.path, 'prog_' + fn)

    def map_path(self, name, base=None):
        return os.path.join(base or self.path, 'map_' + name)

    def open_prog(self, fn):
        return bpf_syscall.obj_get(self.prog_path(fn))

    def open_map(self, name):
        return bpf_syscall.obj_get(self.map_path(name))

    def has_prog(self, fn):
        return os.path.exists(self.prog_path(fn))

    def prog_id(self, fn):
        """Kernel id of a pinned program, or None."""
        if not self.has_prog(fn):
            return None
        fd = self.open_prog(fn)
        try:
            return bpf_syscall.prog_info(fd)['id']
        finally:
            os.close(fd)

    def clear_staging(self):
        """Remove what a crashed run left half-pinned. Returns True when something was there."""
        return _remove_tree(self.staging)

    def pin_staging(self, prog_fds, map_fds):
        """Pin programs and maps under the staging directory."""
        require_bpffs()
        if not os.path.isdir(self.root):
            os.mkdir(self.root, 0o700)
        self.clear_staging()
        os.mkdir(self.staging, 0o700)
        for fn, fd in prog_fds.items():
            bpf_syscall.obj_pin(fd, self.prog_path(fn, self.staging))
        for name, fd in map_fds.items():
            bpf_syscall.obj_pin(fd, self.map_path(name, self.staging))

    def staged_map_fd(self, name):
        return bpf_syscall.obj_get(self.map_path(name, self.staging))

    def commit_staging(self):
        """Replace the live set with the staged one."""
        _remove_tree(self.path)
        os.rename(self.staging, self.path)

    def remove(self):
        removed = _remove_tree(self.path)
        removed = self.clear_staging() or removed
        try:
            if os.path.isdir(self.root) and not os.listdir(self.root):
                os.rmdir(self.root)
        except OSError:
            pass
        return removed


def _remove_tree(path):
    if not os.path.isdir(path):
        return False
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            _remove_tree(full)
        else:
            os.unlink(full)
    os.rmdir(path)
    return True


def list_deployments(root=PIN_ROOT):
    if not os.path.isdir(root):
        return []
    return sorted(d for d in os.listdir(root) if not d.startswith(STAGING_PREFIX))


# --- network namespaces -------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = None


def _setns(fd):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(path):
    """Run the block inside the network namespace at path (None: stay where we are).

    BPF fds are not tied to a namespace, so programs loaded here can be attached there.
    """
    if not path:
        yield
        return
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise LoaderError('network namespace %s cannot be opened: %s' % (path, e.strerror))
    home = os.open('/proc/self/ns/net', os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def netns_inode(path):
    return os.stat(path or '/proc/self/ns/net').st_ino


def resolve_netns(container=None, netns=None, run_command=None):
    """Path of the network namespace named by a container, a netns name, or a path.

    Returns (path or None for the current namespace, a label stored with the pins).
    """
    if container and netns:
        raise LoaderError('give either container or netns, not both')
    if netns:
        path = netns if netns.startswith('/') else os.path.join('/var/run/netns', netns)
        if not os.path.exists(path):
            raise LoaderError('network namespace %s does not exist (looked at %s). Create it with '
                              '`ip netns add %s`, or give a path such as /proc/PID/ns/net.' % (netns, path, netns))
        return path, 'netns:' + netns
    if container:
        pid = container_pid(container, run_command)
        return '/proc/%d/ns/net' % pid, 'container:' + container
    return None, 'host'


def container_pid(name, run_command=None):
    """PID of a running docker container's init process."""
    pid = None
    try:
        import docker  # pylint: disable=import-outside-toplevel
        client = docker.from_env()
        try:
            c = client.containers.get(name)
        except docker.errors.NotFound:
            raise LoaderError('container %s does not exist: start it first (docker ps -a lists containers)' % name)
        pid = int(c.attrs.get('State', {}).get('Pid') or 0)
    except ImportError:
        if run_command is None:
            raise LoaderError('the docker Python SDK (python3-docker) is needed to find container %s' % name)
        rc, out, err = run_command(['docker', 'inspect', '-f', '{{.State.Pid}}', name])
        if rc != 0:
            raise LoaderError('container %s not found: %s' % (name, err.strip()))
        pid = int(out.strip() or 0)
    except LoaderError:
        raise
    except Exception as e:  # docker daemon down, permissions
        raise LoaderError('cannot ask docker about container %s: %s. Is dockerd running?' % (name, e))
    if not pid:
        raise LoaderError('container %s is not running: start it (docker start %s)' % (name, name))
    return pid


def run_command(argv):
    """(rc, stdout, stderr) of a command: the run_command for container_pid where no AnsibleModule's is at
    hand (the host agent, XdpLbDeployment's default), to ask docker when its Python SDK is missing."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = proc.communicate()
    return proc.returncode, out, err


# --- XDP attach through netlink (pyroute2) ------------------------------------------------------

XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
XDP_FLAGS_REPLACE = 16
XDP_MODE_FLAGS = {'native': XDP_FLAGS_DRV_MODE, 'generic': XDP_FLAGS_SKB_MODE}
XDP_ATTACHED_NAMES = {'xdp': 'native', 'xdpgeneric': 'generic', 'xdpoffload': 'offload', 'xdpmulti': 'multi'}


def _iproute():
    try:
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise LoaderError('pyroute2 is not importable (%s): install python3-pyroute2' % e)
    # pyroute2 <= 0.7.x encodes IFLA_XDP_FLAGS as a big-endian u16; the kernel wants a u32 and
    # answers ERANGE, so generic mode could not be asked for. Encode it as the kernel expects.
    flags_nla = getattr(getattr(ifinfmsg, 'xdp', None), 'xdp_flags', None)
    if flags_nla is not None and flags_nla.fields == [('value', '>H')]:
        flags_nla.fields = [('value', 'I')]
    return IPRoute()


def link_info(ifname):
    """Facts about an interface in the current namespace, or None when it does not exist."""
    with contextlib.closing(_iproute()) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        return _describe_link(link)


def link_names():
    with contextlib.closing(_iproute()) as ipr:
        return sorted(l.get_attr('IFLA_IFNAME') for l in ipr.get_links())


def link_by_index(ifindex):
    with contextlib.closing(_iproute()) as ipr:
        try:
            return _describe_link(ipr.get_links(ifindex)[0])
        except Exception:  # pylint: disable=broad-except
            return None


def _describe_link(link):
    xdp = link.get_attr('IFLA_XDP')
    attached = prog_id = None
    if xdp is not None:
        attached = xdp.get_attr('IFLA_XDP_ATTACHED')
        prog_id = xdp.get_attr('IFLA_XDP_PROG_ID')
    kind = None
    linkinfo = link.get_attr('IFLA_LINKINFO')
    if linkinfo is not None:
        kind = linkinfo.get_attr('IFLA_INFO_KIND')
    addrs = []
    return {
        'ifindex': link['index'],
        'ifname': link.get_attr('IFLA_IFNAME'),
        'kind': kind,
        'mac': link.get_attr('IFLA_ADDRESS'),
        'up': bool(link['flags'] & 1),
        'xdp_mode': XDP_ATTACHED_NAMES.get(attached) if attached else None,
        'xdp_prog_id': prog_id or None,
        'peer_ifindex': link.get_attr('IFLA_LINK'),
        'peer_netnsid': link.get_attr('IFLA_LINK_NETNSID'),
        'addresses': addrs,
    }


def candidate_netns():
    """Namespaces a veth peer may live in: ours (None) and the named ones under /var/run/netns."""
    paths = [None]
    if os.path.isdir('/var/run/netns'):
        paths += [os.path.join('/var/run/netns', n) for n in sorted(os.listdir('/var/run/netns'))]
    return paths


def all_netns():
    """Every network namespace in use: ours, the named ones, and those of running processes
    (containers), one path each."""
    seen = set()
    paths = []
    candidates = candidate_netns()
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            candidates.append('/proc/%s/ns/net' % pid)
    for path in candidates:
        try:
            ino = netns_inode(path)
        except OSError:
            continue
        if ino not in seen:
            seen.add(ino)
            paths.append(path)
    return paths


def find_xdp_attachments(prog_ids):
    """[(netns path, link)] of interfaces anywhere that run one of prog_ids."""
    wanted = set(i for i in prog_ids if i)
    found = []
    if not wanted:
        return found
    for path in all_netns():
        try:
            with in_netns(path):
                with contextlib.closing(_iproute()) as ipr:
                    links = [_describe_link(l) for l in ipr.get_links()]
        except (LoaderError, OSError):
            continue
        found.extend((path, l) for l in links if l['xdp_prog_id'] in wanted)
    return found


def find_veth_peer(link, link_netns_path):
    """(netns path, peer link) of a veth's other end, searching candidate_netns(); None if not found.

    IFLA_LINK gives the peer's ifindex in a namespace we only know by a local id, so check each
    candidate for a veth at that index whose own IFLA_LINK points back at this device.
    """
    if link.get('kind') != 'veth' or not link.get('peer_ifindex'):
        return None
    here = netns_inode(link_netns_path)
    for path in candidate_netns():
        try:
            if netns_inode(path) == here:
                continue
            with in_netns(path):
                peer = link_by_index(link['peer_ifindex'])
                if peer and peer['kind'] == 'veth' and peer['peer_ifindex'] == link['ifindex'] \
                        and _netnsid_of(link_netns_path) in (None, peer['peer_netnsid']):
                    return path, peer
        except (LoaderError, OSError):
            continue
    return None


def _netnsid_of(path):
    """The id the current namespace gives the namespace at path (None: cannot tell). Index numbers
    repeat across namespaces: a veth in another lab with the same ifindex pair is not our peer."""
    fd = os.open(path or '/proc/self/ns/net', os.O_RDONLY)
    try:
        with contextlib.closing(_iproute()) as ipr:
            nsid = ipr.get_netnsid(fd=fd).get('nsid')
    except Exception:  # pylint: disable=broad-except
        return None
    finally:
        os.close(fd)
    return nsid if nsid is not None and nsid >= 0 else -1


def ipv4_addresses(ifindex):
    with contextlib.closing(_iproute()) as ipr:
        return [a.get_attr('IFA_ADDRESS') for a in ipr.get_addr(family=2, index=ifindex)]


def local_ipv4_addresses():
    """Every IPv4 address of the current namespace."""
    with contextlib.closing(_iproute()) as ipr:
        return sorted(set(a.get_attr('IFA_ADDRESS') for a in ipr.get_addr(family=2)))


def xdp_attach(ifindex, prog_fd, mode, expected_fd=None):
    """Attach in the given mode. With expected_fd, atomically replace that program; else fail with
    EBUSY when any program is attached."""
    flags = XDP_MODE_FLAGS[mode]
    attrs = [('IFLA_XDP_FD', prog_fd)]
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        attrs.append(('IFLA_XDP_EXPECTED_FD', expected_fd))
    else:
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    attrs.append(('IFLA_XDP_FLAGS', flags))
    with contextlib.closing(_iproute()) as ipr:
        ipr.link('set', index=ifindex, IFLA_XDP={'attrs': attrs})


XDP_NOT_SUPPORTED = (95, 22)  # EOPNOTSUPP, EINVAL: driver without native XDP


def xdp_modes(wanted, link):
    """The attach modes to try in order for the mode option (auto, native, generic)."""
    if wanted != 'auto':
        return [wanted]
    if link['kind'] == 'veth':
        # native XDP on veth loses CHECKSUM_PARTIAL: with tx checksum offload on at the sender, the
        # rewritten packets carry only a pseudo-header sum and the receiver drops them
        return ['generic']
    return ['native', 'generic']


def xdp_attach_replacing(netns_path, link, prog_fd, modes):
    """Attach prog_fd to link in the first of modes that works, atomically replacing what runs there
    (ours, or a foreign program the caller checked may go). Returns the mode the kernel reports."""
    errors = []
    with in_netns(netns_path):
        for mode in modes:
            current = link_info(link['ifname'])
            expected_fd = None
            if current['xdp_prog_id'] and current['xdp_mode'] == mode:
                expected_fd = bpf_syscall.prog_fd_by_id(current['xdp_prog_id'])
            elif current['xdp_prog_id']:
                xdp_detach(current['ifindex'], current['xdp_mode'])
            try:
                xdp_attach(link['ifindex'], prog_fd, mode, expected_fd)
            except Exception as e:  # pylint: disable=broad-except
                code = netlink_errno(e)
                if code == 16:
                    raise LoaderError('interface %s became busy: another XDP program was attached meanwhile'
                                      % link['ifname'])
                errors.append('%s: %s' % (mode, e))
                if code in XDP_NOT_SUPPORTED and len(modes) > 1:
                    continue
                raise LoaderError('attaching XDP (%s) to %s failed: %s. Try mode: generic, and check the '
                                  'kernel has XDP support.' % (mode, link['ifname'], e))
            finally:
                if expected_fd is not None:
                    os.close(expected_fd)
            got = link_info(link['ifname'])
            if got['xdp_mode'] != mode:
                if got['xdp_prog_id']:
                    xdp_detach(link['ifindex'], got['xdp_mode'])
                raise LoaderError('asked the kernel for %s XDP on %s but it reports %s; detached again'
                                  % (mode, link['ifname'], got['xdp_mode']))
            return mode
    raise LoaderError('no XDP mode worked on %s: %s' % (link['ifname'], '; '.join(errors)))


def xdp_detach(ifindex, mode):
    with contextlib.closing(_iproute()) as ipr:
        ipr.link('set', index=ifindex, IFLA_XDP={'attrs': [('IFLA_XDP_FD', -1),
                                                           ('IFLA_XDP_FLAGS', XDP_MODE_FLAGS[mode])]})


def netlink_errno(exc):
    return getattr(exc, 'code', None) or getattr(exc, 'errno', None)


def neighbour_mac(ip, ifindex):
    """MAC of a neighbour in the current namespace (reachable, stale or permanent), else None."""
    with contextlib.closing(_iproute()) as ipr:
        for n in ipr.get_neighbours(family=2, ifindex=ifindex):
            if n.get_attr('NDA_DST') == ip and n['state'] not in (0x01, 0x20):  # not INCOMPLETE/FAILED
                return n.get_attr('NDA_LLADDR')
    return None


def route_to(ip):
    """The current namespace's route to ip: {'ifindex', 'gateway' (None when on-link)}, or None when
    there is no route."""
    with contextlib.closing(_iproute()) as ipr:
        try:
            routes = ipr.route('get', dst=ip)
        except Exception:  # pylint: disable=broad-except
            return None  # ENETUNREACH and the like
        for r in routes:
            return {'ifindex': r.get_attr('RTA_OIF'), 'gateway': r.get_attr('RTA_GATEWAY')}
    return None


def prime_neighbour(ip, port=9):
    """Make the kernel resolve ip's MAC: a connected UDP socket sending one datagram triggers ARP.

    Port 9 (discard); the datagram goes only to the given address, a backend we are told about.
    """
    import socket  # pylint: disable=import-outside-toplevel
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(0.2)
        s.connect((ip, port))
        s.send(b'\0')
    except (OSError, socket.error):
        pass
    finally:
        s.close()


# --- cgroup v2 attach (sock_ops) and map attach (sk_msg) -----------------------------------------

BPF_F_ALLOW_MULTI = 2


def cgroup2_root():
    """The cgroup v2 mount: /sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on unified ones."""
    m = mounts()
    for path in ('/sys/fs/cgroup/unified', '/sys/fs/cgroup'):
        if m.get(path) == 'cgroup2':
            return path
    for path, kind in sorted(m.items()):
        if kind == 'cgroup2':
            return path
    return None


def resolve_cgroup(cgroup=None, container=None, run_command=None):
    """A cgroup v2 directory: given, a container's, or the root of the v2 hierarchy."""
    root = cgroup2_root()
    if root is None:
        raise LoaderError('no cgroup v2 hierarchy is mounted: mount one (mount -t cgroup2 none '
                          '/sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy')
    if cgroup and container:
        raise LoaderError('give either cgroup or container, not both')
    if container:
        pid = container_pid(container, run_command)
        with open('/proc/%d/cgroup' % pid) as f:
            for line in f:
                if line.startswith('0::'):
                    return os.path.normpath(root + '/' + line.strip()[3:])
        raise LoaderError('container %s has no cgroup v2 membership (only v1 controllers): attach to the '
                          'root %s instead' % (container, root))
    if cgroup:
        path = cgroup if cgroup.startswith('/') else os.path.join(root, cgroup)
        if not os.path.isdir(path):
            raise LoaderError('cgroup %s does not exist: create it (mkdir under %s) or leave cgroup unset to use '
                              'the root' % (path, root))
        if not os.path.realpath(path).startswith(os.path.realpath(root)):
            raise LoaderError('%s is not in the cgroup v2 hierarchy mounted at %s (cgroup v1 cannot run sock_ops)'
                              % (path, root))
        return path
    return root


def cgroup_query(path, attach_type):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bpf_syscall.prog_query(fd, attach_type)
    finally:
        os.close(fd)


def cgroup_attach(path, prog_fd, attach_type):
    """Attach alongside other programs (BPF_F_ALLOW_MULTI): never pushes someone else's out."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        bpf_syscall.prog_attach(fd, prog_fd, attach_type, BPF_F_ALLOW_MULTI)
    finally:
        os.close(fd)


def cgroup_detach(path, prog_fd, attach_type):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        bpf_syscall.prog_detach(fd, prog_fd, attach_type)
    finally:
        os.close(fd)
