# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's audit log: which daemon events are the user's, the lines written, following again."""

import json
import stat

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_audit as _audit

from ...conftest import fixture_text


def _events():
    """Events of a user's daemon recorded in a guest (docker_api_events_hub.jsonl, see fixtures/README.md)."""
    return [json.loads(line) for line in fixture_text("docker_api_events_hub.jsonl").splitlines() if line.strip()]


def test_the_user_s_container_and_image_events_are_recorded_and_the_hub_s_own_are_not():
    records = [r for r in (_audit.daemon_record(e, "alice", 32768, "hub-alice") for e in _events()) if r]
    actions = [(r["type"], r["action"]) for r in records]
    assert ("container", "create") in actions and ("container", "start") in actions
    assert ("container", "destroy") in actions and ("container", "exec_start") in actions
    assert all(r["attrs"].get("name") != "hub-alice" for r in records if r["type"] == "container")
    assert all(action in _audit.CONTAINER_ACTIONS | _audit.IMAGE_ACTIONS for _t, action in actions)
    assert all(set(r) == {"ts", "user", "net_id", "type", "action", "resource", "attrs"} for r in records)
    exec_start = next(r for r in records if r["action"] == "exec_start")
    assert exec_start["attrs"]["command"] == "echo audited"
    hub_own = [e for e in _events() if (e.get("Actor") or {}).get("Attributes", {}).get("name") == "hub-alice"]
    assert hub_own, "the recording holds events of the Hub's own container"


def test_lines_are_json_one_file_per_user_root_only(tmp_path):
    log = _audit.AuditLog(str(tmp_path / "hub"))
    log.hub_event("alice", "login", admin=False)
    log.hub_event("-", "login-denied", reason="the state does not match")
    log.write({"ts": "t", "user": "alice", "type": "container", "action": "start"})
    alice = (tmp_path / "hub" / "alice.log").read_text().splitlines()
    assert [json.loads(line)["action"] for line in alice] == ["login", "start"]
    assert json.loads((tmp_path / "hub" / "_hub.log").read_text())["attrs"]["reason"] == "the state does not match"
    assert stat.S_IMODE((tmp_path / "hub" / "alice.log").stat().st_mode) == 0o640


class StreamRunner:
    """A daemon's /events: each call sends one batch's events from ``since`` on (as dockerd does), then breaks."""

    def __init__(self, batches):
        self.batches, self.paths = list(batches), []

    def api_stream(self, socket_path, path):
        self.paths.append(path)
        since = int(path.split("since=", 1)[1].split("&", 1)[0])
        batch = self.batches.pop(0) if self.batches else []
        yield from (event for event in batch if event["time"] >= since)
        raise LockboxError("GET /events: the stream broke")


def test_following_again_after_the_daemon_restarts_writes_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(_audit, "RETRY_SECONDS", 0)
    events = [e for e in _events() if _audit.daemon_record(e, "alice", 32768, "hub-alice")]
    runner = StreamRunner([events[:2], events])  # after the restart the daemon repeats from `since`
    log = _audit.AuditLog(str(tmp_path))
    who = {"user": "alice", "network_id": 32768, "socket": "/var/run/rediacc/docker-32768.sock",
           "container": "hub-alice"}
    _audit.follow(runner, who, log, lambda: len(runner.paths) < 2, since=events[0]["time"])
    written = [json.loads(line) for line in (tmp_path / "alice.log").read_text().splitlines()]
    assert len(written) == len(events)
    assert len(runner.paths) == 2 and "since=%d" % events[1]["time"] in runner.paths[1]
