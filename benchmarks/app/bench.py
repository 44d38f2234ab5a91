# SPDX-License-Identifier: GPL-3.0-or-later
"""Application benchmark, run inside a test guest with the collection on sys.path.

Two operations, each as ours (the library the modules and renet use) and as its floor (bare
commands, benchmarks/floor.py), interleaved round by round on the same repository:

- up from closed: the repository closed, its two services' containers removed (repo down) ->
  both services answer HTTP 200 on their own IPs. Floor: losetup + cryptsetup open + mount,
  the eBPF guard (the same loader: systemctl start of the slices + bpf(2) in-process), a bare
  ``dockerd --config-file`` (the repository's own daemon.json, started by ``systemd-run``) until
  its API answers, then
  ``docker compose up -d`` of the rendered compose file.
- fork -> answering: a fork of the running repository until the fork's two services answer on
  the fork's IPs. Floor: fsfreeze + snapshot + thaw, new LUKS UUID, loop + open + mount, guard,
  bare dockerd, ``docker compose up -d`` of the parent's rendered file with the fork's IPs.

A dockerd start on its own is measured too: ours (systemctl start of the repository's unit,
until its API answers) against a bare dockerd with the same daemon.json.
"""

import os
import shutil
import subprocess
import time

from floor import Bare, api_answers, count_commands, delete_leftovers, http_ok, log, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import btrfs_fork as _btrfs_fork
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose

HERE = os.path.dirname(os.path.abspath(__file__))  # python puts it on sys.path: floor.py lies beside
KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SERVICES = 2
NAME = "bench-app"
LAYOUT, RUNNER = _repository.Layout(), Runner()


def record(name):
    return _repo_info.info(RUNNER, LAYOUT, name)[0]


def ips(network_id):
    return [_compose.service_ip(network_id, slot) for slot in range(SERVICES)]


def project_dir(rec):
    return os.path.join(rec["mount_path"], "app")


# --- ours ----------------------------------------------------------------------------------

def ours_up():
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="up", key=KEY)
    http_ok(ips(record(NAME)["network_id"]))


def ours_fork(tag):
    _btrfs_fork.fork_repo(RUNNER, LAYOUT, NAME, tag, opened=True, key=KEY)
    fork = "%s:%s" % (NAME, tag)
    _repo_app.converge_app(RUNNER, LAYOUT, fork, state="up", key=KEY)
    http_ok(ips(record(fork)["network_id"]))


def ours_daemon(rec):
    _repo_daemon.converge_daemon(RUNNER, LAYOUT, rec["name"], state="started")


def remove_fork(tag):
    fork = "%s:%s" % (NAME, tag)
    _repo_app.converge_app(RUNNER, LAYOUT, fork, state="down", unmount=True)
    _luks_repo.converge_repo(RUNNER, LAYOUT, fork, state="absent", force=True)


# --- floor ---------------------------------------------------------------------------------

def bare_open(bare, rec):
    loop = bare.run(["losetup", "--find", "--show", rec["image"]])
    bare.run(["cryptsetup", "open", "--type", "luks2", "--key-file=-", loop, rec["mapper"]], stdin=KEY.material)
    bare.run(["mount", "-o", "noatime", "/dev/mapper/" + rec["mapper"], rec["mount_path"]])
    return loop


def bare_guard(network_id):
    # The same loader as ours: a bare bpf(2) attach has no command-line tool on a host.
    _loopback_net.ensure_guard(RUNNER, network_id)
    for slot in range(SERVICES):
        _loopback_net.converge_service(RUNNER, network_id, slot)


def bare_dockerd(bare, network_id, config=None):
    config = config or _repo_daemon.config_path(network_id)
    argv = ["/usr/sbin/dockerd", "--config-file", config]
    # Started by systemd as a plain transient service (no unit file, no readiness protocol): like
    # ours, outside the traced process tree, so neither count holds the daemon's own children.
    unit = "bench-floor-dockerd-%d" % network_id
    bare.run(["systemd-run", "--unit=" + unit, "--collect", "--quiet", *argv])
    api_answers(_repo_daemon.socket_path(network_id))
    return unit


