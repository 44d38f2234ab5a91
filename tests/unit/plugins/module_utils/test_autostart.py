# SPDX-License-Identifier: GPL-3.0-or-later
"""repo_autostart and reconcile: the mark checked and kept, and which repositories come up."""

import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import machine_status as _machine_status
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_autostart as _autostart
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository

from ...conftest import FakeRunner

BASE = {"guid": "11111111-1111-4111-8111-111111111111", "network_id": 2816, "subnet": "127.0.11.0/26",
        "size": 67108864, "key_kind": "key", "status": "ready", "is_fork": False, "parent": None, "parent_guid": None}


def _guid(n):
    return "%d" % n * 8 + "-1111-4111-8111-111111111111"


@pytest.fixture
def host(tmp_path):
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    (tmp_path / "state" / "repos").mkdir(parents=True)
    key = tmp_path / "shop.key"
    key.write_bytes(b"autostart-test-key")
    key.chmod(0o600)
    return layout, tmp_path, str(key)


def put(tmp_path, name, **fields):
    record = dict(BASE, name=name, **fields)
    (tmp_path / "state" / "repos" / ("%s.json" % name)).write_text(json.dumps(record))
    return record


def record(tmp_path, name):
    return json.loads((tmp_path / "state" / "repos" / ("%s.json" % name)).read_text())


def test_the_mark_is_set_once_with_a_key_that_opens_the_repository(host):
    layout, tmp_path, key = host
    put(tmp_path, "shop")
    runner = FakeRunner()
    runner.silent(["cryptsetup", "open", "--test-passphrase"])
    result = _autostart.converge(runner, layout, "shop", state="present", key_file=key)
    assert result["changed"] and record(tmp_path, "shop")["autostart"] == {"key_file": key}
    assert runner.calls == [["cryptsetup", "open", "--test-passphrase", "--type", "luks2", "--key-file=-",
                             layout.image(BASE["guid"])]]
    assert runner.stdins == [b"autostart-test-key"]
    assert not _autostart.converge(runner, layout, "shop", state="present", key_file=key)["changed"]
    gone = _autostart.converge(FakeRunner(), layout, "shop", state="absent")
    assert gone["changed"] and "autostart" not in record(tmp_path, "shop")


def test_a_key_file_others_can_read_or_a_wrong_key_is_refused(host):
    layout, tmp_path, key = host
    put(tmp_path, "shop")
    os.chmod(key, 0o640)
    with pytest.raises(InvalidInput, match="owned by root with mode 0600"):
        _autostart.converge(FakeRunner(), layout, "shop", state="present", key_file=key)
    os.chmod(key, 0o600)
    wrong = FakeRunner()
    wrong.answer(["cryptsetup", "open", "--test-passphrase"], rc=2)
    with pytest.raises(LockboxError, match="wrong key"):
        _autostart.converge(wrong, layout, "shop", state="present", key_file=key)
    with pytest.raises(InvalidInput, match="needs key_file"):
        _autostart.converge(FakeRunner(), layout, "shop", state="present")
    with pytest.raises(InvalidInput, match="does not exist"):
        _autostart.converge(FakeRunner(), layout, "shop", state="present", key_file=key + ".gone")
    assert "autostart" not in record(tmp_path, "shop")


