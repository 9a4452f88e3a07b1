# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A pcap-filter expression (tcpdump syntax) as a check inside a tracing program, as pwru does:
libpcap (through `tcpdump -ddd -y RAW`) compiles it to classic BPF for packets that start at the IP
header, and this module translates each cBPF instruction into C over a copy of the packet's first
PCAP_SNAP bytes from its network header (bpf/pcap_match.h gives the loads). cBPF only jumps
forward, so the translation is a loop-free chain of labels. No ansible import."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess

# classes, sizes, modes, ops (linux/filter.h, the classic half)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
SIZES = {0x00: 4, 0x08: 2, 0x10: 1}
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xa0
ALU_OPS = {0x00: '+', 0x10: '-', 0x20: '*', 0x30: '/', 0x40: '|', 0x50: '&', 0x60: '<<', 0x70: '>>', 0x90: '%',
           0xa0: '^'}
ALU_NEG = 0x80
JMP_OPS = {0x10: '==', 0x20: '>', 0x30: '>='}
JA, JSET = 0x00, 0x40
SRC_X = 0x08
MAX_INSNS = 512


class PcapFilterError(ValueError):
    pass


def compile_expression(expr, run=subprocess.run):
    """[(code, jt, jf, k)] for expr on packets that begin with the IP header (DLT_RAW)."""
    if not expr or not expr.strip():
        raise PcapFilterError('pcap_filter is empty: give a tcpdump expression such as "udp port 53"')
    try:
        proc = run(['tcpdump', '-ddd', '-y', 'RAW', expr], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   universal_newlines=True, check=False)
    except OSError as e:
        raise PcapFilterError('tcpdump (libpcap) is needed to compile pcap_filter: %s (apt-get install tcpdump)' % e)
    if proc.returncode != 0:
        raise PcapFilterError('pcap_filter %r does not compile: %s' % (expr, proc.stderr.strip().splitlines()[-1:]))
    return parse_ddd(proc.stdout)


def parse_ddd(text):
    rows = [r.split() for r in text.strip().splitlines()]
    try:
        count = int(rows[0][0])
        insns = [tuple(int(v) for v in r) for r in rows[1:1 + count]]
    except (IndexError, ValueError):
        raise PcapFilterError('unexpected tcpdump -ddd output: %r' % text[:200])
    if len(insns) != count or any(len(i) != 4 for i in insns):
        raise PcapFilterError('unexpected tcpdump -ddd output: %r' % text[:200])
    if count > MAX_INSNS:
        raise PcapFilterError('pcap_filter compiles to %d instructions; at most %d fit in the program'
                              % (count, MAX_INSNS))
    return insns


def _load(size, offset):
    return 'if (pcap_load(pkt, snap, %s, %d, &tmp)) return 0; ' % (offset, size)


def translate(insns):
    """C source of `static __always_inline int pcap_filter_match(const __u8 *pkt, __u32 snap, __u32 wirelen)`:
    nonzero when the packet passes. Raises PcapFilterError on an instruction it does not know."""
    body = []
    n = len(insns)
    for i, (code, jt, jf, k) in enumerate(insns):
        cls = code & 0x07
        line = 'L%d: ' % i
        if cls in (LD, LDX):
            mode = code & 0xe0
            reg = 'A' if cls == LD else 'X'
            size = SIZES.get(code & 0x18)
            if mode == IMM:
                line += '%s = %du;' % (reg, k)
            elif mode == LEN:
                line += '%s = wirelen;' % reg
            elif mode == MEM and k < 16:
                line += '%s = M[%d];' % (reg, k)
            elif mode == ABS and cls == LD and size:
                line += _load(size, '%du' % k) + 'A = tmp;'
            elif mode == IND and cls == LD and size:
                line += _load(size, 'X + %du' % k) + 'A = tmp;'
            elif mode == MSH and cls == LDX:
                line += _load(1, '%du' % k) + 'X = (tmp & 0xf) << 2;'
            else:
                raise PcapFilterError('cBPF instruction %d (code 0x%x) is not supported' % (i, code))
        elif cls in (ST, STX):
            if k >= 16:
                raise PcapFilterError('cBPF store to M[%d] is out of range' % k)
            line += 'M[%d] = %s;' % (k, 'A' if cls == ST else 'X')
        elif cls == ALU:
            op = code & 0xf0
            src = 'X' if code & SRC_X else '%du' % k
            if op == ALU_NEG:
                line += 'A = -A;'
            elif op in ALU_OPS:
                if op in (0x30, 0x90):  # division by zero rejects the packet, as in the kernel
                    line += 'if (%s == 0) return 0; ' % src
                if op in (0x60, 0x70):
                    src = '(%s & 31)' % src
                line += 'A = A %s %s;' % (ALU_OPS[op], src)
            else:
                raise PcapFilterError('cBPF ALU op 0x%x is not supported' % op)
        elif cls == JMP:
            op = code & 0xf0
            src = 'X' if code & SRC_X else '%du' % k
            if op == JA:
                target = i + 1 + k
                _check_target(i, target, n)
                line += 'goto L%d;' % target
            else:
                t, f = i + 1 + jt, i + 1 + jf
                _check_target(i, t, n)
                _check_target(i, f, n)
                cond = '(A & %s)' % src if op == JSET else 'A %s %s' % (JMP_OPS.get(op, '?'), src)
                if op != JSET and op not in JMP_OPS:
                    raise PcapFilterError('cBPF jump op 0x%x is not supported' % op)
                line += 'if (%s) goto L%d; else goto L%d;' % (cond, t, f)
        elif cls == RET:
            rval = code & 0x18
            line += 'return %s;' % ('A != 0' if rval == 0x10 else ('X != 0' if rval == 0x08 else str(int(k != 0))))
        elif cls == MISC:
            line += 'X = A;' if (code & 0xf8) == 0x00 else 'A = X;'
        body.append(line)
    body.append('L%d: return 0;' % n)  # falling off the end rejects
    return ('static __always_inline int pcap_filter_match(const __u8 *pkt, __u32 snap, __u32 wirelen)\n{\n'
            '\t__u32 A = 0, X = 0, tmp = 0;\n\t__u32 M[16] = {};\n\t(void)M; (void)X; (void)tmp;\n\t'
            + '\n\t'.join(body) + '\n}\n')


def _check_target(i, target, n):
    if target <= i or target > n:
        raise PcapFilterError('cBPF instruction %d jumps to %d, outside the program' % (i, target))


def header(expr, run=subprocess.run):
    """The generated bpf header text for expr: what the tracing programs include as pcap_filter.h."""
    return ('/* Generated from pcap filter %s by plugins/module_utils/pcap_filter.py */\n' % _comment(expr)
            + translate(compile_expression(expr, run)))


def _comment(expr):
    return '"%s"' % expr.replace('*/', '* /').replace('\n', ' ')
