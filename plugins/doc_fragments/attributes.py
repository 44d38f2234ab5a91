# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

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
