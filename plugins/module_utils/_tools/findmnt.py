# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""findmnt(8): what is mounted where, from its JSON output."""

from __future__ import annotations

import json

FIELDS = "SOURCE,TARGET,FSTYPE,OPTIONS,UUID"


def parse(text):
    """Flatten ``findmnt -J`` output into a list of mount dicts (children included)."""
    if not text.strip():
        return []
    mounts = []

    def walk(entries):
        for entry in entries:
            source = entry.get("source") or ""
            # btrfs sources read "/dev/loop0[/subvol]" when a subvolume is mounted.
            device, _sep, rest = source.partition("[")
            mounts.append({
                "source": device,
                "subvolume": rest.rstrip("]") if rest else None,
                "target": entry.get("target"),
                "fstype": entry.get("fstype"),
                "options": (entry.get("options") or "").split(","),
                "uuid": entry.get("uuid"),
            })
            walk(entry.get("children") or [])

    walk(json.loads(text).get("filesystems") or [])
    return mounts


def mount_at(runner, target):
    """The mount at exactly ``target``, or None. findmnt exits 1 when there is none."""
    result = runner.run(["findmnt", "-J", "-o", FIELDS, "--mountpoint", target], ok_rcs=(0, 1))
    mounts = [m for m in parse(result.stdout) if m["target"] == target]
    return mounts[-1] if mounts else None
