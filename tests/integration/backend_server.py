# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test backend: HTTP/1.1 keep-alive answering "Hostname: NAME", /bytes/N for downloads, and an
optional UDP echo that prefixes its name. Threaded so many connections work at once."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import socket
import threading

try:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
except ImportError:  # pragma: no cover
    raise SystemExit('python3 needed')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--name', required=True)
    ap.add_argument('--port', type=int, default=80)
    ap.add_argument('--udp-port', type=int)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def do_GET(self):
            if self.path.startswith('/bytes/'):
                size = int(self.path.split('/')[2])
                self.send_response(200)
                self.send_header('Content-Length', str(size))
                self.send_header('X-Backend', args.name)
                self.end_headers()
                chunk = (args.name.encode() + b'.') * 4096
                sent = 0
                while sent < size:
                    part = chunk[:min(len(chunk), size - sent)]
                    self.wfile.write(part)
                    sent += len(part)
                return
            body = ('Hostname: %s\n' % args.name).encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    if args.udp_port:
        def udp():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(('0.0.0.0', args.udp_port))
            while True:
                data, peer = s.recvfrom(2048)
                s.sendto(args.name.encode() + b':' + data, peer)
        t = threading.Thread(target=udp)
        t.daemon = True
        t.start()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(('0.0.0.0', args.port), Handler).serve_forever()


if __name__ == '__main__':
    main()
