# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capture the XDP load balancer's rewritten packets at both ends and verify every checksum.

At the backend (netns of --pid): packets from --lb-ip to --backend-ip, rewritten client->backend.
At the client (netns of --client-pid): packets from --vip to --client-ip, rewritten replies.
Checksums are recomputed by scapy and compared with what arrived; exits 1 on any mismatch.
"""
import argparse
import subprocess
import sys
import time

from scapy.all import IP, TCP, rdpcap  # pylint: disable=no-name-in-module


def capture(pid, bpf_filter, path):
    return subprocess.Popen(['nsenter', '-t', str(pid), '-n', 'tcpdump', '-i', 'eth0', '-U', '-s', '0', '-c', '400',
                             '-w', path, bpf_filter], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def verify(path, label):
    checked = bad = 0
    for pkt in rdpcap(path):
        if IP not in pkt or TCP not in pkt:
            continue
        ip, tcp = pkt[IP], pkt[TCP]
        got_ip, got_tcp = ip.chksum, tcp.chksum
        fresh = IP(bytes(ip))
        del fresh.chksum
        del fresh[TCP].chksum
        fresh = IP(bytes(fresh))
        checked += 1
        if fresh.chksum != got_ip or fresh[TCP].chksum != got_tcp:
            bad += 1
            print('%s: BAD checksum %s:%d -> %s:%d ip %#06x (want %#06x) tcp %#06x (want %#06x)' % (
                label, ip.src, tcp.sport, ip.dst, tcp.dport, got_ip, fresh.chksum, got_tcp, fresh[TCP].chksum))
    print('%s: %d packets checked, %d with a bad checksum' % (label, checked, bad))
    return checked, bad


def main():
    ap = argparse.ArgumentParser()
    for opt in ('--pid', '--client-pid', '--lb-ip', '--backend-ip', '--vip', '--client-ip'):
        ap.add_argument(opt, required=True)
    a = ap.parse_args()
    at_backend = capture(a.pid, 'tcp and src host %s and dst host %s' % (a.lb_ip, a.backend_ip), '/tmp/ebn-backend.pcap')
    at_client = capture(a.client_pid, 'tcp and src host %s and dst host %s' % (a.vip, a.client_ip), '/tmp/ebn-client.pcap')
    time.sleep(1.5)
    for dummy in range(30):
        subprocess.run(['nsenter', '-t', a.client_pid, '-n', 'curl', '-s', '-m', '3', '-o', '/dev/null',
                        'http://%s/big.bin' % a.vip], check=False)
    time.sleep(1)
    for p in (at_backend, at_client):
        p.terminate()
        p.wait()
    total_bad = 0
    for path, label in (('/tmp/ebn-backend.pcap', 'client->backend at backend'), ('/tmp/ebn-client.pcap', 'reply at client')):
        checked, bad = verify(path, label)
        if checked == 0:
            print('%s: no packets captured' % label)
            total_bad += 1
        total_bad += bad
    return 1 if total_bad else 0


if __name__ == '__main__':
    sys.exit(main())
