# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small files lockbox owns on hosts: read if present, replace atomically."""

from __future__ import annotations

import os


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path, content, mode=0o644):
    """Replace ``path`` in one step, so a crash never leaves half a file; creates its directory."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    temporary = path + ".lockbox-tmp"
    with open(temporary, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def write_if_changed(path, content, mode=0o644):
    """True when the file had to be written."""
    if read_text(path) == content:
        return False
    write_atomic(path, content, mode)
    return True
