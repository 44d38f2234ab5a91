# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Attributes shared by every lockbox.fleet module; a module overrides what differs."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the planned actions without changing the host.
    support: full
  diff_mode:
    description: Returns the state before and after as a diff.
    support: full
  platform:
    description: Target hosts are Linux machines managed by systemd.
    support: full
    platforms: posix
"""

    # Modules that report what they change as a list of actions rather than a diff.
    ACTIONS_ONLY = r"""
options: {}
attributes:
  diff_mode:
    description: The actions list says what changes.
    support: none
"""
