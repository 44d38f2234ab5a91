# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint names, restore order, and criu_checkpoint's calls to the repository's daemon."""

import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _checkpoint
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import checkpoint as _rules
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import criu as _criu_tool

from ...conftest import fixture_text

NETWORK_ID = 2880
SOCKET = "/var/run/rediacc/docker-%d.sock" % NETWORK_ID
COUNTER = next(c["Id"] for c in json.loads(fixture_text("docker_api_containers_counter.json"))
               if c["Names"] == ["/counter-counter-1"])


@pytest.mark.parametrize("name", ["ckpt-2026-11-24T10:00", "daily-backup", "v1.0.0", "pre_release_v2", "a",
                                  "x" * 100, "repo-down-old"])
def test_checkpoint_names_people_use_are_accepted(name):
    assert _rules.check_name(name, creating=True) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", ".hidden", "a/b", "/abs", "x y", "tab\there",
                                  "nul\0", "-dash", "x" * 101, "ünï", "a\nb", None, 7])
def test_names_that_could_leave_the_checkpoint_directory_are_refused(name):
    with pytest.raises(InvalidInput, match="not allowed"):
        _rules.check_name(name)


@pytest.mark.parametrize("name", ["repo-down", "fork-try"])
def test_lockbox_s_own_names_are_reserved_for_creation_only(name):
    with pytest.raises(InvalidInput, match="reserved"):
        _rules.check_name(name, creating=True)
    assert _rules.check_name(name) == name  # restore and delete take them


def test_restore_order_follows_depends_on_and_ignores_services_not_restored():
    order = _rules.restore_order(["web", "worker", "api"], {"web": ["api", "db"], "api": ["worker"], "worker": []})
    assert order == ["worker", "api", "web"]
    with pytest.raises(InvalidInput, match="cycle: a -> b -> a"):
        _rules.restore_order(["a", "b"], {"a": ["b"], "b": ["a"]})


def test_depends_on_is_read_from_compose_s_label():
    assert _checkpoint.depends_on_label("db:service_healthy:false,cache:service_started:true") == ["cache", "db"]
    assert _checkpoint.depends_on_label("") == [] and _checkpoint.depends_on_label(None) == []


def test_every_service_gets_the_repository_s_criu_config_and_a_user_cannot_choose_it():
    model = {"services": {"db": {"image": "x"}, "counter": {"image": "x", "labels": {"rediacc.checkpoint": "true"},
                                                            "annotations": {"org.example/owner": "me"}}}}
    out, _slots, _restart = _compose.rewrite(model, NETWORK_ID, {}, mount="/m", project_dir="/m/p", unsafe=False)
    config = {"org.criu.config": "/run/rediacc/criu/%d.conf" % NETWORK_ID}
    assert out["services"]["db"]["annotations"] == config
    assert out["services"]["counter"]["annotations"] == dict(config, **{"org.example/owner": "me"})
    hostile = {"services": {"x": {"image": "x", "annotations": {
        "org.criu.config": "/tmp/evil.conf", "org.systemd.property.Slice": "system.slice"}}}}
    problems, _foreign = _isolation.model_problems(hostile, "/m", "/m/p")
    assert problems == ["service x: annotation org.criu.config is read by the container runtime on the host "
                        "(systemd unit properties, CRIU configuration)",
                        "service x: annotation org.systemd.property.Slice is read by the container runtime on the "
                        "host (systemd unit properties, CRIU configuration)"]
    out, _slots, _restart = _compose.rewrite(hostile, NETWORK_ID, {}, mount="/m", project_dir="/m/p", unsafe=True)
    assert out["services"]["x"]["annotations"]["org.criu.config"] == config["org.criu.config"]  # even --unsafe


