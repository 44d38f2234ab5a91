# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lsblk(8) and blkid(8): block device sizes and filesystem signatures."""

from __future__ import annotations

import json

from ansible_collections.lockbox.fleet.plugins.module_utils._core.text import key_values


def parse_lsblk(text):
    return [
        {"name": d.get("path") or d.get("name"), "size": int(d.get("size") or 0),
         "fstype": d.get("fstype"), "type": d.get("type")}
        for d in json.loads(text).get("blockdevices") or []
    ]


def device_size(runner, device):
    result = runner.run(["lsblk", "-J", "-b", "-d", "-o", "PATH,SIZE,FSTYPE,TYPE", device])
    devices = parse_lsblk(result.stdout)
    return devices[0]["size"] if devices else 0


def parse_blkid_export(text):
    """``blkid -p -o export`` prints KEY=value lines; an empty dict means no signature."""
    return key_values(text)


def probe(runner, path):
    """Low-level probe of a device or image file. blkid exits 2 when it finds nothing."""
    result = runner.run(["blkid", "-p", "-o", "export", path], ok_rcs=(0, 2))
    return parse_blkid_export(result.stdout) if result.rc == 0 else {}
