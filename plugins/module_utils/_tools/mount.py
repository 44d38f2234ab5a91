# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""mount(8), umount(8) and wipefs(8)."""

from __future__ import annotations


def mount(runner, device, target, options, fstype=None):
    runner.run(["mount", *(["-t", fstype] if fstype else []), "-o", options, device, target])


def make_private(runner, target):
    """No mount event crosses between this mount namespace and the one it was copied from."""
    runner.run(["mount", "--make-rprivate", target])


def umount(runner, target, recursive=False):
    runner.run(["umount", *(["--recursive"] if recursive else []), target])


def wipe_signatures(runner, device):
    runner.run(["wipefs", "--all", device])