def test_the_criu_config_adds_restore_only_options_for_a_restore_and_never_for_a_dump(tmp_path, monkeypatch):
    machine = tmp_path / "runc.conf"
    machine.write_text("# operator\ntcp-established\nmntns-compat-mode\n")
    monkeypatch.setattr(_compose, "criu_config", lambda network_id: str(tmp_path / "criu" / ("%d.conf" % network_id)))
    repo = _project.Repository("ticker", "g", NETWORK_ID, str(tmp_path))
    with _checkpoint.criu_mode(repo, restoring=False, machine_config=str(machine)):
        dump = (tmp_path / "criu" / "2880.conf").read_text().splitlines()[1:]
    with _checkpoint.criu_mode(repo, restoring=True, machine_config=str(machine)):
        restore = (tmp_path / "criu" / "2880.conf").read_text().splitlines()[1:]
    assert dump == ["tcp-established"]
    with _checkpoint.criu_mode(repo, restoring=True, machine_config=str(machine), cgroup="/a.slice/docker-1.scope"):
        into = (tmp_path / "criu" / "2880.conf").read_text().splitlines()[1:]
    assert restore == ["tcp-established", "mntns-compat-mode"]
    assert into == ["tcp-established", "mntns-compat-mode", "cgroup-root /a.slice/docker-1.scope"]
    # After a restore the file is a dump's again: docker checkpoint create by hand must work.
    assert (tmp_path / "criu" / "2880.conf").read_text().splitlines()[1:] == ["tcp-established"]


def test_the_repository_daemon_runs_criu_without_hardware_breakpoints_and_unpacks_dumps_in_the_volume():
    unit = _repo_daemon.unit_content("/m", NETWORK_ID, "/etc/rediacc/docker/2880.json").splitlines()
    assert "Environment=CRIU_FAULT=130" in unit
    assert "Environment=TMPDIR=/m/.rediacc/tmp" in unit and "ExecStartPre=/bin/mkdir -p -m 0700 /m/.rediacc/tmp" in unit


def test_a_damaged_checkpoint_is_never_handed_to_criu(tmp_path):
    images = tmp_path / "v1" / "counter-counter-1"
    images.mkdir(parents=True)
    (images / "core-1.img").write_bytes(b"core")
    (images / "pages-1.img").write_bytes(b"p" * (_checkpoint.HASHED_UP_TO + 1))
    entry = {"container": "counter-counter-1", "images": _checkpoint.image_digests(str(images))}
    assert entry["images"]["pages-1.img"] == [_checkpoint.HASHED_UP_TO + 1, None]  # memory: sized, not hashed
    assert _checkpoint.damage(str(tmp_path / "v1"), entry) is None
    (images / "core-1.img").write_bytes(b"corE")
    assert _checkpoint.damage(str(tmp_path / "v1"), entry) == "its images differ from what was dumped (core-1.img)"
    (images / "core-1.img").write_bytes(b"core")
    with open(images / "pages-1.img", "r+b") as handle:
        handle.truncate(4096)
    assert "pages-1.img" in _checkpoint.damage(str(tmp_path / "v1"), entry)
    (images / "extra.img").write_bytes(b"")
    assert "extra.img" in _checkpoint.damage(str(tmp_path / "v1"), entry)


@pytest.fixture
def ticker(tmp_path, monkeypatch, fake_runner):
    monkeypatch.setattr(_compose, "criu_config", lambda network_id: str(tmp_path / "run" / "criu.conf"))
    (tmp_path / "criu.kdat").write_bytes(b"learnt")  # CRIU has probed this host's kernel since it booted
    monkeypatch.setattr(_criu_tool, "KERNEL_CACHE", str(tmp_path / "criu.kdat"))
    monkeypatch.setattr(os, "sync", lambda: None)
    monkeypatch.setattr(_checkpoint.time, "sleep", lambda seconds: None)
    listed = json.loads(fixture_text("docker_api_containers_counter.json"))
    for item in listed:  # as if the application were in this temporary mount
        labels = item["Labels"]
        labels["com.docker.compose.project.working_dir"] = str(tmp_path / "counter")
    (tmp_path / "counter").mkdir()
    _project.save_project_state(str(tmp_path / "counter"), {"network_id": NETWORK_ID, "stopped": []})
    fake_runner.answer_api(SOCKET, "GET", "/containers/json?all=1", listed)
    return _project.Repository("ticker", "g", NETWORK_ID, str(tmp_path))


