# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""read_sources: the BPF files by name, or a failure that names the missing file and the fix."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleActionFail
from ansible_collections.ebpf.networking.plugins.plugin_utils.bpf_source import read_sources


def test_reads_each_file_by_name(tmp_path):
    (tmp_path / 'a.bpf.c').write_text(u'#include "a.h"\n')
    (tmp_path / 'a.h').write_text(u'#define A 1\n')
    assert read_sources(['a.bpf.c', 'a.h'], str(tmp_path)) == {'a.bpf.c': '#include "a.h"\n', 'a.h': '#define A 1\n'}


def test_missing_file_names_it_and_the_fix(tmp_path):
    with pytest.raises(AnsibleActionFail, match=r'fl_missing\.h is missing .*reinstall ebpf\.networking'):
        read_sources(['fl_missing.h'], str(tmp_path))
