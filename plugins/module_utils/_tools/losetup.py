# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""losetup(8): loop devices and their backing files, from its JSON output."""

from __future__ import annotations

import json

FIELDS = "NAME,BACK-FILE,SIZELIMIT,OFFSET,AUTOCLEAR,RO"


def parse(text):
    if not text.strip():
        return []
    devices = []
    for entry in json.loads(text).get("loopdevices") or []:
        devices.append({
            "name": entry.get("name"),
            # The kernel appends " (deleted)" when the backing file was unlinked.
            "back_file": (entry.get("back-file") or "").replace(" (deleted)", ""),
            "autoclear": bool(entry.get("autoclear")),
            "read_only": bool(entry.get("ro")),
        })
    return devices


def list_devices(runner):
    return parse(runner.run(["losetup", "--list", "-J", "-O", FIELDS]).stdout)


def devices_for(runner, back_file):
    return [d for d in list_devices(runner) if d["back_file"] == back_file]


def refresh_capacity(runner, device):
    """Make the loop device see its grown backing file (losetup -c)."""
    runner.run(["losetup", "--set-capacity", device])


def attach(runner, image, readonly=False):
    """Attach ``image`` to the first free loop device (``readonly``: no write can reach it); its name."""
    return runner.run(["losetup", "--find", "--show"] + (["--read-only"] if readonly else []) + [image]).stdout.strip()


def detach(runner, device):
    runner.run(["losetup", "--detach", device])
