# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run inside a client namespace while the test moves the VIP's route from one LB to another.

download: one HTTP GET /bytes/N from backend_server.py, read at a limited rate (a small receive
  buffer, so the backend is held back by the window and the transfer lasts); FILE.ready appears once
  the headers are in. Prints JSON with the backend, the bytes and whether their sha256 is the one the
  backend's pattern gives.
churn: short connections (connect, wait --hold, one request, close) from --workers threads for some
  seconds; prints JSON with every answer's backend and the errors.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import hashlib
import json
import socket
import threading
import time

from flow_client import read_head  # the script's own directory is first on sys.path


def expected_sha256(name, size):
    # backend_server.py's /bytes/N: (name + '.') * 4096, repeated, cut at size
    chunk = (name.encode() + b'.') * 4096
    h = hashlib.sha256()
    left = size
    while left:
        part = chunk[:min(len(chunk), left)]
        h.update(part)
        left -= len(part)
    return h.hexdigest()


def download(args):
    out = {'bytes': 0}
    start = time.time()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.settimeout(args.timeout)
    h = hashlib.sha256()
    try:
        sock.connect((args.vip, args.port))
        out['sport'] = sock.getsockname()[1]
        sock.sendall(('GET /bytes/%d HTTP/1.1\r\nHost: lb\r\n\r\n' % args.size).encode())
        headers, body = read_head(sock)
        out['backend'] = headers.get(b'x-backend', b'').decode()
        open(args.ready, 'w').close()
        got = body
        while True:
            h.update(got)
            out['bytes'] += len(got)
            if out['bytes'] >= args.size:
                break
            ahead = out['bytes'] / float(args.rate) - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)
            got = sock.recv(32 << 10)
            if not got:
                raise IOError('connection closed after %d of %d bytes' % (out['bytes'], args.size))
    except (IOError, OSError) as e:
        out['error'] = str(e)
    finally:
        sock.close()
    out['seconds'] = round(time.time() - start, 2)
    out['intact'] = bool(out.get('backend')) and out['bytes'] == args.size and \
        h.hexdigest() == expected_sha256(out['backend'], args.size)
    print(json.dumps(out))


def churn_worker(args, deadline, results, lock):
    while time.time() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(args.timeout)
        started = time.time()
        try:
            sock.connect((args.vip, args.port))
            time.sleep(args.hold)  # open connections span the switch, not only the ones in flight at it
            sock.sendall(b'GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n')
            _headers, body = read_head(sock)
            while b'\n' not in body:
                more = sock.recv(4096)
                if not more:
                    break
                body += more
            answer = ('backend', body.decode().strip().replace('Hostname: ', ''))
        except (IOError, OSError) as e:
            answer = ('error', 'connection opened at %.2f s: %s' % (started - deadline + args.seconds, e))
        finally:
            sock.close()
        with lock:
            results.append(answer)


def churn(args):
    deadline = time.time() + args.seconds
    results, lock = [], threading.Lock()
    workers = [threading.Thread(target=churn_worker, args=(args, deadline, results, lock))
               for _i in range(args.workers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    backends = {}
    for kind, value in results:
        if kind == 'backend':
            backends[value] = backends.get(value, 0) + 1
    print(json.dumps({'connections': len(results), 'backends': backends,
                      'errors': [value for kind, value in results if kind == 'error']}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('mode', choices=['download', 'churn'])
    ap.add_argument('--vip', required=True)
    ap.add_argument('--port', type=int, default=80)
    ap.add_argument('--size', type=int, default=24 << 20)
    ap.add_argument('--rate', type=int, default=6 << 20, help='bytes per second')
    ap.add_argument('--ready', help='download: FILE created once the headers are in')
    ap.add_argument('--seconds', type=float, default=3)
    ap.add_argument('--timeout', type=float, default=5)
    ap.add_argument('--workers', type=int, default=8, help='churn: connections open at once')
    ap.add_argument('--hold', type=float, default=0.2, help='churn: seconds between connect and request')
    args = ap.parse_args()
    if args.mode == 'download':
        download(args)
    else:
        churn(args)


if __name__ == '__main__':
    main()
