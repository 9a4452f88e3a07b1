# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016).

Each backend walks its own permutation of the table (offset + j * skip mod M) and claims the first
free slot, in turns. A weight gives a backend proportionally more turns. Removing a backend only
frees the slots it held, so the other backends keep most of theirs and established flows that
lose their conntrack entry still mostly hash to the same backend.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import struct


def is_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def _hash(key, salt):
    # stable across hosts and Python runs (hash() is not): the table must be reproducible
    return struct.unpack('>Q', hashlib.sha256((salt + key).encode()).digest()[:8])[0]


def permutation_params(key, size):
    offset = _hash(key, 'offset:') % size
    skip = _hash(key, 'skip:') % (size - 1) + 1
    return offset, skip


def build_table(backends, size):
    """backends: list of (slot, key, weight) with a unique key ("ip:port") each, weight >= 1.

    Returns a list of `size` slots. size must be a prime larger than the number of backends.
    """
    if not is_prime(size):
        raise ValueError('Maglev table size %d is not a prime' % size)
    if not backends:
        return []
    if len(backends) >= size:
        raise ValueError('Maglev table size %d is too small for %d backends' % (size, len(backends)))
    # sort by key so the table does not depend on the order the user listed backends in
    ordered = sorted(backends, key=lambda b: b[1])
    params = [permutation_params(entry[1], size) for entry in ordered]
    next_index = [0] * len(ordered)
    max_weight = max(entry[2] for entry in ordered)
    credit = [0] * len(ordered)
    table = [-1] * size
    filled = 0
    while True:
        for i, (slot, _key, weight) in enumerate(ordered):
            credit[i] += weight
            if credit[i] < max_weight:
                continue
            credit[i] -= max_weight
            offset, skip = params[i]
            while True:
                c = (offset + next_index[i] * skip) % size
                next_index[i] += 1
                if table[c] < 0:
                    break
            table[c] = slot
            filled += 1
            if filled == size:
                return table
