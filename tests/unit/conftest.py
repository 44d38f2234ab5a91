# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit-test wiring: import the collection from .build/collections and replay tools.

Unit tests never touch the host: every external command is answered by a FakeRunner
from output recorded in a real trixie test guest (tests/unit/fixtures/).
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
if not (COLLECTIONS / "ansible_collections" / "lockbox" / "fleet").exists():
    raise RuntimeError("run scripts/setup first: it links the collection into %s" % COLLECTIONS)
sys.path.insert(0, str(COLLECTIONS))

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_text(name):
    return (FIXTURES / name).read_text()


class FakeRunner:
    """Answers argv lists from a table of (argv prefix -> (rc, stdout)); records calls; fails on any other."""

    def __init__(self, answers=None):
        self.answers = list(answers or [])
        self.calls = []
        self.stdins = []

    def answer(self, prefix, stdout="", rc=0):
        self.answers.insert(0, (list(prefix), rc, stdout))

    def silent(self, *prefixes):
        """Commands that print nothing when they succeed (as recorded), answered with rc 0."""
        for prefix in prefixes:
            self.answer(prefix)

    def run(self, argv, stdin=None, ok_rcs=(0,), env=None, cwd=None):
        from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
        from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import CommandResult
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        self.stdins.append(stdin)
        for prefix, rc, stdout in self.answers:
            if argv[:len(prefix)] == prefix:
                if rc not in ok_rcs:
                    raise LockboxError("%s failed" % argv[0], cmd=argv, rc=rc, stdout=stdout, stderr="")
                return CommandResult(argv, rc, stdout, "")
        # A command nobody recorded an answer for is a test that does not know what it runs.
        raise AssertionError("FakeRunner has no recorded answer for %r" % (argv,))

    def answer_api(self, socket_path, method, path, data=None, status=200):
        """A recorded API answer; status None: nothing listens on the socket."""
        self.answer(["api", socket_path, method, path], data, rc=status)

    def api(self, socket_path, method, path, ok_statuses=(200,), timeout=60.0, body=None):  # noqa: PLR0917
        from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
        from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import ApiResult
        request = ["api", socket_path, method, path]
        self.calls.append(request)
        self.stdins.append(body)
        for prefix, status, data in self.answers:
            if request == prefix:
                if status is None:
                    raise LockboxError("%s %s: nothing answers on %s" % (method, path, socket_path), cmd=request)
                if status not in ok_statuses:
                    # the real runner's message: dockerd's own "message" follows
                    detail = data.get("message") if isinstance(data, dict) else data
                    raise LockboxError("%s %s on %s failed (HTTP %d): %s" % (method, path, socket_path, status, detail),
                                       cmd=request, rc=status)
                return ApiResult(request, status, data)
        raise AssertionError("FakeRunner has no recorded answer for %r" % (request,))


@pytest.fixture
def fake_runner():
    return FakeRunner()
