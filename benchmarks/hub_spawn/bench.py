# SPDX-License-Identifier: GPL-3.0-or-later
"""Hub spawn benchmark, run inside a test guest with the collection on sys.path.

A Hub user's environment, built by the Hub's own library (``hub_environments.Environments``, what
``renet hub start`` runs after a login; the OAuth round trip itself is not timed). Each round, ours
and the floor alternate on the same user:

- start_to_answer: a stopped environment (container and daemon stopped, files kept) started until
  its service answers HTTP 200. Ours: ``Environments.build`` (networkId marker, guard, slice
  limits, daemon unit, image check, container check, start, port) — the floor: ``systemctl start``
  of the same daemon unit, then ``docker start`` of the same container;
- resume_to_answer: a hibernated environment resumed until it answers. Ours: ``hibernate``
  (untimed), then ``build``, which restores (integrity check, CRIU options of the repositories) —
  the floor: ``docker checkpoint create`` and the daemon stopped (untimed), then ``systemctl start``
  and ``docker start --checkpoint``;
- first_build: a new user's first environment (the image copied from the repository's daemon,
  the container created); its floor column is that round's floor start (a daemon and a
  container started), what a login costs at least.
"""

import os
import shutil
import time

from floor import Bare, api_answers, count_commands, delete_leftovers, http_ok, log, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_environments as _envs
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
NAME = "bench-hub"
USER = "alice"
LABELS = {"rediacc.hub.route.code": "8080", "rediacc.hub.image": "lockbox-test/hubenv:1",
          "rediacc.hub.command": "exec httpd -f -p __SERVICE_IP__:8080 -h /workspace",
          "rediacc.hub.user": "1000:1000", "rediacc.hub.checkpoint": "true",
          "rediacc.hub.hook.on_create": "echo hello > /workspace/index.html"}
LAYOUT, RUNNER = _repository.Layout(), Runner()


def timed(action, *args):
    started = time.monotonic()
    action(*args)
    return (time.monotonic() - started) * 1000


class Hub:
    """The environments of one Hub on the benchmark's repository."""

    def __init__(self):
        record = _repo_info.info(RUNNER, LAYOUT, NAME)[0]
        self.workspace_dir = os.path.join(record["mount_path"], "workspaces")
        options = {"workspace_dir": self.workspace_dir, "docker_socket": _repo_daemon.socket_path(record["network_id"])}
        self.envs = _envs.Environments(RUNNER, _hub.parse_labels(LABELS), options)

    def build(self, user):
        env = self.envs._env(user)
        self.envs.build(env)
        env.status = "ready"
        http_ok([env.address])

    def env(self, user):
        return self.envs._env(user)

    def docker(self, bare, user, *args):
        return bare.run(["docker", "-H", _repo_daemon.docker_host(self.env(user).network_id), *args])

    def unit(self, user):
        return _repo_daemon.unit_name(self.env(user).network_id)


def floor_stop(hub, bare):
    hub.docker(bare, USER, "stop", _envs.container_name(USER))
    bare.run(["systemctl", "stop", hub.unit(USER)])


def floor_start(hub, bare, checkpoint=None):
    bare.run(["systemctl", "start", hub.unit(USER)])
    api_answers(_repo_daemon.socket_path(hub.env(USER).network_id))
    if checkpoint:
        # What CRIU 4.1 needs here to restore at all (a container with bind mounts): the restore
        # options in the file runc hands CRIU (the org.criu.config annotation), back after.
        config = _compose.criu_config(hub.env(USER).network_id)
        with open(config) as handle:
            dump_options = handle.read()
        with open(config, "w") as handle:
            handle.write(dump_options + "mntns-compat-mode\n")
        try:
            hub.docker(bare, USER, "start", "--checkpoint", checkpoint, _envs.container_name(USER))
        finally:
            with open(config, "w") as handle:
                handle.write(dump_options)
    else:
        hub.docker(bare, USER, "start", _envs.container_name(USER))
    http_ok([hub.env(USER).address])