def test_a_checkpoint_dumps_only_the_labelled_service_through_the_daemon_and_is_finished_last(ticker, fake_runner):
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/checkpoints" % COUNTER, None, status=201)
    changed, actions, found = _checkpoint.create(fake_runner, ticker, "v1.0.0")
    partial = os.path.join(ticker.mount, ".rediacc/checkpoint/.partial-v1.0.0")
    assert changed and [a["detail"] for a in actions] == ["checkpoint counter-counter-1 as v1.0.0"]
    assert fake_runner.calls == [["api", SOCKET, "GET", "/containers/json?all=1"],
                                 ["api", SOCKET, "POST", "/containers/%s/checkpoints" % COUNTER]]
    assert fake_runner.stdins[1] == {"CheckpointID": "counter-counter-1", "CheckpointDir": partial, "Exit": False}
    manifest = json.loads(open(os.path.join(ticker.mount, ".rediacc/checkpoint/v1.0.0/manifest.json")).read())
    assert [c["service"] for c in manifest["containers"]] == ["counter"]
    assert manifest["containers"][0]["depends_on"] == ["db"] and manifest["left_running"]
    assert not os.path.exists(partial) and found["name"] == "v1.0.0"
    assert oct(os.stat(os.path.join(ticker.mount, ".rediacc/checkpoint")).st_mode & 0o777) == "0o700"
    # the same name again: nothing to do, no dump
    calls = len(fake_runner.calls)
    assert _checkpoint.create(fake_runner, ticker, "v1.0.0")[0] is False
    assert fake_runner.calls[calls:] == []


CRIU_RACED = {"message": "Cannot checkpoint container: runc did not terminate successfully: exit status 1: criu "
                         "failed: type NOTIFY errno 0 path= /nonexistent/criu-dump.log: unknown"}


@pytest.mark.parametrize("failures, dumps, made", [
    (1, 2, True),   # CRIU lost a race with the processes it froze: the same dump again succeeds
    (3, 3, False),  # it keeps failing: three attempts, then the failure, and no checkpoint
])
def test_a_dump_that_criu_failed_is_asked_again(ticker, fake_runner, failures, dumps, made):
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/checkpoints" % COUNTER, None, status=201)
    answer = fake_runner.api
    left = [failures]

    def api(socket_path, method, path, **kwargs):
        if method == "POST" and left[0]:
            left[0] -= 1
            os.makedirs(os.path.join(kwargs["body"]["CheckpointDir"], "counter-counter-1"))  # a failed dump's images
            fake_runner.calls.append(["api", socket_path, method, path])
            raise LockboxError("POST %s failed (HTTP 500): %s" % (path, CRIU_RACED["message"]), rc=500)
        return answer(socket_path, method, path, **kwargs)
    fake_runner.api = api
    if made:
        assert _checkpoint.create(fake_runner, ticker, "daily")[0]
    else:
        with pytest.raises(LockboxError, match=r"failed at counter-counter-1: .*criu failed"):
            _checkpoint.create(fake_runner, ticker, "daily")
    assert sum(call[2] == "POST" for call in fake_runner.calls) == dumps
    assert (_checkpoint.summary(ticker.mount, "daily") is not None) is made


def test_a_dump_refused_for_another_reason_is_not_asked_again(ticker, fake_runner):
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/checkpoints" % COUNTER,
                           {"message": "container %s is not running" % COUNTER}, status=409)
    with pytest.raises(LockboxError, match="is not running"):
        _checkpoint.create(fake_runner, ticker, "daily")
    assert sum(call[2] == "POST" for call in fake_runner.calls) == 1


