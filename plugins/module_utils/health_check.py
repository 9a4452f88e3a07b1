# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend health checks as keepalived and HAProxy do them: TCP connect or HTTP GET, every
`interval` seconds with a `timeout`, a backend goes down after `fall` failures in a row and comes
back after `rise` successes in a row.

Checks run concurrently without threads: each socket is created inside the network namespace of
the load balancer's attachment (a socket keeps the namespace it was made in), then all of them are
driven by one selector until they finish or time out. No import from ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import selectors
import socket
import time

TYPES = ('tcp', 'http')
DEFAULTS = {'type': 'tcp', 'port': None, 'path': '/', 'expect_status': 200, 'interval': 2.0, 'timeout': 1.0,
            'rise': 2, 'fall': 3}
UP, DOWN = 'up', 'down'


class HealthConfigError(ValueError):
    pass


def _number(value, what, lo, hi, cast=float):
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise HealthConfigError('%s %r is not a number' % (what, value))
    if not lo <= number <= hi:
        raise HealthConfigError('%s %s is out of range: use %s-%s' % (what, value, lo, hi))
    return number


def normalize_spec(spec, where='health_check'):
    """Validated health check settings with defaults filled in; None stays None (no checks)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise HealthConfigError('%s must be a dict (type, port, path, expect_status, interval, timeout, rise, '
                                'fall)' % where)
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        raise HealthConfigError('%s has unknown keys %s: use %s'
                                % (where, ', '.join(unknown), ', '.join(sorted(DEFAULTS))))
    out = dict(DEFAULTS)
    out.update((k, v) for k, v in spec.items() if v is not None)
    if out['type'] not in TYPES:
        raise HealthConfigError('%s.type %r is not supported: use tcp or http' % (where, out['type']))
    if out['port'] is not None:
        out['port'] = _number(out['port'], where + '.port', 1, 65535, int)
    out['interval'] = _number(out['interval'], where + '.interval', 0.1, 3600)
    out['timeout'] = _number(out['timeout'], where + '.timeout', 0.05, 600)
    if out['timeout'] > out['interval']:
        raise HealthConfigError('%s.timeout %s is longer than interval %s: checks would overlap; raise interval or '
                                'lower timeout' % (where, out['timeout'], out['interval']))
    out['rise'] = _number(out['rise'], where + '.rise', 1, 100, int)
    out['fall'] = _number(out['fall'], where + '.fall', 1, 100, int)
    out['expect_status'] = _number(out['expect_status'], where + '.expect_status', 100, 599, int)
    if not isinstance(out['path'], str) or not out['path'].startswith('/') or any(c in out['path'] for c in ' \r\n'):
        raise HealthConfigError('%s.path %r must start with / and contain no spaces or line breaks'
                                % (where, out['path']))
    return out


def validate_services(services):
    """Check the health_check of every service (the module calls this before changing anything)."""
    for n, svc in enumerate(services or []):
        if isinstance(svc, dict):
            normalize_spec(svc.get('health_check'), 'services[%d].health_check' % n)


def detection_time(spec):
    """Longest time from a backend's failure until it leaves the table: fall checks, the last one timing out."""
    return spec['interval'] * spec['fall'] + spec['timeout']


class BackendHealth(object):
    """Rise/fall state of one backend. Starts up: a restored or newly added backend keeps its traffic
    until checks say otherwise, as HAProxy does with `init-state up`."""

    def __init__(self, now=None):
        self.state = UP
        self.successes = 0
        self.failures = 0
        self.last_change = now if now is not None else time.time()
        self.last_error = None
        self.last_check = None

    def record(self, ok, spec, now, error=None):
        """Count one result; returns True when the state changed."""
        self.last_check = now
        if ok:
            self.successes += 1
            self.failures = 0
            self.last_error = None
            if self.state == DOWN and self.successes >= spec['rise']:
                return self._change(UP, now)
        else:
            self.failures += 1
            self.successes = 0
            self.last_error = error
            if self.state == UP and self.failures >= spec['fall']:
                return self._change(DOWN, now)
        return False

    def _change(self, state, now):
        self.state = state
        self.last_change = now
        return True

    def as_dict(self):
        return {'state': self.state, 'last_change': self.last_change, 'last_check': self.last_check,
                'consecutive_failures': self.failures, 'consecutive_successes': self.successes,
                'last_error': self.last_error}


def select_serving(backends, states):
    """The backends that should take new flows: the healthy ones, but never none. Returns (list, all_down).

    backends: list of dicts with ip and port; states: {"ip:port": BackendHealth}.
    """
    healthy = [b for b in backends if _state_of(states, b) != DOWN]
    if healthy:
        return healthy, False
    return list(backends), bool(backends)


def _state_of(states, be):
    """states hold BackendHealth objects (the agent) or their as_dict() (the status file, read by modules)."""
    st = states.get('%s:%d' % (be['ip'], be['port']))
    if st is None:
        return UP
    return st.get('state', UP) if isinstance(st, dict) else st.state


# --- the services of an xdp_proxy deployment, as the user wrote them ---------------------------

def service_label(svc):
    return '%s:%d/%s' % (svc['vip'], int(svc['port']), (svc.get('protocol') or 'tcp').lower())


def backend_of(raw, svc):
    """(ip, port) of a backend as the user wrote it (a string or a dict; port defaults to the service's)."""
    if isinstance(raw, str):
        return raw, int(svc['port'])
    return raw['ip'], int(raw.get('port') or svc['port'])


