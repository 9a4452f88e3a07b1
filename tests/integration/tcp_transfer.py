# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bulk transfer over local TCP with an integrity check, and a request/response round trip.

The server receives a length-prefixed payload, answers with its sha256, then echoes 64-byte
messages `--rr` times. The client compares the hash with its own and checks every echo. Prints
JSON. Bounded by --timeout seconds of socket inactivity.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import hashlib
import json
import os
import socket
import struct
import threading
import time


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise IOError('peer closed after %d of %d bytes' % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_sha256(conn):
    """Read a length-prefixed payload: its sha256 (hashlib object), or None when the peer closed early."""
    size = struct.unpack('!Q', recv_exact(conn, 8))[0]
    h = hashlib.sha256()
    left = size
    while left:
        chunk = conn.recv(min(1 << 20, left))
        if not chunk:
            return None
        h.update(chunk)
        left -= len(chunk)
    return h


def serve_one(listener, rr):
    conn, _addr = listener.accept()
    with conn:
        h = recv_sha256(conn)
        if h is None:
            return
        conn.sendall(h.digest())
        for _i in range(rr):
            conn.sendall(recv_exact(conn, 64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--mib', type=int, default=8)
    ap.add_argument('--rr', type=int, default=200)
    ap.add_argument('--timeout', type=float, default=20)
    args = ap.parse_args()
    family = socket.AF_INET6 if ':' in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(1)
    listener.settimeout(args.timeout)
    server = threading.Thread(target=serve_one, args=(listener, args.rr))
    server.daemon = True
    server.start()

    payload = os.urandom(args.mib << 20)
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(args.timeout)
    client.connect((args.host, args.port))
    start = time.time()
    client.sendall(struct.pack('!Q', len(payload)) + payload)
    digest = recv_exact(client, 32)
    bulk_seconds = time.time() - start
    start = time.time()
    echoed_ok = 0
    for i in range(args.rr):
        msg = struct.pack('!Q', i) * 8
        client.sendall(msg)
        if recv_exact(client, 64) == msg:
            echoed_ok += 1
    rr_seconds = time.time() - start
    client.close()
    server.join(args.timeout)
    listener.close()
    print(json.dumps({'intact': digest == hashlib.sha256(payload).digest(), 'bytes': len(payload),
                      'bulk_seconds': bulk_seconds, 'echoes_ok': echoed_ok, 'echoes': args.rr,
                      'rr_seconds': rr_seconds}))


if __name__ == '__main__':
    main()
