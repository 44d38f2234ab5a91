# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""e2fsprogs: the ext4 filesystem inside a repository's LUKS volume."""

from __future__ import annotations

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.text import key_values


def mkfs(runner, device, label="lockbox"):
    # Lazy init keeps formatting a large sparse image in milliseconds; no reserved blocks.
    runner.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", label,
                "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", device])


def parse_superblock(text):
    """``tune2fs -l`` prints 'Key:   value' lines; return the filesystem size in bytes."""
    fields = key_values(text, ":")
    return int(fields["Block count"]) * int(fields["Block size"])


def size(runner, device):
    return parse_superblock(runner.run(["tune2fs", "-l", device]).stdout)


def grow(runner, device):
    runner.run(["resize2fs", device])


FSCK_CLEAN_RCS = (0,)


def check_readonly(runner, device):
    """``e2fsck -n -f``: a full check that writes nothing. "clean", or an error with e2fsck's findings."""
    result = runner.run(["e2fsck", "-n", "-f", device], ok_rcs=(0, 1, 2, 4, 8))
    if result.rc not in FSCK_CLEAN_RCS:
        findings = (result.stdout + result.stderr).strip()[-800:]
        raise LockboxError("e2fsck -n found errors in %s (rc %d): %s" % (device, result.rc, findings),
                           cmd=result.argv, rc=result.rc, stderr=result.stderr)
    return "clean"