def test_a_checkpoint_directory_that_leads_out_of_the_volume_is_refused(ticker, fake_runner, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    os.makedirs(os.path.join(ticker.mount, ".rediacc"))
    os.symlink(str(outside), os.path.join(ticker.mount, ".rediacc/checkpoint"))
    with pytest.raises(InvalidInput, match="checkpoints stay inside the repository's volume"):
        _checkpoint.create(fake_runner, ticker, "v1")
    assert os.listdir(str(outside)) == []


def test_only_names_the_containers_to_consider(ticker, fake_runner):
    changed, actions, _found = _checkpoint.create(fake_runner, ticker, "daily", check_mode=True,
                                                  only={"counter-counter-1"})
    assert changed and [a["detail"] for a in actions] == ["checkpoint counter-counter-1 as daily"]
    with pytest.raises(InvalidInput, match="no running container is labelled"):
        _checkpoint.create(fake_runner, ticker, "daily", check_mode=True, only={"counter-db-1", "other"})


def test_check_mode_says_what_would_be_dumped_and_writes_nothing(ticker, fake_runner):
    changed, actions, found = _checkpoint.create(fake_runner, ticker, "daily", check_mode=True)
    assert changed and found is None and len(actions) == 1
    assert not os.path.exists(os.path.join(ticker.mount, ".rediacc"))
    assert all(call[2] == "GET" for call in fake_runner.calls)


def test_a_failed_dump_that_stopped_containers_brings_them_back_and_leaves_no_checkpoint(ticker, fake_runner,
                                                                                         monkeypatch):
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/checkpoints" % COUNTER, CRIU_RACED, status=500)
    with pytest.raises(LockboxError, match="checkpoint daily of ticker failed at counter-counter-1"):
        _checkpoint.create(fake_runner, ticker, "daily", leave_running=False)
    assert os.listdir(os.path.join(ticker.mount, ".rediacc/checkpoint")) == []
    # the watchdog looks after the service again
    assert _project.load_project_state(os.path.join(ticker.mount, "counter"))["stopped"] == []


def test_a_failed_dump_says_what_criu_s_log_says(ticker, fake_runner, tmp_path):
    # runc's message names the log and says nothing more; the reason is in the log's error lines.
    log = tmp_path / "bundle" / "criu-dump.log"
    log.parent.mkdir()
    log.write_text(fixture_text("criu_dump_failed.log"))
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/checkpoints" % COUNTER, {
        "message": "Cannot checkpoint container %s: runc did not terminate successfully: exit status 1: "
                   "criu failed: type NOTIFY errno 0 path= %s: unknown" % (COUNTER, log)}, status=500)
    with pytest.raises(LockboxError) as failed:
        _checkpoint.create(fake_runner, ticker, "daily")
    assert failed.value.msg.endswith(
        "CRIU's log says: (04.390231) Error (compel/src/lib/infect.c:418): Unable to detach from 999999: No such "
        "process | (04.390556) Error (criu/cr-dump.c:2111): Dumping FAILED.")


def test_a_failed_restore_s_log_is_quoted_too(tmp_path):
    log = tmp_path / "work" / "restore.log"
    log.parent.mkdir()
    log.write_text(fixture_text("criu_dump_failed.log"))
    message = "OCI runtime restore failed: criu failed: type NOTIFY errno 0\nlog file: %s: unknown" % log
    assert _criu_tool.log_errors(message, limit=1) == "(04.390556) Error (criu/cr-dump.c:2111): Dumping FAILED."


@pytest.mark.parametrize("message", [
    "criu failed: type NOTIFY errno 0",  # no log named
    "criu failed: type NOTIFY errno 0 path= /nonexistent/criu-dump.log: unknown",  # cannot be read
    "criu failed path= /etc/../etc/criu-dump.log",  # not a plain path
    "criu failed path= /etc/passwd",  # not CRIU's log
])
def test_only_a_readable_criu_log_named_as_such_is_quoted(message):
    assert not _criu_tool.log_errors(message)


def test_nothing_labelled_running_is_a_clear_error_that_changes_nothing(tmp_path, fake_runner):
    listed = [c for c in json.loads(fixture_text("docker_api_containers_counter.json"))
              if "rediacc.checkpoint" not in c["Labels"]]
    fake_runner.answer_api(SOCKET, "GET", "/containers/json?all=1", listed)
    repo = _project.Repository("ticker", "g", NETWORK_ID, str(tmp_path))
    with pytest.raises(InvalidInput, match=r"no running container is labelled rediacc\.checkpoint=true"):
        _checkpoint.create(fake_runner, repo, "daily")
    assert os.listdir(tmp_path) == []


