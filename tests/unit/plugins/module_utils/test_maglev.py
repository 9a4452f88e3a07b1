# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections import Counter

import pytest

from ansible_collections.ebpf.networking.plugins.module_utils import maglev

M = 4099


def backends(n, weight=1):
    return [(i, '10.0.0.%d:80' % (i + 1), weight) for i in range(n)]


def test_every_entry_is_filled_with_a_known_slot():
    table = maglev.build_table(backends(5), M)
    assert len(table) == M
    assert set(table) == set(range(5))


@pytest.mark.parametrize('n', [2, 3, 10, 64])
def test_equal_weights_spread_evenly(n):
    counts = Counter(maglev.build_table(backends(n), M))
    ideal = M / n
    assert max(counts.values()) - min(counts.values()) <= max(2, ideal * 0.02 * n)
    assert all(abs(c - ideal) <= ideal * 0.1 + 2 for c in counts.values())


def test_weights_give_proportional_shares():
    entries = [(0, 'a:80', 1), (1, 'b:80', 3)]
    counts = Counter(maglev.build_table(entries, M))
    assert counts[1] / counts[0] == pytest.approx(3, rel=0.05)


def test_table_does_not_depend_on_list_order():
    forward = backends(6)
    assert maglev.build_table(forward, M) == maglev.build_table(list(reversed(forward)), M)


def test_removing_a_backend_moves_few_other_entries():
    before = maglev.build_table(backends(10), M)
    after = maglev.build_table(backends(10)[:9], M)  # remove slot 9
    kept = [i for i in range(M) if before[i] != 9]
    moved = sum(1 for i in kept if after[i] != before[i])
    # entries of the removed backend must move; the others should mostly stay (Maglev: a few %)
    assert moved / len(kept) < 0.10
    assert all(after[i] != 9 for i in range(M))


def test_adding_a_backend_takes_about_its_share():
    before = maglev.build_table(backends(9), M)
    after = maglev.build_table(backends(10), M)
    changed = sum(1 for i in range(M) if after[i] != before[i])
    assert changed / M < 0.15
    assert Counter(after)[9] == pytest.approx(M / 10, rel=0.1)


def test_size_must_be_prime_and_large_enough():
    with pytest.raises(ValueError):
        maglev.build_table(backends(2), 4096)
    with pytest.raises(ValueError):
        maglev.build_table(backends(7), 7)


def test_no_backends_gives_empty_table():
    assert maglev.build_table([], M) == []
