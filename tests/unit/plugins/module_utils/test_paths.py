# SPDX-License-Identifier: GPL-3.0-or-later
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.paths import check_absolute_path


@pytest.mark.parametrize("path, expected", [
    ("/mnt/rediacc", "/mnt/rediacc"), ("/mnt/rediacc/", "/mnt/rediacc"), ("//srv//data", "/srv/data"),
    ("/srv/./data", "/srv/data"), ("/var/lib/rediacc/datastore.pool", "/var/lib/rediacc/datastore.pool"),
])
def test_accepts_and_normalises(path, expected):
    assert check_absolute_path(path, "path") == expected


@pytest.mark.parametrize("path, reason", [
    ("relative/dir", "absolute"), ("", "non-empty"), (None, "non-empty"), ("/mnt/\0x", "NUL"),
    ("/mnt/../etc", "'..'"), ("/", "root directory"), ("/proc/self", "/proc"), ("/proc", "/proc"),
    ("/sys/fs", "/sys"), ("/dev/shm/x", "/dev"), ("/etc/rediacc", "/etc"), ("/usr/local/x", "/usr"),
    ("/run/x", "/run"), ("/mnt/" + "a" * 256, "too long"), ("/" + "a/" * 2100, "too long"),
])
def test_rejects_with_reason(path, reason):
    with pytest.raises(InvalidInput) as err:
        check_absolute_path(path, "path")
    assert reason in err.value.msg


def test_system_trees_allowed_when_asked():
    assert check_absolute_path("/dev/vdb", "device", allow_system=True) == "/dev/vdb"


def test_similar_prefix_is_not_a_system_tree():
    assert check_absolute_path("/processing", "path") == "/processing"


def test_two_writers_of_one_file_never_rename_each_other_s_temporary_away(tmp_path, monkeypatch):
    """The watchdog and a module both write the route file: a write that starts while another is half done."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._core import files as _files
    target = str(tmp_path / "routes.caddy")
    real_fsync, nested = os.fsync, []

    def fsync_with_a_second_writer(fd):
        real_fsync(fd)
        if not nested:
            nested.append(True)
            _files.write_atomic(target, "second\n")

    monkeypatch.setattr(os, "fsync", fsync_with_a_second_writer)
    _files.write_atomic(target, "first\n", mode=0o600)
    assert open(target).read() == "first\n" and os.stat(target).st_mode & 0o777 == 0o600
    assert os.listdir(str(tmp_path)) == ["routes.caddy"]  # no temporary left behind
