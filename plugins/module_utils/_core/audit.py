# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's audit trail: one JSON line per event in the journal (``journalctl -t lockbox-audit``).

Events name who asked (uid, login uid, the user sudo came from) and never carry a secret's
value: at most the first characters of its digest.
"""

from __future__ import annotations

import json
import os
import syslog

IDENTIFIER = "lockbox-audit"


def _login_uid():
    try:
        with open("/proc/self/loginuid") as handle:
            value = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return None if value == 4294967295 else value  # unset: a daemon or a boot-time service


def actor(environ=None):
    """Who is asking, as far as the host can tell."""
    environ = os.environ if environ is None else environ
    found = {"uid": os.getuid(), "login_uid": _login_uid()}
    if environ.get("SUDO_USER"):
        found["sudo_user"] = environ["SUDO_USER"]
    return found


def record(event, **fields):
    """Write one audit line; returns it (tests and callers may show it)."""
    line = dict(fields, event=event)
    line.setdefault("actor", actor())
    text = json.dumps(line, sort_keys=True)
    syslog.openlog(IDENTIFIER, 0, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_NOTICE, text)
    return line
