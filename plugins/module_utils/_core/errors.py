# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one error type every lockbox.fleet operation raises."""

from __future__ import annotations


class LockboxError(Exception):
    """A failed operation: what went wrong, and the command that failed if any.

    ``cmd`` never holds a secret: secrets travel on stdin or in root-only files.
    """

    def __init__(self, msg, cmd=None, rc=None, stdout=None, stderr=None, actions=None):  # noqa: PLR0917
        super().__init__(msg)
        self.msg = msg
        self.actions = actions  # what had already been done when it failed (reported, never undone silently)
        self.cmd = list(cmd) if cmd is not None else None
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def as_result(self):
        """Keyword arguments for AnsibleModule.fail_json (only the parts that are set)."""
        result = {"msg": self.msg}
        for key in ("cmd", "rc", "stdout", "stderr", "actions"):
            value = getattr(self, key)
            if value is not None:
                result[key] = value
        return result


class InvalidInput(LockboxError):
    """The caller asked for something that cannot be done; nothing was changed."""


def with_actions_taken(exc, actions):
    """``exc`` reporting the steps already applied before it happened (a failure is never silent about them).

    Called at each layer on the way out; earlier layers' steps come first.
    """
    if actions:
        base = getattr(exc, "_base_msg", exc.msg)
        exc.actions = list(actions) + list(exc.actions or [])
        exc._base_msg = base
        exc.msg = "%s (already done: %s)" % (base, ", ".join(a["action"] for a in exc.actions))
        exc.args = (exc.msg,)
    return exc