def test_a_restore_starts_from_the_container_s_own_checkpoint_directory_and_never_passes_a_custom_one(
        ticker, fake_runner, monkeypatch):
    directory = os.path.join(ticker.mount, ".rediacc/checkpoint/v1")
    os.makedirs(os.path.join(directory, "counter-counter-1"))
    open(os.path.join(directory, "counter-counter-1", "pages-1.img"), "w").write("pages")
    seen = {}

    def start(runner, host, container_id, checkpoint_id):
        staged = os.path.join(_repo_daemon.data_root(ticker.mount), "containers", COUNTER, "checkpoints",
                              checkpoint_id)
        seen["staged"] = sorted(os.listdir(staged))
        seen["config"] = open(_compose.criu_config(NETWORK_ID)).read().splitlines()[-1]
        seen["same_file"] = os.path.samefile(os.path.join(staged, "pages-1.img"),
                                             os.path.join(directory, "counter-counter-1", "pages-1.img"))

    monkeypatch.setattr(_checkpoint._docker, "start_from_checkpoint", start)
    fake_runner.answer_api(SOCKET, "GET", "/containers/%s/json" % COUNTER, {"Id": COUNTER, "State": {
        "StartedAt": "2026-11-24T11:00:00Z"}, "HostConfig": {"CgroupParent": "rediacc-2880-s1.slice"}})
    outcome = _checkpoint.restore_containers(fake_runner, ticker, directory, [
        {"id": COUNTER, "container": "counter-counter-1"}])
    assert outcome == {"counter-counter-1": {"restored": True, "error": None, "started_at": "2026-11-24T11:00:00Z"}}
    assert seen == {"staged": ["pages-1.img"], "same_file": True,  # linked, not copied
                    "config": "cgroup-root /rediacc.slice/rediacc-2880.slice/rediacc-2880-s1.slice/docker-%s.scope"
                    % COUNTER}
    assert not os.path.exists(os.path.join(_repo_daemon.data_root(ticker.mount), "containers", COUNTER,
                                           "checkpoints", _checkpoint.STAGED))


def test_a_host_that_never_dumped_has_criu_probe_its_kernel_before_the_restore(ticker, fake_runner, monkeypatch):
    # A migration's target, or any host after a reboot: CRIU, moved into the guarded slice by runc
    # for the restore, could not probe the kernel there ("criu failed: type RESTORE errno 0").
    os.unlink(_criu_tool.KERNEL_CACHE)
    directory = os.path.join(ticker.mount, ".rediacc/checkpoint/v1")
    os.makedirs(os.path.join(directory, "counter-counter-1"))
    fake_runner.silent(["criu", "check"])
    fake_runner.answer_api(SOCKET, "GET", "/containers/%s/json" % COUNTER, {"Id": COUNTER, "State": {
        "StartedAt": "2026-11-24T11:00:00Z"}, "HostConfig": {"CgroupParent": "rediacc-2880-s1.slice"}})
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/start?checkpoint=%s" % (COUNTER, _checkpoint.STAGED),
                           None, status=204)
    outcome = _checkpoint.restore_containers(fake_runner, ticker, directory, [
        {"id": COUNTER, "container": "counter-counter-1"}])
    assert outcome["counter-counter-1"]["restored"]
    probe = fake_runner.calls.index(["criu", "check"])
    start = fake_runner.calls.index(["api", SOCKET, "POST", "/containers/%s/start?checkpoint=%s" % (
        COUNTER, _checkpoint.STAGED)])
    assert probe < start


