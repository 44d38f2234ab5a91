# SPDX-License-Identifier: GPL-3.0-or-later
"""Repository flows against a fake host: exact argv, and no key in any argv, ever."""

import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs

from ...conftest import FakeRunner, fixture_text

SECRET = "random-key-material-Zq8vR2mX5tL9pW3yK7bN1cF4dG6hJ0sA"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def host(tmp_path, monkeypatch):
    datastore = tmp_path / "datastore"
    (datastore / "repositories").mkdir(parents=True)
    layout = _repository.Layout(str(datastore), state_dir=str(tmp_path / "state"))
    monkeypatch.setattr(_repository.Layout, "check_datastore", lambda self: None)
    # Subvolumes become plain directories; everything else is a recorded command.
    monkeypatch.setattr(_btrfs, "subvolume_create", lambda runner, path: (os.mkdir(path),
                                                                          runner.run(["btrfs", "subvolume", "create",
                                                                                      path])))
    monkeypatch.setattr(_btrfs, "is_subvolume", os.path.isdir)
    runner = FakeRunner()
    runner.answer(["losetup", "--find", "--show"], "/dev/loop7\n")
    runner.answer(["losetup", "--list"], '{"loopdevices": []}')
    runner.answer(["findmnt"], "", rc=1)
    runner.answer(["cryptsetup", "isLuks"], "", rc=1)
    runner.silent(["btrfs", "subvolume", "create"], ["cryptsetup", "luksFormat"], ["cryptsetup", "open"],
                  ["cryptsetup", "close"], ["mkfs.ext4"], ["losetup", "--detach"], ["truncate"], ["chattr"])
    return layout, runner


def no_secret_in_argv(runner, *secrets):
    for argv in runner.calls:
        for secret in secrets:
            assert not any(secret in arg for arg in argv), argv


def test_create_runs_exact_commands_and_keeps_the_key_on_stdin(host):
    layout, runner = host
    key = _repository.key_from(key=SECRET)
    result = _luks_repo.converge_repo(runner, layout, "marketing", state="present", size="256M", key=key)
    assert [a["action"] for a in result["actions"]] == [
        "record", "create-subvolume", "create-image", "format", "ready"]
    guid = result["repository"]["guid"]
    image = layout.image(guid)
    observing = (["losetup", "--list"], ["cryptsetup", "isLuks"])
    changing = [c for c in runner.calls if c[0] not in ("findmnt", "lsblk", "tune2fs") and c[:2] not in observing]
    assert changing == [
        ["btrfs", "subvolume", "create", layout.subvolume(guid)],
        ["cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2",
         "--pbkdf-force-iterations", "1000", "--hash", "sha256", "--key-file=-", image],
        ["losetup", "--find", "--show", image],
        ["cryptsetup", "open", "--type", "luks2", "--key-file=-", "/dev/loop7", "lockbox-" + guid],
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "lockbox", "-E",
         "lazy_itable_init=1,lazy_journal_init=1,nodiscard", "/dev/mapper/lockbox-" + guid],
        ["cryptsetup", "close", "lockbox-" + guid],
        ["losetup", "--detach", "/dev/loop7"],
    ]
    assert os.path.getsize(image) == 256 * 1024 ** 2
    assert os.stat(image).st_blocks == 0  # sparse
    assert result["repository"]["network_id"] == 2816
    assert result["repository"]["subnet"] == "127.0.11.0/26"
    no_secret_in_argv(runner, SECRET)
    assert SECRET.encode() in runner.stdins
    assert SECRET not in repr(result)


def test_check_mode_plans_without_touching_anything(host):
    layout, runner = host
    result = _luks_repo.converge_repo(runner, layout, "marketing", state="opened", size="1G",
                                      key=_repository.key_from(passphrase=PASSPHRASE), check_mode=True)
    assert [a["action"] for a in result["actions"]] == [
        "record", "create-subvolume", "create-image", "format", "ready", "open", "mount"]
    assert os.listdir(layout.repositories) == []
    assert not os.path.exists(os.path.join(layout.state_dir, "repos", "marketing.json"))
    assert result["repository"] is None
    no_secret_in_argv(runner, PASSPHRASE)


def test_passphrase_formats_with_argon2id_and_never_reaches_argv(host):
    layout, runner = host
    _luks_repo.converge_repo(runner, layout, "notes", state="present", size="64M",
                             key=_repository.key_from(passphrase=PASSPHRASE))
    luks_format = next(c for c in runner.calls if c[:2] == ["cryptsetup", "luksFormat"])
    assert ["--pbkdf", "argon2id"] == luks_format[5:7]
    no_secret_in_argv(runner, PASSPHRASE, "correct", "staple")


