# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP scenarios across network namespaces for the sockmap tests. Prints one JSON object.

Run it inside the cgroup the sock_ops program is attached to (the test puts it there). A socket
keeps the namespace it was created in, so one process makes sockets in several namespaces by
switching its own namespace with setns(2) between them.

  cross  SERVER_NS_A CLIENT_NS_A SERVER_NS_B CLIENT_NS_B HOST_A HOST_B PORT
         Namespace pair A: a client talks to a server, the server closes (the client stays in
         CLOSE_WAIT, still in the SOCKHASH). Pair B opens the same 4-tuple. A's client writes a
         secret: B's server must not read it.
  stress NS HOST PORT CONNECTIONS BYTES [UNTIL_FILE]
         CONNECTIONS connections that write immediately in both directions (BYTES each way, in
         messages of random sizes); every byte is checked in order, by sha256, at the other end.
         Every client writes its first message right after connect(), before the server accepts;
         odd connections go to PORT+1, whose listener has TCP_DEFER_ACCEPT: there the server's
         socket is only established by that first message, so it cannot be redirected (its peer
         is not in the SOCKHASH yet) and the direction goes through TCP from its first byte.
         Goes on with more connections until UNTIL_FILE exists, when given; prints how many were
         intact.
  mptcp  NS HOST PORT BYTES
         One MPTCP connection (its subflows are TCP sockets with the mptcp ULP) moving BYTES each way;
         prints whether both directions arrived intact.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import hashlib
import json
import os
import random
import select
import socket
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
CLIENT_PORT = 45123


def enter(netns):
    """Make this process's new sockets belong to `netns` (a name under /var/run/netns)."""
    path = '/proc/1/ns/net' if netns == 'host' else '/var/run/netns/' + netns
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, 'setns %s: %s' % (path, os.strerror(err)))
    finally:
        os.close(fd)


def pair(netns_server, netns_client, host, port, client_port):
    enter(netns_server)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4)
    enter(netns_client)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    client.bind(('0.0.0.0', client_port))
    client.settimeout(5)
    client.connect((host, port))
    listener.settimeout(5)
    server, _addr = listener.accept()
    return listener, client, server


def cross(ns_sa, ns_ca, ns_sb, ns_cb, host_a, host_b, port):
    port = int(port)
    listener_a, client_a, server_a = pair(ns_sa, ns_ca, host_a, port, CLIENT_PORT)
    # a first exchange, so both of A's directions have started (and, when accelerated, redirect)
    client_a.sendall(b'hello')
    server_a.recv(16)
    server_a.sendall(b'hello')
    client_a.recv(16)
    server_a.close()
    listener_a.close()
    time.sleep(0.2)  # A's client now in CLOSE_WAIT
    listener_b, client_b, server_b = pair(ns_sb, ns_cb, host_b, port, CLIENT_PORT)
    client_a.sendall(b'SECRET-FROM-A')
    client_b.sendall(b'from-b')
    got = b''
    server_b.setblocking(False)
    deadline = time.time() + 1.5
    while time.time() < deadline:
        readable, _w, _x = select.select([server_b], [], [], 0.1)
        if readable:
            chunk = server_b.recv(256)
            if not chunk:
                break
            got += chunk
    for s in (client_a, listener_b, client_b, server_b):
        s.close()
    print(json.dumps({'b_server_read': got.decode('latin-1')}))


def stream(seed, size):
    """The bytes one direction of connection `seed` sends, cut into messages of random sizes."""
    rnd = random.Random(seed)
    data = bytes(bytearray(rnd.getrandbits(8) for _i in range(min(size, 4096)))) * (size // 4096 + 1)
    data = data[:size]
    cuts, at = [], 0
    while at < size:
        n = min(size - at, rnd.choice((1, 7, 64, 1000, 4096, 65536)))
        cuts.append(data[at:at + n])
        at += n
    return data, cuts


def talk(sock, seed, size, results, index, stop_at, already_sent=0):
    """Send our stream and read the peer's at the same time; record whether what came is exact."""
    _data, cuts = stream(seed, size)
    cuts = cuts[already_sent:]
    expected = hashlib.sha256(stream(seed ^ 1, size)[0]).hexdigest()
    sock.setblocking(False)
    got = hashlib.sha256()
    received = 0
    pending = b''.join(cuts[:1])
    queue = cuts[1:]
    try:
        while (pending or queue or received < size) and time.time() < stop_at:
            want_write = [sock] if (pending or queue) else []
            readable, writable, _x = select.select([sock], want_write, [], 0.5)
            if readable:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                got.update(chunk)
                received += len(chunk)
            if writable:
                if not pending:
                    pending = queue.pop(0)
                sent = sock.send(pending)
                pending = pending[sent:]
        results[index] = {'intact': received == size and got.hexdigest() == expected, 'received': received}
    except (OSError, IOError) as e:
        results[index] = {'intact': False, 'received': received, 'error': str(e)}


def stress(netns, host, port, connections, size, until_file=None):
    port, connections, size = int(port), int(connections), int(size)
    started = time.time()
    enter(netns)
    listeners = []
    for offset in (0, 1):
        listener = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if offset:
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
        listener.bind((host, port + offset))
        listener.listen(1024)
        listeners.append(listener)
    results = []
    stop_at = time.time() + 240
    threads = []
    batch = 50  # connections alive at once: threads are cheap, but not 2,000 of them on 2 cores
    start = 0
    while start < connections or (until_file and not os.path.exists(until_file) and time.time() < stop_at):
        pairs = []
        results.extend([None] * (2 * batch))
        for i in range(start, start + batch):
            client = socket.socket(listeners[0].family)
            client.connect((host, port + i % 2))
            client.sendall(stream(2 * i, size)[1][0])
            server, _addr = listeners[i % 2].accept()
            pairs.append((i, client, server))
        for i, client, server in pairs:
            # the client sends stream 2i and expects 2i+1; the server the other way round
            for sock, seed, idx, sent in ((client, 2 * i, 2 * i, 1), (server, 2 * i + 1, 2 * i + 1, 0)):
                t = threading.Thread(target=talk, args=(sock, seed, size, results, idx, stop_at, sent))
                t.start()
                threads.append(t)
        for t in threads:
            t.join()
        threads = []
        for _i, client, server in pairs:
            client.close()
            server.close()
        start += batch
    for listener in listeners:
        listener.close()
    bad = [i for i, r in enumerate(results) if not (r and r['intact'])]
    print(json.dumps({'directions': len(results), 'intact': len(results) - len(bad),
                      'seconds': round(time.time() - started, 1),
                      'bad': [dict(results[i] or {}, direction=i) for i in bad[:10]]}))


IPPROTO_MPTCP = 262


def mptcp(netns, host, port, size):
    port, size = int(port), int(size)
    enter(netns)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    client.connect((host, port))
    server, _addr = listener.accept()
    results = [None, None]
    stop_at = time.time() + 30
    threads = [threading.Thread(target=talk, args=(sock, seed, size, results, seed, stop_at))
               for sock, seed in ((client, 0), (server, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (client, server, listener):
        s.close()
    print(json.dumps({'intact': all(r and r['intact'] for r in results), 'results': results}))


if __name__ == '__main__':
    {'cross': cross, 'stress': stress, 'mptcp': mptcp}[sys.argv[1]](*sys.argv[2:])