def test_a_restore_that_fails_starts_the_service_fresh_and_keeps_the_checkpoint(ticker, fake_runner, monkeypatch):
    directory = os.path.join(ticker.mount, ".rediacc/checkpoint/v1")
    os.makedirs(os.path.join(directory, "counter-counter-1"))
    fake_runner.answer_api(SOCKET, "GET", "/containers/%s/json" % COUNTER, {"Id": COUNTER, "State": {
        "StartedAt": "2026-11-24T11:00:01Z"}, "HostConfig": {"CgroupParent": "rediacc-2880-s1.slice"}})
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/start?checkpoint=%s" % (COUNTER, _checkpoint.STAGED),
                           {"message": "criu failed: type RESTORE errno 0"}, status=500)
    fake_runner.answer_api(SOCKET, "POST", "/containers/%s/start" % COUNTER, None, status=204)
    said = []
    outcome = _checkpoint.restore_containers(fake_runner, ticker, directory, [
        {"id": COUNTER, "container": "counter-counter-1"}], log=said.append)
    assert not outcome["counter-counter-1"]["restored"]
    assert "HTTP 500" in outcome["counter-counter-1"]["error"] and "starting it fresh" in said[0]
    assert os.path.isdir(os.path.join(directory, "counter-counter-1"))
    assert json.load(open(os.path.join(directory, "restored.json")))["counter-counter-1"]["restored"] is False


def test_dockerd_s_intermittent_already_exists_is_asked_again(ticker, fake_runner, monkeypatch):
    directory = os.path.join(ticker.mount, ".rediacc/checkpoint/v1")
    os.makedirs(os.path.join(directory, "counter-counter-1"))
    answers = [LockboxError("failed to upload checkpoint to containerd: commit failed: content sha256:ab: "
                            "already exists"), None]

    def start(runner, host, container_id, checkpoint_id):
        answer = answers.pop(0)
        if answer:
            raise answer

    monkeypatch.setattr(_checkpoint._docker, "start_from_checkpoint", start)
    fake_runner.answer_api(SOCKET, "GET", "/containers/%s/json" % COUNTER, {"Id": COUNTER, "State": {},
                                                                            "HostConfig": {"CgroupParent":
                                                                                           "rediacc-2880-s1.slice"}})
    outcome = _checkpoint.restore_containers(fake_runner, ticker, directory, [
        {"id": COUNTER, "container": "counter-counter-1"}])
    assert outcome["counter-counter-1"]["restored"] and answers == []


def test_restore_on_up_only_reads_checkpoints_of_this_repository(tmp_path):
    repo = _project.Repository("ticker", "g", NETWORK_ID, str(tmp_path))
    os.makedirs(tmp_path / ".rediacc/checkpoint/repo-down")
    assert _checkpoint.restore_directory(repo, {}) is None
    own = str(tmp_path / ".rediacc/checkpoint/repo-down")
    assert _checkpoint.restore_directory(repo, {_checkpoint.RESTORE_ENV: own}) == os.path.realpath(own)
    for other in ("/mnt/rediacc/mounts/other/.rediacc/checkpoint/x", str(tmp_path / ".rediacc/checkpoint"),
                  own + "/../../../etc", str(tmp_path / ".rediacc/checkpoint/.partial-x")):
        with pytest.raises(InvalidInput, match="is not a checkpoint of repository ticker"):
            _checkpoint.restore_directory(repo, {_checkpoint.RESTORE_ENV: other})


def test_a_fork_s_restore_of_its_parent_s_checkpoint_restores_connections_closed(ticker, fake_runner, monkeypatch):
    """A checkpoint taken in another networkId (the parent's) is restored with tcp-close; one of its own not."""
    directory = os.path.join(ticker.mount, ".rediacc/checkpoint/fork-try")
    os.makedirs(os.path.join(directory, "counter-counter-1"))
    seen = []
    monkeypatch.setattr(_checkpoint._docker, "start_from_checkpoint", lambda runner, host, container_id, checkpoint_id:
                        seen.append(open(_compose.criu_config(NETWORK_ID)).read().splitlines()[-1]))
    fake_runner.answer_api(SOCKET, "GET", "/containers/%s/json" % COUNTER, {"Id": COUNTER, "State": {},
                                                                            "HostConfig": {"CgroupParent":
                                                                                           "rediacc-2880-s1.slice"}})
    for taken_in in (2816, NETWORK_ID):
        with open(os.path.join(directory, "manifest.json"), "w") as handle:
            json.dump({"name": "fork-try", "network_id": taken_in, "containers": []}, handle)
        _checkpoint.restore_containers(fake_runner, ticker, directory, [{"id": COUNTER,
                                                                         "container": "counter-counter-1"}])
    assert seen[0] == "tcp-close" and seen[1].startswith("cgroup-root ")


