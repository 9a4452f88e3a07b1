# -*- coding: utf-8 -*-
# Copyright: ebpf.networking developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Attributes shared by the collection's modules."""

    # Modules that only read the kernel's state
    READ_ONLY = r'''
attributes:
  check_mode:
    support: full
    description: The module only reads, so check mode runs it in full.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
'''
