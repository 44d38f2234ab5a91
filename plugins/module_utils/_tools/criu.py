# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CRIU itself (dockerd runs it through runc for checkpoints; lockbox only prepares it)."""

from __future__ import annotations

import os

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
