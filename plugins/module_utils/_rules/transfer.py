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

import datetime
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import size as _size

# Below this a limit would make a push of a real repository last days: surely a typo (10K for 10M).
MIN_BANDWIDTH = 64 * 1024
_STAMP = "%Y%m%dT%H%M%SZ"
_SUFFIX = re.compile(r"^[0-9a-f]{6}$")
_SNAPSHOT = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def identity(snapshot):
    """What a ``btrfs send -p`` stream names its base by: the ``received_uuid`` of a snapshot that was
    itself received, else its ``uuid``."""
    return snapshot.get("received_uuid") or snapshot.get("uuid")


def common_base(local, remote):
    """The newest of ``local`` snapshots ({"name", "uuid", "received_uuid", "time"}) that the target
    holds too: one of ``remote`` ({"uuid", "received_uuid"}) is that snapshot or was received from
    it. None: the copy is sent whole. A snapshot received here can be the base of a copy back to
    where it came from (the stream names it by its ``received_uuid``)."""
    held = {r.get("received_uuid") for r in remote} | {r.get("uuid") for r in remote}
    held.discard(None)
    shared = [s for s in local if identity(s) and identity(s) in held]
    return max(shared, key=lambda s: (s["time"], s["name"])) if shared else None


def snapshot_name(moment, suffix):
    """``<UTC stamp>-<6 hex>``: sorts by time; the suffix keeps two hosts' names of one second apart."""
    if not _SUFFIX.fullmatch(suffix):
        raise InvalidInput("snapshot suffix %r is not 6 lowercase hex digits" % (suffix,))
    return "%s-%s" % (moment.astimezone(datetime.timezone.utc).strftime(_STAMP), suffix)


def check_snapshot_name(name):
    if not isinstance(name, str) or not _SNAPSHOT.fullmatch(name):
        raise InvalidInput("%r is not a transfer snapshot name (<UTC stamp>-<6 hex>)" % (name,))
    return name


def check_guid(guid):
    if not isinstance(guid, str) or not _GUID.fullmatch(guid):
        raise InvalidInput("%r is not a repository GUID" % (guid,))
    return guid


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
