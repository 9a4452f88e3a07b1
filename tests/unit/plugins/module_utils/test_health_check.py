# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks: settings, rise/fall, never-empty selection, and real checks against loopback servers."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import threading

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import health_check as hc


def spec(**kw):
    return hc.normalize_spec(dict({'interval': 1, 'timeout': 0.3, 'rise': 2, 'fall': 3}, **kw))


def test_defaults_are_filled_in():
    s = hc.normalize_spec({})
    assert s == {'type': 'tcp', 'port': None, 'path': '/', 'expect_status': 200, 'interval': 2.0, 'timeout': 1.0,
                 'rise': 2, 'fall': 3}
    assert hc.normalize_spec(None) is None
    assert hc.detection_time(s) == 7.0


@pytest.mark.parametrize('bad,words', [
    ({'type': 'icmp'}, 'tcp or http'), ({'interval': 0}, 'interval'), ({'timeout': 'x'}, 'not a number'),
    ({'timeout': 5, 'interval': 1}, 'longer than interval'), ({'rise': 0}, 'rise'), ({'fall': 1000}, 'fall'),
    ({'path': 'health'}, 'start with /'), ({'path': '/a b'}, 'no spaces'), ({'expect_status': 99}, 'expect_status'),
    ({'port': 70000}, 'port'), ({'retries': 3}, 'unknown keys retries'), ('tcp', 'must be a dict'),
])
def test_bad_settings_name_the_problem(bad, words):
    with pytest.raises(hc.HealthConfigError) as err:
        hc.normalize_spec(bad)
    assert words in str(err.value)


def test_fall_failures_take_it_down_and_rise_successes_bring_it_back():
    s = spec()
    st = hc.BackendHealth(now=0)
    assert [st.record(False, s, t, 'refused') for t in (1, 2)] == [False, False]
    assert st.state == hc.UP
    assert st.record(False, s, 3, 'refused') is True and st.state == hc.DOWN and st.last_change == 3
    assert st.record(False, s, 4, 'refused') is False
    assert st.record(True, s, 5) is False and st.state == hc.DOWN
    assert st.record(False, s, 6, 'refused') is False, 'a failure resets the rise count'
    assert st.record(True, s, 7) is False
    assert st.record(True, s, 8) is True and st.state == hc.UP and st.last_change == 8
    assert st.as_dict()['consecutive_successes'] == 2 and st.as_dict()['last_error'] is None


def test_success_in_between_resets_the_fall_count():
    s = spec(fall=2)
    st = hc.BackendHealth(now=0)
    for t, ok in enumerate([False, True, False, True, False]):
        assert st.record(ok, s, t) is False
    assert st.state == hc.UP


def test_select_serving_leaves_out_down_backends_but_never_all():
    bes = [{'ip': '10.0.0.1', 'port': 80}, {'ip': '10.0.0.2', 'port': 80}]
    down = hc.BackendHealth(0)
    down.state = hc.DOWN
    assert hc.select_serving(bes, {'10.0.0.1:80': down}) == ([bes[1]], False)
    assert hc.select_serving(bes, {}) == (bes, False)
    assert hc.select_serving(bes, {'10.0.0.1:80': down, '10.0.0.2:80': down}) == (bes, True)
    assert hc.select_serving([], {}) == ([], False)


def test_scheduler_runs_each_backend_once_per_interval():
    sched = hc.Scheduler()
    specs = {'a': spec(interval=1), 'b': spec(interval=2, timeout=0.5)}
    assert sorted(sched.due(specs, 0)) == ['a', 'b']
    assert sched.due(specs, 0.5) == []
    assert sched.due(specs, 1.0) == ['a']
    assert sorted(sched.due(specs, 2.0)) == ['a', 'b']
    assert sched.due({'a': specs['a']}, 3.0) == ['a'] and 'b' not in sched.next_due


