# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write-only repository secrets: names, where they reach containers, and when a write is allowed.

A secret is written, never read back: ``get`` answers with the SHA-256 digest of the value.
Overwriting a value needs proof of the previous one (``current``, compared by digest) or an
explicit rotation, so nobody (human or agent) replaces a credential by accident.
"""

from __future__ import annotations

import hashlib
import re

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError

KEY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MODES = ("env", "file")
ENV_PREFIX = "REDIACC_SECRET_"
# File secrets live here, per networkId, on tmpfs (/var/run is /run): never on any disk.
SECRETS_ROOT = "/var/run/rediacc/secrets"
SECRETS_DIR_VARIABLE = "REDIACC_SECRETS_DIR"
VALUE_MAX = 64 * 1024
# ${REDIACC_SECRET_KEY}, $REDIACC_SECRET_KEY and the ${VAR:-default} forms compose knows.
_REFERENCE = re.compile(r"\$\{?" + ENV_PREFIX + r"([A-Za-z0-9_]+)")

CREATE, UNCHANGED, OVERWRITE, ROTATE = "created", "unchanged", "overwritten", "rotated"


def check_key(key):
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput("secret key %r is not valid: use A-Z, 0-9 and '_', starting with a letter, at most 64 "
                           "characters (it becomes %s<KEY>)" % (key, ENV_PREFIX))
    return key


def check_value(value):
    if not isinstance(value, str):
        raise InvalidInput("a secret's value must be a string")
    if "\0" in value:
        raise InvalidInput("a secret's value must not contain a NUL byte")
    if len(value.encode()) > VALUE_MAX:
        raise InvalidInput("a secret's value is too long (%d bytes, at most %d)" % (len(value.encode()), VALUE_MAX))
    return value


def check_secret_mode(mode):
    if mode not in MODES:
        raise InvalidInput("secret mode %r is not valid: env or file" % (mode,))
    return mode


def digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def env_variable(key):
    return ENV_PREFIX + key


def referenced_keys(text):
    """Keys named by ${REDIACC_SECRET_<KEY>} references in a compose file's text, in order, once each."""
    found = []
    for key in _REFERENCE.findall(text or ""):
        if key not in found:
            found.append(key)
    return found


def directory(network_id, root=SECRETS_ROOT):
    return "%s/%d" % (root, network_id)


def file_path(network_id, key):
    return "%s/%s" % (directory(network_id), key)


class SecretConflict(LockboxError):
    """A write that would replace a value without proof of the previous one. ``next`` says what to do."""

    def __init__(self, msg, next_options):
        super().__init__(msg)
        self.next = {"options": next_options}

    def as_result(self):
        result = super().as_result()
        result["next"] = self.next
        return result


def _next_options(repository, key, mode):
    mode_arg = " --mode file" if mode == "file" else ""
    module_mode = ", mode: file" if mode == "file" else ""
    return [
        {"why": "you know the value it has now",
         "run": "renet secret set %s %s%s --current-file <file holding the value it has now> "
                "< <file holding the new value>" % (repository, key, mode_arg),
         "ansible": "lockbox.fleet.repo_secret: {repository: %s, key: %s%s, value: <new>, current: <now>}"
                    % (repository, key, module_mode)},
        {"why": "you do not know it (recorded as a rotation)",
         "run": "renet secret set %s %s%s --rotate < <file holding the new value>" % (repository, key, mode_arg),
         "ansible": "lockbox.fleet.repo_secret: {repository: %s, key: %s%s, value: <new>, rotate: true}"
                    % (repository, key, module_mode)},
    ]


def decide(repository, key, stored, value, mode, *, current=None, rotate=False):
    """What setting ``key`` to ``value`` does: CREATE, UNCHANGED, OVERWRITE or ROTATE; SecretConflict if refused.

    ``stored`` is the stored entry (with ``digest`` and ``mode``) or None. ``current`` None
    means not given; "" claims there is no value yet.
    """
    if current is not None and rotate:
        raise InvalidInput("current and rotate are mutually exclusive: prove the previous value, or rotate")
    new = digest(value)
    if stored is None:
        if current:
            raise SecretConflict("secret %s of %s does not exist, but a current value was given: check the key "
                                 "and the repository" % (key, repository), _next_options(repository, key, mode))
        return CREATE
    if stored["digest"] == new and stored["mode"] == mode:
        return UNCHANGED
    if rotate:
        return ROTATE
    if current is None:
        raise SecretConflict("secret %s of %s already has a value: overwriting it needs the value it has now "
                             "(current) or an explicit rotation (rotate)" % (key, repository),
                             _next_options(repository, key, mode))
    if digest(current) != stored["digest"]:
        raise SecretConflict("secret %s of %s: the current value given does not match the stored one (digest "
                             "%s...); nothing was changed" % (key, repository, stored["digest"][:12]),
                             _next_options(repository, key, mode))
    return OVERWRITE