def test_at_boot_the_marked_and_the_wanted_come_up_and_the_others_stay_closed(host, monkeypatch):
    layout, tmp_path, key = host
    put(tmp_path, "marked", guid=_guid(1), autostart={"key_file": key})
    put(tmp_path, "closed", guid=_guid(2))
    put(tmp_path, "running", guid=_guid(3))
    put(tmp_path, "downed", guid=_guid(4))
    put(tmp_path, "broken", guid=_guid(5), status="creating", autostart={"key_file": key})
    mounted = {layout.mount(_guid(3)), layout.mount(_guid(4)), layout.datastore}
    monkeypatch.setattr(_machine_status.os.path, "ismount", lambda path: path in mounted)
    monkeypatch.setattr(_machine_status._repo_app, "read_stamp",
                        lambda mount: {"network_id": 1} if mount == layout.mount(_guid(3)) else None)
    brought = []

    def converge_app(runner, layout_, name, *, state, key=None, check_mode=False):
        brought.append((name, state, key.material if key else None))
        return {"actions": [{"action": "up"}]}
    monkeypatch.setattr(_machine_status._repo_app, "converge_app", converge_app)
    guarded = []
    monkeypatch.setattr(_machine_status._loopback_net, "converge_network",
                        lambda runner, name, **kw: guarded.append(name) or {"actions": []})
    monkeypatch.setattr(_machine_status._routes, "load_settings", lambda: None)
    daemon_gone = FakeRunner()
    daemon_gone.answer_api("/var/run/rediacc/docker-2816.sock", "GET", "/version", status=None)
    said = []
    lock = str(tmp_path / "run" / "reconcile.lock")
    assert _machine_status.reconcile(daemon_gone, layout, said.append, boot=True, lock=lock) == 0
    assert brought == [("marked", "up", b"autostart-test-key"), ("running", "up", None)]
    assert said == ["renet reconcile: marked: up", "renet reconcile: running: up"]
    brought.clear()
    assert _machine_status.reconcile(daemon_gone, layout, said.append, lock=lock) == 0
    assert brought == [("running", "up", None)] and guarded == []  # the timer: only what is wanted up now
    # Its daemon answering: the guard is converged, up() is not run again (a stopped container stays).
    brought.clear()
    daemon_up = FakeRunner()
    daemon_up.answer_api("/var/run/rediacc/docker-2816.sock", "GET", "/version", {"Version": "26.1.5"})
    assert _machine_status.reconcile(daemon_up, layout, said.append, lock=lock) == 0
    assert brought == [] and guarded == ["running"] and said[-1] == "renet reconcile: running: up"


def test_one_failure_does_not_stop_the_others_and_the_run_fails(host, monkeypatch):
    layout, tmp_path, key = host
    put(tmp_path, "a", guid=_guid(1), autostart={"key_file": key + ".gone"})
    put(tmp_path, "b", guid=_guid(2), autostart={"key_file": key})
    monkeypatch.setattr(_machine_status.os.path, "ismount", lambda path: path == layout.datastore)
    monkeypatch.setattr(_machine_status._repo_app, "converge_app",
                        lambda runner, layout_, name, **kw: {"actions": []})
    said = []
    assert _machine_status.reconcile(FakeRunner(), layout, said.append, boot=True,
                                     lock=str(tmp_path / "reconcile.lock")) == 1
    assert said[0].startswith("renet reconcile: a: FAILED: key_file") and said[1] == "renet reconcile: b: up"


def test_boot_waits_for_the_datastore_then_gives_up_clearly(host, monkeypatch):
    layout, tmp_path, _key = host
    monkeypatch.setattr(_machine_status.os.path, "ismount", lambda path: False)
    now = [0.0]
    with pytest.raises(LockboxError, match="is not mounted after 5 s"):
        _machine_status.reconcile(FakeRunner(), layout, print, boot=True, lock=str(tmp_path / "l"), wait=5,
                                  sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert now[0] == 5.0


def test_status_tells_a_closed_repository_from_one_wanted_up_whose_daemon_is_gone(host, monkeypatch):
    layout, tmp_path, key = host
    put(tmp_path, "closed", guid=_guid(1), autostart={"key_file": key})
    put(tmp_path, "broken", guid=_guid(2))
    monkeypatch.setattr(_machine_status._repository.os.path, "ismount", lambda path: path == layout.mount(_guid(2)))
    monkeypatch.setattr(_machine_status._repo_app, "read_stamp", lambda mount: {"network_id": 2816})
    runner = FakeRunner()
    runner.answer_api("/var/run/rediacc/docker-2816.sock", "GET", "/version", status=None)
    found = {r["name"]: r for r in _machine_status.status(runner, layout)["repositories"]}
    assert found["closed"]["autostart"] and not found["closed"]["mounted"] and found["closed"]["healthy"]
    assert found["broken"]["wanted_up"] and not found["broken"]["daemon"] and not found["broken"]["healthy"]
    assert runner.calls == [["api", "/var/run/rediacc/docker-2816.sock", "GET", "/version"]]
