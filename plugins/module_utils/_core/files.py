# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small files lockbox owns on hosts: read if present, replace atomically."""

from __future__ import annotations

import os
import tempfile


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path, content, mode=0o644):
    """Replace ``path`` in one step, so a crash never leaves half a file; creates its directory.

    The temporary file has a name of its own: two writers of the same file (a module and the
    watchdog syncing routes) never rename each other's file away.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".lockbox-tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def remove_file(path):
    """Remove ``path``; one that is already gone is no error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_if_changed(path, content, mode=0o644):
    """True when the file had to be written."""
    if read_text(path) == content:
        return False
    write_atomic(path, content, mode)
    return True
