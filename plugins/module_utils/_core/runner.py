# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs external tools in the C locale and turns failures into LockboxError.

Modules pass AnsibleModule.run_command; the host runtime uses subprocess. Secrets are
only ever handed over as ``stdin``, so the argv recorded in errors and logs is safe.
"""

from __future__ import annotations

import subprocess

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


class CommandResult:
    __slots__ = ("argv", "rc", "stderr", "stdout")

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


class Runner:
    """Executes argv lists. ``calls`` records every argv, for tests and reports."""

    def __init__(self, module=None):
        self._module = module
        self.calls = []

    def run(self, argv, stdin=None, ok_rcs=(0,), env=None, cwd=None):
        """``env`` adds to (never replaces) the environment; the C locale always wins."""
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        update = dict(env or {}, **C_LOCALE)
        if self._module is not None:
            rc, out, err = self._module.run_command(
                argv, data=stdin, binary_data=True, environ_update=update, cwd=cwd)
        else:
            import os
            data = stdin.encode() if isinstance(stdin, str) else stdin
            proc = subprocess.run(argv, input=data, capture_output=True, env=dict(os.environ, **update), cwd=cwd,
                                  check=False)
            rc = proc.returncode
            out = proc.stdout.decode(errors="replace")
            err = proc.stderr.decode(errors="replace")
        if rc not in ok_rcs:
            tool = argv[0].rsplit("/", 1)[-1]
            detail = (err or out or "").strip().splitlines()
            raise LockboxError(
                "%s failed (rc=%s): %s" % (tool, rc, detail[-1] if detail else "no output"),
                cmd=argv, rc=rc, stdout=out, stderr=err)
        return CommandResult(argv, rc, out, err)