def test_a_fork_s_record_names_the_checkpoint_its_first_up_restores(tmp_path):
    state_dir = tmp_path / "state"
    record = {"name": "ticker:try", "guid": "g", "network_id": NETWORK_ID, "status": "ready",
              _checkpoint.RECORD_PENDING: "fork-try"}
    with _state.HostState(str(state_dir)) as host:
        host.put(record)
    mount = tmp_path / "mount"
    assert _checkpoint.pending(str(mount), record) is None  # named, but not in the volume: nothing to restore
    os.makedirs(mount / ".rediacc/checkpoint/fork-try")
    (mount / ".rediacc/checkpoint/fork-try/manifest.json").write_text(json.dumps({"name": "fork-try"}))
    assert _checkpoint.pending(str(mount), record) == "fork-try"
    assert _checkpoint.pending(str(mount)) is None  # the volume alone (the parent's view) names nothing
    _checkpoint.clear_pending(str(mount), str(state_dir), "ticker:try")
    assert _checkpoint.RECORD_PENDING not in _state.HostState(str(state_dir)).get("ticker:try")


def test_the_watchdog_leaves_a_service_alone_while_repo_up_restores_it(ticker, fake_runner, monkeypatch):
    """Held as stopped on purpose during its restore (a failed attempt leaves it exited), not after."""
    listed = json.loads(fixture_text("docker_api_containers_counter.json"))
    for item in listed:
        item["Labels"]["com.docker.compose.project.working_dir"] = os.path.join(ticker.mount, "counter")
        item["State"] = "created" if item["Labels"]["com.docker.compose.service"] == "counter" else "running"
    fake_runner.answers.clear()
    fake_runner.answer_api(SOCKET, "GET", "/containers/json?all=1", listed)
    directory = os.path.join(ticker.mount, ".rediacc/checkpoint/repo-down")
    os.makedirs(directory)
    with open(os.path.join(directory, "manifest.json"), "w") as handle:
        json.dump({"name": "repo-down", "network_id": NETWORK_ID, "containers": [{
            "container": "counter-counter-1", "service": "counter", "project_dir": "counter",
            "depends_on": ["db"]}]}, handle)
    held = []

    def restore(runner, repo, where, entries, log=None):
        held.append(_project.load_project_state(os.path.join(ticker.mount, "counter"))["stopped"])
        return {"counter-counter-1": {"restored": True, "error": None, "started_at": "t"}}

    monkeypatch.setattr(_checkpoint, "restore_containers", restore)
    composed = []
    model = {"services": {"counter": {"depends_on": {"db": {}}}, "db": {}}}
    outcome = _checkpoint.restore_during_up(fake_runner, ticker, directory,
                                            (os.path.join(ticker.mount, "counter"), model, ["up", "-d"]),
                                            lambda args: composed.append(args) or 0)
    assert composed == [["up", "--no-start"], ["up", "-d", "--wait", "db"]]
    assert held == [["counter"]] and outcome["counter-counter-1"]["restored"]
    assert _project.load_project_state(os.path.join(ticker.mount, "counter"))["stopped"] == []


def test_containerd_s_copies_from_our_step_are_removed_and_older_ones_left(tmp_path, monkeypatch):
    monkeypatch.setattr(_compose, "criu_config", lambda network_id: str(tmp_path / "criu" / "x.conf"))
    repo = _project.Repository("ticker", "g", NETWORK_ID, str(tmp_path))
    temporary = tmp_path / ".rediacc" / "tmp"
    (temporary / "ctrd-checkpoint111").mkdir(parents=True)  # not ours: there before
    with _checkpoint.criu_mode(repo, restoring=True, machine_config=str(tmp_path / "none")):
        (temporary / "ctrd-checkpoint222").mkdir()
        (temporary / "ctrd-checkpoint222" / "pages-1.img").write_bytes(b"p")
        (temporary / "other").mkdir()
    assert sorted(os.listdir(temporary)) == ["ctrd-checkpoint111", "other"]
