# SPDX-License-Identifier: GPL-3.0-or-later
"""cryptsetup argv: keys only ever on stdin, KDF by key kind, wrong key recognised."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import cryptsetup as _cryptsetup

from ...conftest import FakeRunner, fixture_text

SECRET = b"s3cret-key-material-that-must-never-appear-in-argv"


def assert_secret_only_on_stdin(runner):
    for argv, stdin in zip(runner.calls, runner.stdins, strict=True):
        assert not any(SECRET.decode() in arg for arg in argv), argv
        assert "--key-file=-" in argv
        assert stdin == SECRET


def test_format_with_random_key_uses_fast_pbkdf2_and_stdin():
    runner = FakeRunner([(["cryptsetup"], 0, "")])  # silent on success, as recorded
    _cryptsetup.luks_format(runner, "/mnt/rediacc/repositories/g/disk.img", SECRET, "key")
    assert runner.calls == [[
        "cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2",
        "--pbkdf-force-iterations", "1000", "--hash", "sha256", "--key-file=-",
        "/mnt/rediacc/repositories/g/disk.img"]]
    assert_secret_only_on_stdin(runner)


def test_format_with_passphrase_keeps_argon2id():
    runner = FakeRunner([(["cryptsetup"], 0, "")])  # silent on success, as recorded
    _cryptsetup.luks_format(runner, "/x/disk.img", SECRET, "passphrase")
    assert runner.calls[0][5:8] == ["--pbkdf", "argon2id", "--iter-time"]
    assert_secret_only_on_stdin(runner)


def test_open_resize_and_key_check_read_the_key_from_stdin():
    runner = FakeRunner([(["cryptsetup"], 0, "")])  # silent on success, as recorded
    _cryptsetup.luks_open(runner, "/dev/loop3", "lockbox-g", SECRET)
    _cryptsetup.resize(runner, "lockbox-g", SECRET)
    _cryptsetup.check_key(runner, "/x/disk.img", SECRET)
    assert runner.calls == [
        ["cryptsetup", "open", "--type", "luks2", "--key-file=-", "/dev/loop3", "lockbox-g"],
        ["cryptsetup", "resize", "--key-file=-", "lockbox-g"],
        ["cryptsetup", "open", "--test-passphrase", "--type", "luks2", "--key-file=-", "/x/disk.img"],
    ]
    assert_secret_only_on_stdin(runner)


def test_wrong_key_is_a_clear_error_without_the_key():
    runner = FakeRunner([(["cryptsetup"], 0, "")])  # silent on success, as recorded
    runner.answer(["cryptsetup", "open"], "", rc=2)
    with pytest.raises(LockboxError) as err:
        _cryptsetup.luks_open(runner, "/dev/loop3", "lockbox-g", SECRET)
    assert err.value.msg.startswith("wrong key")
    assert SECRET.decode() not in repr(err.value.as_result())


def test_header_operations_need_no_key():
    runner = FakeRunner([(["cryptsetup"], 0, "")])  # silent on success, as recorded
    _cryptsetup.set_uuid(runner, "/x/disk.img", "3f0c4e8e-0000-4000-8000-000000000001")
    _cryptsetup.erase(runner, "/x/disk.img")
    _cryptsetup.luks_close(runner, "lockbox-g")
    assert runner.calls == [
        ["cryptsetup", "luksUUID", "--batch-mode", "--uuid", "3f0c4e8e-0000-4000-8000-000000000001", "/x/disk.img"],
        ["cryptsetup", "erase", "--batch-mode", "/x/disk.img"],
        ["cryptsetup", "close", "lockbox-g"],
    ]
    assert runner.stdins == [None, None, None]


def test_luks_dump_of_a_random_key_repository():
    dump = _cryptsetup.parse_dump(fixture_text("luksdump_random_key.json"))
    assert dump["keyslots"] == ["0"]
    assert dump["kdf"] == ["pbkdf2"]
    assert dump["segments"] == 1


def test_luks_dump_after_erase_has_no_keyslots():
    assert _cryptsetup.parse_dump(fixture_text("luksdump_erased.json"))["keyslots"] == []