def test_second_repository_gets_the_next_network_id(host):
    layout, runner = host
    key = _repository.key_from(key=SECRET)
    _luks_repo.converge_repo(runner, layout, "a", state="present", size="64M", key=key)
    second = _luks_repo.converge_repo(runner, layout, "b", state="present", size="64M", key=key)
    assert second["repository"]["network_id"] == 2880


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "a/b", "state": "present", "size": "1G"}, "not valid"),
    ({"name": "..", "state": "present", "size": "1G"}, "not valid"),
    ({"name": "it a", "state": "present", "size": "1G"}, "not valid"),
    ({"name": "it-a:f9", "state": "present", "size": "1G"}, "is a fork name"),
    ({"name": "x" * 65, "state": "present", "size": "1G"}, "too long"),
    ({"name": "a:b", "state": "present", "size": "1G"}, "fork name"),
    ({"name": "a", "state": "present", "size": "1M"}, "below the minimum"),
    ({"name": "a", "state": "present", "size": "0"}, "greater than zero"),
    ({"name": "a", "state": "present", "size": "1Q"}, "not a size"),
    ({"name": "a", "state": "present"}, "size is required"),
    ({"name": "a", "state": "weird", "size": "1G"}, "state must be"),
    ({"name": "ghost", "state": "opened"}, "unknown repository 'ghost': there is nothing to open"),
    ({"name": "ghost", "state": "closed"}, "unknown repository 'ghost': there is nothing to close"),
    ({"name": "a", "state": "present", "size": "1048576"}, "size 1048576 (1 MiB) is below the minimum"),
])
def test_bad_input_changes_nothing(host, kwargs, message):
    layout, runner = host
    with pytest.raises(InvalidInput) as err:
        _luks_repo.converge_repo(runner, layout, key=_repository.key_from(key=SECRET), **kwargs)
    assert message in err.value.msg
    assert os.listdir(layout.repositories) == []
    assert not any(c[0] in ("cryptsetup", "btrfs", "mkfs.ext4") for c in runner.calls)


def test_key_sources(tmp_path):
    with pytest.raises(InvalidInput, match="only one"):
        _repository.key_from(key="a", passphrase="b")
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"k" * 64)
    loose.chmod(0o644)
    with pytest.raises(InvalidInput, match="mode 0600"):
        _repository.key_from(key_file=str(loose))
    loose.chmod(0o600)
    key = _repository.key_from(key_file=str(loose))
    assert key.material == b"k" * 64 and key.kind == "key"
    assert "k" * 8 not in repr(key)
    with pytest.raises(InvalidInput, match="does not exist"):
        _repository.key_from(key_file=str(tmp_path / "missing"))
    assert _repository.key_from() is None


def test_opening_a_closed_repository_observes_once_and_the_report_runs_no_command(host):
    layout, runner = host
    key = _repository.key_from(key=SECRET)
    _luks_repo.converge_repo(runner, layout, "notes", state="present", size="64M", key=key)
    del runner.calls[:]
    # The filesystem fills its mapping (as recorded from a 240 MiB repository): nothing to grow.
    runner.answer(["tune2fs", "-l"], fixture_text("tune2fs_repo.txt"))
    runner.answer(["lsblk"], '{"blockdevices": [{"path": "/dev/mapper/x", "size": %d, "fstype": "ext4", '
                  '"type": "crypt"}]}' % (61440 * 4096))
    runner.silent(["mount"])
    result = _luks_repo.converge_repo(runner, layout, "notes", state="opened", key=key)
    guid = result["repository"]["guid"]
    assert [a["action"] for a in result["actions"]] == ["open", "mount"]
    # Planning asks once which loop devices hold the image; the open needs no key test of its
    # own (cryptsetup open says when the key is wrong) and the after-report asks nothing.
    assert runner.calls == [
        ["losetup", "--list", "-J", "-O", "NAME,BACK-FILE,SIZELIMIT,OFFSET,AUTOCLEAR,RO"],
        ["losetup", "--find", "--show", layout.image(guid)],
        ["cryptsetup", "open", "--type", "luks2", "--key-file=-", "/dev/loop7", "lockbox-" + guid],
        ["tune2fs", "-l", "/dev/mapper/lockbox-" + guid],
        ["lsblk", "-J", "-b", "-d", "-o", "PATH,SIZE,FSTYPE,TYPE", "/dev/mapper/lockbox-" + guid],
        ["mount", "-o", "noatime", "/dev/mapper/lockbox-" + guid, layout.mount(guid)],
    ]
