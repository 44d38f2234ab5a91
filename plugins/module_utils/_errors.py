# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type every lockbox.fleet operation raises."""

from __future__ import annotations


class LockboxError(Exception):
    """A failed operation: what went wrong, and the command that failed if any.

    ``cmd`` never holds a secret: secrets travel on stdin or in root-only files.
    """

    def __init__(self, msg, cmd=None, rc=None, stdout=None, stderr=None):
        super().__init__(msg)
        self.msg = msg
        self.cmd = list(cmd) if cmd is not None else None
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def as_result(self):
        """Keyword arguments for AnsibleModule.fail_json (only the parts that are set)."""
        result = {"msg": self.msg}
        for key in ("cmd", "rc", "stdout", "stderr"):
            value = getattr(self, key)
            if value is not None:
                result[key] = value
        return result


class InvalidInput(LockboxError):
    """The caller asked for something that cannot be done; nothing was changed."""
