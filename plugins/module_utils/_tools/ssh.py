# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""OpenSSH client: one host of the fleet asking another's ``renet transfer serve``.

The transfer key may run only that command on the target (``command=`` in its
authorized_keys line, docs/transfer.md); the words sent here reach it as
``SSH_ORIGINAL_COMMAND``. Host keys are checked against the transfer's own known_hosts,
never learnt on first use.
"""

from __future__ import annotations

import json
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.paths import check_absolute_path

TRANSFER_DIR = "/var/lib/rediacc/transfer"
IDENTITY = TRANSFER_DIR + "/id_ed25519"
KNOWN_HOSTS = TRANSFER_DIR + "/known_hosts"
# A host name or an IPv4/IPv6 address; never starting with '-' (an option to ssh).
_ADDRESS = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# rc of ssh itself (not of the remote command) when it could not connect or authenticate.
SSH_FAILED = 255


class Target:
    """Where a repository goes: an address the source reaches, the SSH port and user, this host's key."""

    def __init__(self, address, *, port=22, user="root", identity=IDENTITY, known_hosts=KNOWN_HOSTS):
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise InvalidInput("target address %r is not a host name or an IP address" % (address,))
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidInput("target port %r is not a TCP port (1-65535)" % (port,))
        if not isinstance(user, str) or not _USER.fullmatch(user):
            raise InvalidInput("target user %r is not a user name" % (user,))
        self.address = address.strip("[]")
        self.port = port
        self.user = user
        self.identity = check_absolute_path(identity, "identity")
        self.known_hosts = check_absolute_path(known_hosts, "known_hosts")

    def __str__(self):
        return "%s@%s port %d" % (self.user, self.address, self.port)

    def argv(self, words):
        return ["ssh", "-T", "-i", self.identity, "-p", str(self.port),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=" + self.known_hosts, "-o", "ConnectTimeout=15",
                # A target that vanishes mid-stream (powered off) ends the copy within 30 s.
                "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
                "%s@%s" % (self.user, self.address), "--"] + [str(w) for w in words]

    def explain(self, exc):
        """A LockboxError of ssh in the operator's words: unreachable, or what the target refused."""
        if exc.rc == SSH_FAILED:
            detail = (exc.stderr or exc.msg or "").strip().splitlines()
            return LockboxError("cannot reach the target %s over SSH: %s" % (self, detail[-1] if detail else exc.msg),
                                cmd=exc.cmd, rc=exc.rc, stderr=exc.stderr)
        detail = (exc.stderr or "").strip().splitlines()
        return LockboxError("the target %s refused: %s" % (self, detail[-1] if detail else exc.msg),
                            cmd=exc.cmd, rc=exc.rc, stderr=exc.stderr)


def call(runner, target, words, payload=None):
    """Run ``words`` on the target with ``payload`` as JSON on stdin; its JSON answer."""
    stdin = json.dumps(payload).encode() if payload is not None else b""
    try:
        out = runner.run(target.argv(words), stdin=stdin).stdout
    except LockboxError as exc:
        raise target.explain(exc) from None
    try:
        return json.loads(out)
    except ValueError:
        raise LockboxError("the target %s answered %r, not JSON: is renet on it the same version?"
                           % (target, out[:200])) from None
