# SPDX-License-Identifier: GPL-3.0-or-later
import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner


class RecordingModule:
    def __init__(self, rc=0, out="", err=""):
        self.result = (rc, out, err)
        self.calls = []

    def run_command(self, args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def test_module_runner_uses_c_locale_and_passes_stdin_out_of_band():
    module = RecordingModule(out="ok")
    result = Runner(module).run(["cryptsetup", "open", "/dev/loop0", "x"], stdin=b"secret-key")
    args, kwargs = module.calls[0]
    assert args == ["cryptsetup", "open", "/dev/loop0", "x"]
    assert kwargs["data"] == b"secret-key" and kwargs["binary_data"] is True
    assert kwargs["environ_update"]["LC_ALL"] == "C"
    assert result.stdout == "ok"


def test_failure_becomes_one_typed_error_with_argv_and_stderr():
    module = RecordingModule(rc=32, err="mount: /mnt/x: wrong fs type.\n")
    with pytest.raises(LockboxError) as err:
        Runner(module).run(["mount", "/dev/loop0", "/mnt/x"], stdin=b"never-shown")
    assert err.value.msg == "mount failed (rc=32): mount: /mnt/x: wrong fs type."
    assert err.value.as_result() == {
        "msg": "mount failed (rc=32): mount: /mnt/x: wrong fs type.", "cmd": ["mount", "/dev/loop0", "/mnt/x"],
        "rc": 32, "stdout": "", "stderr": "mount: /mnt/x: wrong fs type.\n"}
    assert "never-shown" not in repr(err.value.as_result())


def test_subprocess_runner_runs_real_commands_in_c_locale():
    result = Runner().run(["sh", "-c", 'echo "$LC_ALL"; cat'], stdin="from-stdin")
    assert result.stdout == "C\nfrom-stdin"


def test_accepted_nonzero_rc():
    assert Runner().run(["sh", "-c", "exit 2"], ok_rcs=(0, 2)).rc == 2


def test_the_fake_runner_refuses_a_command_nobody_recorded():
    from ...conftest import FakeRunner
    runner = FakeRunner()
    runner.answer(["findmnt"], "{}")
    assert runner.run(["findmnt", "-J"]).stdout == "{}"
    with pytest.raises(AssertionError, match=r"no recorded answer for \['mkfs\.btrfs', '/dev/vdb'\]"):
        runner.run(["mkfs.btrfs", "/dev/vdb"])
