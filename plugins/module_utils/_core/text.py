# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Structured text output that tools print one ``key<separator>value`` per line."""

from __future__ import annotations


def key_values(text, separator="="):
    """Parse ``key=value`` (systemctl show, blkid -o export) or ``Key: value`` (tune2fs -l) lines."""
    fields = {}
    for line in text.splitlines():
        key, found, value = line.partition(separator)
        if found:
            fields[key.strip()] = value.strip()
    return fields
