# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CRIU itself (dockerd runs it through runc for checkpoints; lockbox only prepares it)."""

from __future__ import annotations

import os
import re

# Where CRIU keeps what it learnt of the kernel (tmpfs: gone at reboot); every later run reads it.
KERNEL_CACHE = "/run/criu.kdat"


def learn_kernel(runner, cache=None):
    """Have CRIU probe the kernel once, from this (unguarded) process, when it has not yet.

    One probe connects a TCP socket to itself on 127.0.0.1: from a cgroup under a loopback
    guard it is refused, and CRIU fails ("criu failed: type RESTORE errno 0"). runc moves CRIU
    into the new container's cgroup for a restore (a repository's slice), and a Hub user's
    dockerd, and so CRIU, lives in the user's guarded slice. With the kernel's features
    cached, CRIU does not probe again until the next boot.
    """
    if not os.path.exists(cache or KERNEL_CACHE):
        runner.run(["criu", "check"])


# runc's error names CRIU's log and never says why; the log's own error lines do. A failed dump:
# "criu failed: type NOTIFY errno 0 path= /…/criu-dump.log" (containerd's copy in the bundle);
# a failed restore: "criu failed: type NOTIFY errno 0\nlog file: /…/work/restore.log".
_LOG_NAMED = re.compile(r"(?:path=|log file:)\s*(/[^\s:]+/(?:criu-)?(?:dump|restore)\.log)")
_LOG_ERROR = re.compile(r"^\(\s*[0-9.]+\)\s+(?:\d+:\s+)?Error\b")


def log_errors(message, limit=4, width=240):
    """The last error lines of the CRIU log a runc failure ``message`` names ('' when none)."""
    named = _LOG_NAMED.search(message or "")
    if not named or ".." in named.group(1).split("/"):
        return ""
    try:
        with open(named.group(1), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - (256 << 10)))  # a dump's log can be megabytes
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip()[:width] for line in lines if _LOG_ERROR.match(line)]
    return " | ".join(errors[-limit:])
