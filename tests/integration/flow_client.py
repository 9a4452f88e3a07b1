# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run inside a client namespace: open one kept-alive HTTP connection per given source port to a VIP,
ask twice on each (all connections open at once), and print JSON with the backend each answer came
from. Bounded: a few seconds of timeouts at most."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import socket
import struct
import time


def read_head(sock):
    """An HTTP response's headers (lower-case names, bytes) and the part of the body read with them."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise IOError('connection closed')
        data += chunk
    head, body = data.split(b'\r\n\r\n', 1)
    headers = dict((k.strip().lower(), v.strip()) for k, v in
                   (line.split(b':', 1) for line in head.split(b'\r\n')[1:] if b':' in line))
    return headers, body


def ask(sock):
    sock.sendall(b'GET / HTTP/1.1\r\nHost: lb\r\n\r\n')
    headers, body = read_head(sock)
    length = int(headers[b'content-length'])
    while len(body) < length:
        body += sock.recv(4096)
    return body.decode().strip().replace('Hostname: ', '')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--vip', required=True)
    ap.add_argument('--port', type=int, default=80)
    ap.add_argument('--sports', required=True, help='first:count')
    ap.add_argument('--rst-close', action='store_true', help='close with RST: no TIME_WAIT, ports reusable at once')
    ap.add_argument('--pause-file', help='after the first requests create FILE.ready and wait (30 s at most) for FILE')
    args = ap.parse_args()
    first, count = [int(x) for x in args.sports.split(':')]
    conns, out = [], []
    for sport in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(3)
        entry = {'sport': sport}
        try:
            s.bind(('0.0.0.0', sport))
            s.connect((args.vip, args.port))
            entry['first'] = ask(s)
        except (IOError, OSError) as e:
            entry['error'] = str(e)
        conns.append((s, entry))
        out.append(entry)
    if args.pause_file:
        open(args.pause_file + '.ready', 'w').close()
        deadline = time.time() + 30
        while not os.path.exists(args.pause_file) and time.time() < deadline:
            time.sleep(0.1)
    for s, entry in conns:
        if 'error' not in entry:
            try:
                entry['second'] = ask(s)
            except (IOError, OSError) as e:
                entry['error'] = 'second request: %s' % e
        if args.rst_close:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        s.close()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