def floor_hibernate(hub, bare, name):
    hub.docker(bare, USER, "checkpoint", "create", _envs.container_name(USER), name)
    bare.run(["systemctl", "stop", hub.unit(USER)])


def setup():
    delete_leftovers(RUNNER, LAYOUT, lambda name: name.split(":")[0] == NAME)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="opened", size="2G", key=KEY)
    record = _repo_info.info(RUNNER, LAYOUT, NAME)[0]
    shutil.copytree(os.path.join(HERE, "app"), os.path.join(record["mount_path"], "app"), dirs_exist_ok=True)
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="up", key=KEY)
    os.makedirs(os.path.join(record["mount_path"], "workspaces"), exist_ok=True)
    return Hub()


def one_round(round_, hub, ops, bare):
    first = ("ours", "floor") if round_ % 2 == 0 else ("floor", "ours")
    for who in first:  # a stopped environment started again
        if who == "ours":
            hub.envs.stop(USER)
            ops["start_to_answer"]["ours_all"].append(timed(hub.build, USER))
        else:
            floor_stop(hub, bare)
            ops["start_to_answer"]["floor_all"].append(timed(floor_start, hub, bare))
    for who in first:  # a hibernated environment resumed
        if who == "ours":
            hub.envs.hibernate(USER)
            ops["resume_to_answer"]["ours_all"].append(timed(hub.build, USER))
        else:
            name = "fl%d" % round_
            floor_hibernate(hub, bare, name)
            ops["resume_to_answer"]["floor_all"].append(timed(floor_start, hub, bare, name))
            hub.docker(bare, USER, "checkpoint", "rm", _envs.container_name(USER), name)
    newcomer = "new%d" % round_
    ops["first_build"]["ours_all"].append(timed(hub.build, newcomer))
    ops["first_build"]["floor_all"].append(ops["start_to_answer"]["floor_all"][-1])
    hub.envs.stop(newcomer)
    log("round %d: start ours %.0f floor %.0f ms; resume ours %.0f floor %.0f ms; first build %.0f ms" % (
        round_, ops["start_to_answer"]["ours_all"][-1], ops["start_to_answer"]["floor_all"][-1],
        ops["resume_to_answer"]["ours_all"][-1], ops["resume_to_answer"]["floor_all"][-1],
        ops["first_build"]["ours_all"][-1]))


def count_each(hub, ops):
    hub.envs.stop(USER)
    ops["start_to_answer"]["ours_commands"] = count_commands(lambda: hub.build(USER))
    hub.envs.hibernate(USER)
    ops["resume_to_answer"]["ours_commands"] = count_commands(lambda: hub.build(USER))
    floor_stop(hub, Bare())
    ops["start_to_answer"]["floor_commands"] = count_commands(lambda: floor_start(hub, Bare()))
    floor_hibernate(hub, Bare(), "fltraced")
    ops["resume_to_answer"]["floor_commands"] = count_commands(lambda: floor_start(hub, Bare(), "fltraced"))
    ops["first_build"]["ours_commands"] = count_commands(lambda: hub.build("traced"))


def main():
    hub = setup()
    ops = {name: {"ours_all": [], "floor_all": []} for name in ("start_to_answer", "resume_to_answer", "first_build")}
    bare = Bare()
    hub.build(USER)  # alice's first environment, before anything is measured
    for round_ in range(ROUNDS):
        one_round(round_, hub, ops, bare)
    count_each(hub, ops)
    for op in ops.values():
        op["floor_steps"] = bare.steps
    report(ops, {"rounds": ROUNDS, "labels": LABELS,
                 "note": "first_build: floor_ms is that round's floor start_to_answer (a daemon and a container "
                         "started); the OAuth round trip of a login is not in these figures"})
    for user in list(hub.envs.users):
        hub.envs.stop(user)
        for _name, _detail, apply in _envs.removal_steps(RUNNER, hub.env(user).network_id):
            apply()
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="down", unmount=True)
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="absent", force=True)


if __name__ == "__main__":
    main()
