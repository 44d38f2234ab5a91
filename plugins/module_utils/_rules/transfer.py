# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Moving a repository's image between hosts: pure rules, no host state.

A copy is a read-only BTRFS snapshot of the repository's subvolume (its encrypted image: never
opened for the move), sent whole or as the difference from a base both hosts hold. A base is
common when the target holds a snapshot received from it: its ``received_uuid`` is the source
snapshot's ``uuid`` (what ``btrfs receive`` records). The newest such base gives the smallest
stream.
"""

from __future__ import annotations

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import size as _size

# Below this a limit would make a push of a real repository last days: surely a typo (10K for 10M).
MIN_BANDWIDTH = 64 * 1024


def common_base(local, remote):
    """The newest of ``local`` snapshots ({"name", "uuid", "time"}) that ``remote`` snapshots
    ({"received_uuid"}) were received from, or None (the copy is sent whole)."""
    received = {r.get("received_uuid") for r in remote if r.get("received_uuid")}
    shared = [s for s in local if s.get("uuid") and s["uuid"] in received]
    return max(shared, key=lambda s: (s["time"], s["name"])) if shared else None


def parse_bandwidth(value):
    """Bytes per second from ``10M``, ``1.5G``, ``512KiB`` or a number of bytes (per second); None: unlimited."""
    if value in (None, "", 0, "0"):
        return None
    rate = _size.parse_size(value, "bandwidth limit")
    if rate < MIN_BANDWIDTH:
        raise InvalidInput("bandwidth limit %r is %d bytes/s: at least %s/s (did you mean %sM?)"
                           % (value, rate, _size.format_size(MIN_BANDWIDTH), str(value).rstrip("KkBbi")))
    return rate


def progress(sent, total, elapsed):
    """{"sent", "total", "percent", "rate", "eta_seconds"} of a stream ``sent`` bytes into ``elapsed``
    seconds; ``total`` may be None (unknown: no percent, no ETA)."""
    rate = sent / elapsed if elapsed > 0 else 0.0
    out = {"sent": sent, "total": total, "rate": round(rate), "percent": None, "eta_seconds": None}
    if total:
        out["percent"] = round(min(100.0, 100.0 * sent / total), 1)
        if rate > 0:
            out["eta_seconds"] = max(0, round((total - sent) / rate))
    return out


def progress_line(name, report):
    """One line for a task's output or the host's terminal, such as
    ``devbox: 1.2 GiB of 2 GiB (60.0 %), 40 MiB/s, 20 s left``."""
    done = _size.format_size(report["sent"])
    if report["total"]:
        done += " of %s (%.1f %%)" % (_size.format_size(report["total"]), report["percent"])
    line = "%s: %s, %s/s" % (name, done, _size.format_size(report["rate"]))
    if report["eta_seconds"] is not None:
        line += ", %d s left" % report["eta_seconds"]
    return line
