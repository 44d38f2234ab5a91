# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A repository's own SSH key: a line in root's authorized_keys whose forced command is the sandbox gateway.

The line is built here from the key alone (type and base64; the caller's options and comment
are never copied), as ``restrict,pty,command="renet sandbox --repo NAME --guid GUID" TYPE KEY
lockbox-sandbox:NAME``: no forwarding of ports, agents or X11, no user rc, and whatever the
client asks to run becomes the session's command inside that repository's sandbox. The GUID
pins the key to this repository: a later repository of the same name is not reachable with it.

sshd uses the first line that matches a key, so a key that already opens a shell as root (a
line without our forced command) or the sandbox of another repository is refused: it would
either escape the sandbox or reach the wrong repository.
"""

from __future__ import annotations

import base64
import os
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state

AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
RENET = "/usr/local/bin/renet"
MARKER = "lockbox-sandbox:"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def parse_public_key(text):
    """(type, base64) of one OpenSSH public key; a clear error for anything else (options included)."""
    fields = (text or "").strip().split()
    if len(fields) < 2 or "\n" in (text or "").strip():
        raise InvalidInput("public_key must be one OpenSSH public key line: TYPE BASE64 [COMMENT]")
    kind, blob = fields[0], fields[1]
    if kind not in KEY_TYPES:
        raise InvalidInput("public_key type %r is not an SSH public key type (%s); key options such as command= "
                           "are set by lockbox, never taken from the key" % (kind[:40], ", ".join(KEY_TYPES)))
    if not _BASE64.fullmatch(blob):
        raise InvalidInput("public_key data is not base64")
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError as exc:
        raise InvalidInput("public_key data is not base64: %s" % exc) from exc
    length = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if raw[4:4 + length].decode("ascii", "replace") != kind:
        raise InvalidInput("public_key data does not hold a %s key" % kind)
    return kind, blob


def line_for(name, guid, kind, blob, renet=RENET):
    return 'restrict,pty,command="%s sandbox --repo %s --guid %s" %s %s %s%s' % (
        renet, name, guid, kind, blob, MARKER, name)


def _key_of(line):
    """(type, base64) of an authorized_keys line, options skipped (quoted values may hold spaces)."""
    fields = re.findall(r'(?:[^\s"]|"(?:\\.|[^"\\])*")+', line)
    for index, field in enumerate(fields[:-1]):
        if field in KEY_TYPES:
            return field, fields[index + 1]
    return None


def plan(lines, name, guid, key, state):
    """(new lines, changed, conflict message or None) for the authorized_keys ``lines``."""
    ours = [ln for ln in lines if ln.rstrip().endswith(" " + MARKER + name)]
    others = [ln for ln in lines if ln not in ours]
    if state == "absent":
        return others, bool(ours), None
    wanted = line_for(name, guid, *key)
    for line in others:
        if _key_of(line) == key:
            owner = line.rsplit(MARKER, 1)[1] if MARKER in line else None
            why = ("it already opens the sandbox of repository %s (one key per repository)" % owner if owner else
                   "it already logs in as root without the sandbox (sshd would use that line first)")
            return lines, False, "this key cannot be the sandbox key of %s: %s" % (name, why)
    return [*others, wanted], ours != [wanted], None


def run(_runner, params, check_mode=False, authorized_keys=AUTHORIZED_KEYS):
    """Entry point of lockbox.fleet.sandbox_key."""
    state_dir = params.get("state_dir") or _state.DEFAULT_STATE_DIR
    name, state = params["repository"], params.get("state") or "present"
    if state == "present":
        key = parse_public_key(params.get("public_key"))
        guid = _state.ready_record(state_dir, name)["guid"]
    else:
        _state.check_name(name)
        key, guid = None, None
    text = read_text(authorized_keys) or ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    new, changed, conflict = plan(lines, name, guid, key, state)
    if conflict:
        raise InvalidInput(conflict)
    if changed and not check_mode:
        os.makedirs(os.path.dirname(authorized_keys), mode=0o700, exist_ok=True)
        write_atomic(authorized_keys, "".join(ln + "\n" for ln in new), mode=0o600)
    result = {"changed": changed, "repository": name, "authorized_keys": authorized_keys}
    if state == "present":
        result["forced_command"] = "%s sandbox --repo %s --guid %s" % (RENET, name, guid)
    return result