class Server(object):
    """A loopback TCP server answering each connection with `reply` (None: accept and stay silent)."""

    def __init__(self, reply):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.requests = []
        self.conns = []
        t = threading.Thread(target=self.serve)
        t.daemon = True
        t.start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            self.conns.append(conn)
            if self.reply is not None:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096))
                    conn.sendall(self.reply)
                except OSError:
                    pass
                conn.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_real_checks_against_loopback_servers():
    ok_http = Server(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    bad_http = Server(b'HTTP/1.1 503 Service Unavailable\r\n\r\n')
    silent = Server(None)
    garbage = Server(b'SSH-2.0-OpenSSH\r\n')
    closed = free_port()
    try:
        targets = [('tcp-ok', '127.0.0.1', silent.port, spec()),
                   ('tcp-closed', '127.0.0.1', closed, spec()),
                   ('http-ok', '127.0.0.1', ok_http.port, spec(type='http', path='/healthz')),
                   ('http-503', '127.0.0.1', bad_http.port, spec(type='http')),
                   ('http-silent', '127.0.0.1', silent.port, spec(type='http')),
                   ('http-garbage', '127.0.0.1', garbage.port, spec(type='http')),
                   ('http-closed', '127.0.0.1', closed, spec(type='http'))]
        results = hc.run_checks(targets)
    finally:
        for s in (ok_http, bad_http, silent, garbage):
            s.close()
    assert results['tcp-ok'] == (True, None)
    assert results['http-ok'] == (True, None)
    assert ok_http.requests[0].startswith(b'GET /healthz HTTP/1.0\r\n')
    assert not results['tcp-closed'][0] and 'ECONNREFUSED' in results['tcp-closed'][1]
    assert results['http-503'] == (False, 'HTTP status 503, expected 200')
    assert not results['http-silent'][0] and 'timeout' in results['http-silent'][1]
    assert not results['http-garbage'][0] and 'not an HTTP response' in results['http-garbage'][1]
    assert not results['http-closed'][0]


def test_a_socket_that_cannot_be_made_fails_only_its_own_check():
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise OSError(24, 'Too many open files')
        return socket.socket()
    srv = Server(None)
    try:
        results = hc.run_checks([('a', '127.0.0.1', srv.port, spec()), ('b', '127.0.0.1', srv.port, spec())], factory)
    finally:
        srv.close()
    assert results['a'][0] is False and 'Too many open files' in results['a'][1]
    assert results['b'] == (True, None)


PARAMS = {'services': [
    {'vip': '10.0.0.1', 'port': 80, 'health_check': {'type': 'tcp'},
     'backends': ['10.0.0.2', {'ip': '10.0.0.3', 'port': 8080, 'weight': 2}]},
    {'vip': '10.0.0.1', 'port': 53, 'protocol': 'udp', 'backends': ['10.0.0.2']}]}


def test_effective_services_leave_out_only_checked_down_backends():
    health = {'10.0.0.1:80/tcp': {'10.0.0.3:8080': {'state': 'down'}},
              '10.0.0.1:53/udp': {'10.0.0.2:53': {'state': 'down'}}}  # not checked: ignored
    services, all_down = hc.effective_services(PARAMS, health)
    assert services[0]['backends'] == ['10.0.0.2'] and services[0]['health_check'] == {'type': 'tcp'}
    assert services[1] == PARAMS['services'][1]
    assert all_down == {'10.0.0.1:80/tcp': False}
    assert PARAMS['services'][0]['backends'][1]['port'] == 8080, 'the saved params are not modified'
    targets = hc.health_targets(PARAMS)
    assert list(targets) == ['10.0.0.1:80/tcp']
    assert targets['10.0.0.1:80/tcp'][1] == [('10.0.0.2:80', '10.0.0.2', 80), ('10.0.0.3:8080', '10.0.0.3', 8080)]


def test_agent_view_trusts_only_a_fresh_status():
    status = {'updated_at': 100.0, 'health': {'10.0.0.1:80/tcp': {'10.0.0.2:80': {'state': 'down'}}}}
    services, left_out = hc.agent_view(PARAMS, status, now=110.0)
    assert left_out == ['backend 10.0.0.2:80 of 10.0.0.1:80/tcp']
    assert services[0]['backends'] == [{'ip': '10.0.0.3', 'port': 8080, 'weight': 2}]
    assert hc.agent_view(PARAMS, status, now=200.0) == (PARAMS['services'], []), 'stale: agent not running'
    assert hc.agent_view(PARAMS, None, now=110.0) == (PARAMS['services'], [])
    assert hc.agent_view(PARAMS, {'updated_at': 'x', 'health': {}}, now=110.0) == (PARAMS['services'], [])
