# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""systemd: unit names, unit files and systemctl."""

from __future__ import annotations

import posixpath

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, remove_file, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._core.text import key_values

UNIT_DIR = "/etc/systemd/system"
_UNIT_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def escape_path(path):
    """The unit-name form of a path, as ``systemd-escape --path`` prints it."""
    trimmed = posixpath.normpath(path).strip("/")
    if not trimmed:
        return "-"
    out = []
    for index, byte in enumerate(trimmed.encode("utf-8")):
        char = chr(byte)
        if char == "/":
            out.append("-")
        elif char in _UNIT_SAFE and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.append("\\x%02x" % byte)
    return "".join(out)


def mount_unit_name(where):
    return escape_path(where) + ".mount"


def parse_show(text):
    """``systemctl show -p A,B`` prints A=value lines."""
    return key_values(text)


def unit_status(runner, unit):
    props = parse_show(runner.run(
        ["systemctl", "show", unit, "-p", "LoadState,ActiveState,SubState,FragmentPath,UnitFileState"]).stdout)
    return {
        "loaded": props.get("LoadState") == "loaded",
        "active": props.get("ActiveState") == "active",
        "enabled": props.get("UnitFileState") == "enabled",
        "fragment": props.get("FragmentPath") or None,
    }


def read_unit_file(unit):
    return read_text(posixpath.join(UNIT_DIR, unit))


def write_unit_file(unit, content):
    write_atomic(posixpath.join(UNIT_DIR, unit), content)


def remove_unit_file(unit):
    remove_file(posixpath.join(UNIT_DIR, unit))


def systemctl(runner, *args):
    runner.run(["systemctl", *args])


def is_active(runner, unit):
    """``systemctl is-active``: active, inactive, failed, ... (rc 3/4 are answers, not failures)."""
    return runner.run(["systemctl", "is-active", unit], ok_rcs=(0, 3, 4)).stdout.strip()


def _unit_text(value, what):
    text = str(value)
    if any(char in text for char in "\n\r\0"):
        raise InvalidInput("%s must be one line of text, got %r" % (what, text[:80]))
    return text


def quote_exec_arg(value):
    """One argument of an Exec*= line, taken literally (no $VAR expansion, no %-specifiers)."""
    text = _unit_text(value, "a command argument").replace("\\", "\\\\").replace('"', '\\"')
    return '"%s"' % text.replace("$", "$$").replace("%", "%%")


def quote_environment(name, value):
    """``Environment=`` value for one variable, taken literally."""
    text = "%s=%s" % (_unit_text(name, "a variable name"), _unit_text(value, "the value of %s" % name))
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def check_calendar(runner, expression):
    """systemd's own verdict on a calendar expression (OnCalendar=); a clear error when it is not one."""
    result = runner.run(["systemd-analyze", "calendar", "--", expression], ok_rcs=(0, 1))
    if result.rc != 0:
        raise InvalidInput("schedule %r is not a systemd calendar expression: %s"
                           % (expression, (result.stderr or result.stdout).strip()[-300:]))
