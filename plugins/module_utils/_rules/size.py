# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sizes as operators write them ("10G", "512MiB", "1.5 TB", 1073741824).

One rule for every module and the host runtime: a bare unit letter or ``<letter>iB``
is binary (K = 1024), ``<letter>B`` is decimal (KB = 1000), a plain number is bytes.
"""

from __future__ import annotations

import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput

_UNITS = "KMGTPE"
_SIZE_RE = re.compile(r"^\s*(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[KMGTPE]?)(?P<suffix>iB|B)?\s*$", re.IGNORECASE)
MIB = 1024 ** 2


def parse_size(value, what="size"):
    """Return the size in bytes; raise InvalidInput for anything else (0 included)."""
    if isinstance(value, bool):
        raise InvalidInput("%s must be a size such as 10G or 512MiB, not a boolean" % what)
    if isinstance(value, int):
        number = value
    else:
        text = str(value)
        match = _SIZE_RE.fullmatch(text)
        if not match or (match.group("suffix") == "iB" and not match.group("unit")):
            raise InvalidInput(
                "%s %r is not a size: use a number of bytes or a number with a unit "
                "(K, M, G, T, P; KiB… binary, KB… decimal), e.g. 10G or 512MiB" % (what, text))
        unit = match.group("unit").upper()
        suffix = match.group("suffix")
        base = 1000 if (unit and suffix and suffix.lower() == "b" and suffix != "iB") else 1024
        power = _UNITS.index(unit) + 1 if unit else 0
        number = int(float(match.group("num")) * base ** power)
    if number <= 0:
        raise InvalidInput("%s must be greater than zero, got %r" % (what, value))
    return number


def round_up(number, multiple=MIB):
    return -(-number // multiple) * multiple


def format_size(number):
    """Human form for messages: 1610612736 -> '1.5 GiB'."""
    value = float(number)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit)).replace(".0 ", " ")
        value /= 1024
    return "%d B" % number