def health_targets(params):
    """{service label: (spec, [(backend label, ip, check port)])} for the services with a health_check."""
    out = {}
    for svc in params.get('services') or []:
        spec = normalize_spec(svc.get('health_check'))
        if spec is None:
            continue
        backends = []
        for raw in svc.get('backends') or []:
            ip, port = backend_of(raw, svc)
            backends.append(('%s:%d' % (ip, port), ip, spec['port'] or port))
        out[service_label(svc)] = (spec, backends)
    return out


def effective_services(params, health):
    """The saved services with down backends left out (never all of a service's backends); services
    without a health_check are kept as they are. health: {service label: {backend label: state}}.

    Returns (services, {service label: True when every backend is down and all are kept}).
    """
    services = []
    all_down = {}
    for svc in params.get('services') or []:
        label = service_label(svc)
        if not svc.get('health_check') or label not in health:
            services.append(svc)
            continue
        keyed = []
        for raw in svc.get('backends') or []:
            ip, port = backend_of(raw, svc)
            keyed.append({'ip': ip, 'port': port, 'raw': raw})
        serving, all_down[label] = select_serving(keyed, health[label])
        services.append(dict(svc, backends=[b['raw'] for b in serving]))
    return services, all_down


def agent_view(params, status, now, max_age=30):
    """The services to apply when the host agent's status (fresher than max_age seconds) says some
    backends are down: (services, ["backend B of S"...] left out). A module run then does not put a
    dead backend back for the agent to take out again a second later."""
    if not isinstance(status, dict) or not isinstance(status.get('health'), dict) or \
            not isinstance(status.get('updated_at'), (int, float)) or now - status['updated_at'] > max_age:
        return params.get('services'), []
    services = effective_services(params, status['health'])[0]
    left_out = []
    for before, after in zip(params.get('services') or [], services):
        kept = set('%s:%d' % backend_of(raw, after) for raw in after['backends'])
        left_out.extend('backend %s of %s' % (label, service_label(before))
                        for label in ('%s:%d' % backend_of(raw, before) for raw in before['backends'])
                        if label not in kept)
    return services, left_out


class _Check(object):
    def __init__(self, key, ip, port, spec, deadline):
        self.key = key
        self.addr = (ip, port)
        self.spec = spec
        self.deadline = deadline
        self.sock = None
        self.sent = False
        self.buf = b''
        self.result = None  # (ok, error)

    def request(self):
        return ('GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ebpf-networking-agent\r\nConnection: close\r\n\r\n'
                % (self.spec['path'], self.addr[0])).encode()


def run_checks(targets, socket_factory=None, clock=time.monotonic):
    """Run one round of checks at once. targets: list of (key, ip, port, spec).

    socket_factory() returns a new TCP socket (made in the right namespace); default: here.
    Returns {key: (ok, error or None)}.
    """
    factory = socket_factory or (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sel = selectors.DefaultSelector()
    results = {}
    checks = []
    start = clock()
    try:
        for key, ip, port, spec in targets:
            check = _Check(key, ip, port, spec, start + spec['timeout'])
            checks.append(check)
            try:
                check.sock = factory()
                check.sock.setblocking(False)
                code = check.sock.connect_ex(check.addr)
            except (OSError, socket.error) as e:
                check.result = (False, 'socket: %s' % e)
                continue
            if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
                check.result = (False, 'connect: %s' % errno.errorcode.get(code, code))
                continue
            sel.register(check.sock, selectors.EVENT_WRITE, check)
        while sel.get_map():
            now = clock()
            pending = [k.data for k in sel.get_map().values()]
            for check in pending:
                if now >= check.deadline:
                    check.result = (False, 'timeout after %ss' % check.spec['timeout'])
                    sel.unregister(check.sock)
            if not sel.get_map():
                break
            wait = max(0.0, min(k.data.deadline for k in sel.get_map().values()) - now)
            for key, _events in sel.select(wait):
                _advance(sel, key.data)
    finally:
        for check in checks:
            if check.sock is not None:
                check.sock.close()
        sel.close()
    for check in checks:
        results[check.key] = check.result or (False, 'no result')
    return results


def _advance(sel, check):
    if not check.sent:
        err = check.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            check.result = (False, 'connect: %s' % errno.errorcode.get(err, err))
            sel.unregister(check.sock)
            return
        if check.spec['type'] == 'tcp':
            check.result = (True, None)
            sel.unregister(check.sock)
            return
        try:
            check.sock.send(check.request())
        except (OSError, socket.error) as e:
            check.result = (False, 'send: %s' % e)
            sel.unregister(check.sock)
            return
        check.sent = True
        sel.modify(check.sock, selectors.EVENT_READ, check)
        return
    try:
        data = check.sock.recv(4096)
    except (OSError, socket.error) as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return
        check.result = (False, 'recv: %s' % e)
        sel.unregister(check.sock)
        return
    check.buf += data
    if b'\n' in check.buf or not data:
        sel.unregister(check.sock)
        check.result = _judge_status(check.buf, check.spec['expect_status'])


def _judge_status(buf, expected):
    line = buf.split(b'\n', 1)[0].strip()
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b'HTTP/') or not parts[1].isdigit():
        return (False, 'not an HTTP response: %r' % line[:60])
    status = int(parts[1])
    if status != expected:
        return (False, 'HTTP status %d, expected %d' % (status, expected))
    return (True, None)


class Scheduler(object):
    """When each backend is due for its next check (per its own interval)."""

    def __init__(self):
        self.next_due = {}

    def due(self, keys_specs, now):
        """keys_specs: {key: spec}. Returns the keys due now and schedules their next round."""
        for key in list(self.next_due):
            if key not in keys_specs:
                del self.next_due[key]
        out = []
        for key, spec in keys_specs.items():
            if self.next_due.get(key, 0) <= now:
                out.append(key)
                self.next_due[key] = now + spec['interval']
        return out
