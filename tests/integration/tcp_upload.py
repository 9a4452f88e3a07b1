# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An upload with an integrity check, between two namespaces.

    tcp_upload.py serve --port P             answers each connection's length-prefixed payload
                                             with its sha256 (hex), forever
    tcp_upload.py send --host H --port P --mib N --timeout S
                                             sends N MiB of random bytes, prints JSON: the sha256
                                             sent, the one the server computed, seconds (or error)

The client's segments are full-size (it sends, the server only answers 64 bytes), so the path's MTU
must be right in the client's direction.
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

from tcp_transfer import recv_exact, recv_sha256  # next to this script


def answer(conn):
    with conn:
        digest = recv_sha256(conn)
        if digest is not None:
            conn.sendall(digest.hexdigest().encode())


def serve(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('0.0.0.0', port))
    listener.listen(16)
    while True:
        conn, _addr = listener.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def send(host, port, mib, timeout):
    payload = os.urandom(mib << 20)
    result = {'sent_sha256': hashlib.sha256(payload).hexdigest()}
    start = time.time()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        with sock:
            sock.sendall(struct.pack('!Q', len(payload)) + payload)
            result['server_sha256'] = recv_exact(sock, 64).decode()
    except (IOError, OSError) as e:
        result['error'] = '%s: %s' % (type(e).__name__, e)
    result['seconds'] = round(time.time() - start, 3)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('mode', choices=['serve', 'send'])
    ap.add_argument('--host')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--mib', type=int, default=5)
    ap.add_argument('--timeout', type=float, default=10)
    args = ap.parse_args()
    if args.mode == 'serve':
        serve(args.port)
    else:
        print(json.dumps(send(args.host, args.port, args.mib, args.timeout)))


if __name__ == '__main__':
    main()