def bare_compose_up(bare, rec, compose_file):
    bare.run(["docker", "compose", "-p", "app", "-f", compose_file, "--project-directory", project_dir(rec),
              "up", "-d"], env={"DOCKER_HOST": _repo_daemon.docker_host(rec["network_id"])}, cwd=project_dir(rec))


def bare_close(rec, daemon, loop):
    """Untimed: back to closed, containers removed, as ours leaves it after repo down."""
    subprocess.run(["docker", "-H", _repo_daemon.docker_host(rec["network_id"]), "compose", "-p", "app", "down"],
                   capture_output=True, check=False)
    if daemon is not None:
        subprocess.run(["systemctl", "stop", daemon], check=True)
    subprocess.run(["umount", rec["mount_path"]], check=True)
    subprocess.run(["cryptsetup", "close", rec["mapper"]], check=True)
    subprocess.run(["losetup", "--detach", loop], check=True)


def floor_up(bare, rec):
    loop = bare_open(bare, rec)
    bare_guard(rec["network_id"])
    daemon = bare_dockerd(bare, rec["network_id"])
    bare_compose_up(bare, rec, os.path.join(project_dir(rec), ".rediacc", "compose.json"))
    http_ok(ips(rec["network_id"]))
    return daemon, loop


def floor_fork(bare, parent, fork):
    """``fork``: the record ours made for the same tag earlier (its GUID, networkId and paths)."""
    bare.run(["fsfreeze", "--freeze", parent["mount_path"]])
    try:
        bare.run(["btrfs", "subvolume", "snapshot", os.path.dirname(parent["image"]), os.path.dirname(fork["image"])])
    finally:
        bare.run(["fsfreeze", "--unfreeze", parent["mount_path"]])
    bare.run(["cryptsetup", "luksUUID", "--batch-mode", "--uuid", fork["guid"], fork["image"]])
    os.makedirs(fork["mount_path"], exist_ok=True)
    loop = bare_open(bare, fork)
    bare_guard(fork["network_id"])
    daemon = bare_dockerd(bare, fork["network_id"], config=fork_daemon_config(fork))
    bare_compose_up(bare, fork, fork_compose_file(parent, fork))
    http_ok(ips(fork["network_id"]))
    return daemon, loop


def fork_daemon_config(fork):
    """The fork's daemon.json as ours writes it (deleted with ours' fork; prepared, not timed)."""
    path = "/run/bench-floor-%d.json" % fork["network_id"]
    with open(path, "w") as handle:
        handle.write(_repo_daemon.render_config(fork["mount_path"], fork["network_id"]))
    return path


def fork_compose_file(parent, fork):
    """The parent's rendered compose file with the fork's IPs and networkId (prepared, not timed)."""
    rendered = os.path.join(project_dir(fork), ".rediacc", "compose.json")
    with open(rendered) as handle:
        text = handle.read()
    for slot in range(SERVICES):
        text = text.replace(_compose.service_ip(parent["network_id"], slot),
                            _compose.service_ip(fork["network_id"], slot))
    text = text.replace('"%d"' % parent["network_id"], '"%d"' % fork["network_id"])
    # The services' slices, where the fork's own address rewrite applies.
    text = text.replace("rediacc-%d-" % parent["network_id"], "rediacc-%d-" % fork["network_id"])
    target = os.path.join(project_dir(fork), ".rediacc", "compose.floor.json")
    with open(target, "w") as handle:
        handle.write(text)
    return target


def floor_fork_cleanup(fork, daemon, loop):
    bare_close(fork, daemon, loop)
    subprocess.run(["btrfs", "subvolume", "delete", os.path.dirname(fork["image"])], capture_output=True, check=True)


def floor_dockerd(rec):
    """(ms until the API answers, the unit to stop)."""
    started = time.monotonic()
    unit = bare_dockerd(Bare(), rec["network_id"])
    return (time.monotonic() - started) * 1000, unit


# --- rounds --------------------------------------------------------------------------------

def timed(action, *args):
    started = time.monotonic()
    result = action(*args)
    return (time.monotonic() - started) * 1000, result


def to_closed():
    _repo_app.converge_app(RUNNER, LAYOUT, NAME, state="down", unmount=True)


def reset():
    delete_leftovers(RUNNER, LAYOUT, lambda name: name.split(":")[0] == NAME)


