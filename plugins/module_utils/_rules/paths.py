# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Validation of host paths given by operators; one rule for every module."""

from __future__ import annotations

import posixpath

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput

# Kernel and system trees that must never become a datastore, mount point or image.
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/usr", "/bin", "/sbin",
                "/lib", "/lib32", "/lib64", "/libx32", "/var/run", "/var/lib/dpkg")
PATH_MAX = 4096
NAME_MAX = 255


def is_under(path, tree):
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def check_absolute_path(path, what, allow_system=False):
    """Return the normalised absolute path or raise InvalidInput explaining why not."""
    if not isinstance(path, str) or not path:
        raise InvalidInput("%s must be a non-empty absolute path" % what)
    if "\0" in path:
        raise InvalidInput("%s must not contain a NUL byte" % what)
    if not path.startswith("/"):
        raise InvalidInput("%s must be an absolute path, got %r" % (what, path))
    if len(path) > PATH_MAX or any(len(part) > NAME_MAX for part in path.split("/")):
        raise InvalidInput("%s is too long (at most %d characters, %d per component)" % (what, PATH_MAX, NAME_MAX))
    if ".." in path.split("/"):
        raise InvalidInput("%s must not contain '..' components, got %r" % (what, path))
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if not allow_system:
        if normal == "/":
            raise InvalidInput("%s must not be the root directory" % what)
        for tree in SYSTEM_TREES:
            if is_under(normal, tree):
                raise InvalidInput("%s %r is under the system tree %s; choose a path such as /mnt/rediacc"
                                   % (what, path, tree))
    return normal
