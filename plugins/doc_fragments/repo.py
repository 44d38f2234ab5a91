# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Where repositories live, and how their key is given."""

    DOCUMENTATION = r"""
options:
  datastore:
    description:
      - Mount point of the BTRFS datastore (see M(lockbox.fleet.datastore)). Each repository
        keeps its image in the subvolume C(<datastore>/repositories/<guid>).
    type: path
    default: /mnt/rediacc
  mount_root:
    description:
      - Where opened repositories are mounted, as C(<mount_root>/<guid>).
      - Defaults to C(<datastore>/mounts), that is C(/mnt/rediacc/mounts).
    type: path
  state_dir:
    description:
      - The host state directory (one readable JSON record per repository and the host lock),
        kept outside the encrypted images.
    type: path
    default: /var/lib/rediacc/state
"""

    NAME = r"""
options:
  name:
    description: The repository, by name (a fork is C(<parent>:<tag>)).
    type: str
    required: true
"""

    KEY = r"""
options:
  key:
    description:
      - A machine-generated random key (for example 64 random characters kept in Ansible Vault).
        Formatted with PBKDF2 at the minimum 1000 iterations, so the volume opens in milliseconds.
      - Passed to cryptsetup on stdin only; never in argv, results or logs.
      - Mutually exclusive with O(passphrase) and O(key_file).
    type: str
  passphrase:
    description:
      - A human passphrase. Formatted with argon2id. Passed on stdin only.
    type: str
  key_file:
    description:
      - A key file on the host, owned by root with mode 0600 or stricter. Its content is
        passed to cryptsetup on stdin.
    type: path
"""
