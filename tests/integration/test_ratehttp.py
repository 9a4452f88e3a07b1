# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's open-loop latency client (roles/benchmark/files/ratehttp.c) against a local server on
loopback whose delays, stalls, errors and closes the test controls. Light load only (a few hundred
requests/s), no namespaces, no lock needed."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import threading
import time

import pytest

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOURCE = os.path.join(os.path.dirname(__file__), '..', '..', 'roles', 'benchmark', 'files', 'ratehttp.c')


@pytest.fixture(scope='module')
def ratehttp(tmp_path_factory):
    binary = str(tmp_path_factory.mktemp('ratehttp') / 'ratehttp')
    subprocess.run(['clang', '-O2', '-Wall', '-Werror', '-o', binary, SOURCE], check=True)
    return binary


class Server(object):
    """HTTP/1.1 keep-alive server: /ok, /delay/MS, /status/CODE, /close (Connection: close), /stall
    (every request waits while a stall is on: stall(ms) starts one)."""

    def __init__(self):
        self.stall_until = 0.0
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                wait = server.stall_until - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                parts = self.path.strip('/').split('/')
                status, close = 200, False
                if parts[0] == 'delay':
                    time.sleep(int(parts[1]) / 1000.0)
                elif parts[0] == 'status':
                    status = int(parts[1])
                elif parts[0] == 'close':
                    close = True
                body = b'Hostname: q13-test\n'
                self.send_response(status)
                self.send_header('Content-Length', str(len(body)))
                if close:
                    self.send_header('Connection', 'close')
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stall(self, ms, after_s):
        def start():
            time.sleep(after_s)
            self.stall_until = time.monotonic() + ms / 1000.0
        threading.Thread(target=start, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def run(binary, url, rate, conns, seconds, *extra):
    p = subprocess.run([binary, '-r', str(rate), '-c', str(conns), '-d', str(seconds)] + list(extra) + [url],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_latency_follows_the_servers_delay_at_the_offered_rate(ratehttp, server):
    r = run(ratehttp, 'http://127.0.0.1:%d/delay/20' % server.port, 50, 5, 2)
    assert r['errors'] == 0, r
    assert r['due'] == 100 and r['sent'] == 100 and r['ok'] == 100, r
    assert 20 <= r['p50_ms'] < 200, r  # the server sleeps 20 ms; the upper bound leaves room for a busy VM
    assert r['p50_ms'] <= r['p90_ms'] <= r['p99_ms'] <= r['p999_ms'] <= r['max_ms'], r
    assert 35 <= r['achieved_rps'] <= 60, r
    assert r['offered_rps'] == 50


def test_a_stall_counts_from_the_due_time_not_the_send(ratehttp, server):
    """Coordinated omission: every request due while the server stalls 400 ms waits for a connection and
    must be timed from when it was due. A closed-loop client would record only the few requests in
    flight as slow (1% of 400), so its p99 would stay small."""
    server.stall(400, after_s=0.8)
    r = run(ratehttp, 'http://127.0.0.1:%d/ok' % server.port, 200, 4, 2)
    assert r['errors'] == 0, r
    assert r['late_sends'] >= 40, r
    assert r['p99_ms'] >= 250, r
    assert r['p90_ms'] >= 50, r
    assert r['p50_ms'] < 150, r  # most requests are due outside the stall (p99 >= 250 above)
    assert r['max_send_lag_ms'] >= 250, r


def test_warmup_requests_are_sent_but_not_recorded(ratehttp, server):
    r = run(ratehttp, 'http://127.0.0.1:%d/ok' % server.port, 100, 2, 2, '-w', '1')
    assert r['sent'] == 200 and r['ok'] == 200, r
    assert r['recorded'] == 100, r


def test_error_statuses_are_errors_not_latencies(ratehttp, server):
    r = run(ratehttp, 'http://127.0.0.1:%d/status/503' % server.port, 50, 2, 1)
    assert r['error_kinds']['status'] == 50, r
    assert r['errors'] == 50 and r['recorded'] == 0, r
    assert r['p99_ms'] == -1, r


def test_connections_the_server_closes_are_reopened(ratehttp, server):
    r = run(ratehttp, 'http://127.0.0.1:%d/close' % server.port, 100, 4, 1)
    assert r['errors'] == 0, r
    assert r['ok'] == 100, r
    assert r['reconnects'] >= 90, r


def test_nothing_listening_is_connect_errors_and_unsent_requests(ratehttp, server):
    port = server.port
    server.close()
    r = run(ratehttp, 'http://127.0.0.1:%d/' % port, 50, 2, 1)
    assert r['error_kinds']['connect'] >= 2, r
    assert r['error_kinds']['unsent'] == 50 and r['ok'] == 0, r


def test_a_server_that_never_answers_is_timeouts(ratehttp, server):
    server.stall(5000, after_s=0)
    time.sleep(0.1)
    r = run(ratehttp, 'http://127.0.0.1:%d/' % server.port, 20, 2, 1, '-t', '300')
    assert r['error_kinds']['timeout'] >= 2, r
    assert r['ok'] == 0, r


@pytest.mark.parametrize('args, message', [
    (['-r', '10', '-c', '1', '-d', '1'], 'exactly one URL'),
    (['-r', '10', '-c', '1', '-d', '1', 'http://localhost/'], 'IPv4 address'),
    (['-r', '10', '-c', '1', '-d', '1', 'https://127.0.0.1/'], 'http://'),
    (['-r', '0', '-c', '1', '-d', '1', 'http://127.0.0.1/'], '-r RATE'),
    (['-r', 'x', '-c', '1', '-d', '1', 'http://127.0.0.1/'], '-r RATE'),
    (['-r', '10', '-c', '1', '-d', '1', 'http://127.0.0.1:70000/'], 'port'),
    (['-r', '10', '-c', '1', '-d', '1', '-w', '2', 'http://127.0.0.1/'], 'WARMUP'),
])
def test_bad_arguments_say_what_is_wrong(ratehttp, args, message):
    p = subprocess.run([ratehttp] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       check=False)
    assert p.returncode == 2
    assert message in p.stderr
    assert p.stdout == ''