def setup():
    reset()
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="opened", size="1G", key=KEY)
    rec = record(NAME)
    shutil.copytree(os.path.join(HERE, "app"), project_dir(rec), dirs_exist_ok=True)
    _repo_daemon.converge_daemon(RUNNER, LAYOUT, NAME, state="started")
    subprocess.run(["docker", "-H", _repo_daemon.docker_host(rec["network_id"]), "import",
                    "/usr/share/lockbox-test/busybox.tar", "lockbox-test/busybox:1"], capture_output=True, check=True)
    ours_up()  # the first up renders the compose file and creates the slot table


def rounds_up(op, bare):
    for round_ in range(ROUNDS):
        for who in ("ours", "floor") if round_ % 2 == 0 else ("floor", "ours"):
            to_closed()
            if who == "ours":
                elapsed = timed(ours_up)[0]
                to_closed()
            else:
                rec = record(NAME)
                elapsed, (daemon, loop) = timed(floor_up, bare, rec)
                bare_close(rec, daemon, loop)
            op["%s_all" % who].append(elapsed)
        log("round %d up from closed: ours %.0f ms, floor %.0f ms" % (round_, op["ours_all"][-1], op["floor_all"][-1]))


def rounds_fork(op, bare):
    ours_up()
    for round_ in range(ROUNDS):
        tag = "b%d" % round_
        elapsed = timed(ours_fork, tag)[0]
        op["ours_all"].append(elapsed)
        fork = record("%s:%s" % (NAME, tag))
        remove_fork(tag)
        elapsed, (daemon, loop) = timed(floor_fork, bare, record(NAME), fork)
        op["floor_all"].append(elapsed)
        floor_fork_cleanup(fork, daemon, loop)
        log("round %d fork -> answering: ours %.0f ms, floor %.0f ms" % (round_, op["ours_all"][-1], elapsed))


def rounds_dockerd(op):
    rec = record(NAME)
    for round_ in range(ROUNDS):
        _repo_daemon.converge_daemon(RUNNER, LAYOUT, NAME, state="stopped")
        elapsed = timed(ours_daemon, rec)[0]
        _repo_daemon.converge_daemon(RUNNER, LAYOUT, NAME, state="stopped")
        op["ours_all"].append(elapsed)
        elapsed, unit = floor_dockerd(rec)
        subprocess.run(["systemctl", "stop", unit], check=True)
        op["floor_all"].append(elapsed)
        log("round %d dockerd start: ours %.0f ms, floor %.0f ms" % (round_, op["ours_all"][-1], elapsed))


def count_each(ops):
    """One traced round of each path: the programs each one starts."""
    holder = {}
    to_closed()
    ops["up_from_closed"]["ours_commands"] = count_commands(ours_up)
    to_closed()
    ops["up_from_closed"]["floor_commands"] = count_commands(lambda: holder.update(run=floor_up(Bare(), record(NAME))))
    bare_close(record(NAME), *holder["run"])
    ours_up()
    ops["fork_to_answering"]["ours_commands"] = count_commands(lambda: ours_fork("traced"))
    fork = record("%s:traced" % NAME)
    remove_fork("traced")
    ops["fork_to_answering"]["floor_commands"] = count_commands(
        lambda: holder.update(run=floor_fork(Bare(), record(NAME), fork)))
    floor_fork_cleanup(fork, *holder["run"])


def main():
    setup()
    ops = {name: {"ours_all": [], "floor_all": []} for name in ("up_from_closed", "fork_to_answering", "dockerd_start")}
    bare_up, bare_fork = Bare(), Bare()
    rounds_up(ops["up_from_closed"], bare_up)
    rounds_fork(ops["fork_to_answering"], bare_fork)
    rounds_dockerd(ops["dockerd_start"])
    count_each(ops)
    ops["up_from_closed"]["floor_steps"] = bare_up.steps
    ops["fork_to_answering"]["floor_steps"] = bare_fork.steps
    report(ops, {"rounds": ROUNDS, "services": SERVICES})
    to_closed()
    _luks_repo.converge_repo(RUNNER, LAYOUT, NAME, state="absent", force=True)


if __name__ == "__main__":
    main()
