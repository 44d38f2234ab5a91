# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.criu_checkpoint (``renet checkpoint``): process state of a repository's labelled services.

Only containers labelled ``rediacc.checkpoint=true`` are ever checkpointed. The repository's
own dockerd does the work (``docker checkpoint create`` / ``docker start --checkpoint`` through
its API, CRIU underneath); the images go to ``<mount>/.rediacc/checkpoint/<name>/``, inside the
encrypted volume, so they are encrypted, forked and backed up with it. A checkpoint is written
to ``.partial-<name>`` first and renamed once its manifest is complete: a checkpoint that was
interrupted never looks finished, and the next run starts it again.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core import faults
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import (
    InvalidInput,
    LockboxError,
)
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import checkpoint as _rules
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import criu as _criu_tool
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker

ROOT = ".rediacc/checkpoint"
MANIFEST = "manifest.json"
RESTORED = "restored.json"
PARTIAL = ".partial-"
# The name images get in a container's own checkpoint directory while it is started from them.
STAGED = "lockbox-restore"
RESTORE_ATTEMPTS = 3
DUMP_ATTEMPTS = 3
# The checkpoint the next repo up restores (written by repo down --checkpoint and by a fork).
PENDING = ".restore-on-up.json"
RECORD_PENDING = "restore_on_up"
# Set by repo up for the Rediaccfiles' renet compose: the checkpoint directory to restore from.
RESTORE_ENV = "LOCKBOX_RESTORE_CHECKPOINT"


# runc hands CRIU this file for every container of the repository (the compose rewrite sets the
# org.criu.config annotation): the machine's options (MACHINE_CRIU_CONFIG), and for a restore
# two more. mntns-compat-mode: CRIU 4.1's newer mount engine cannot restore a bind-mounted file
# such as the docker-init of `init: true` ("Can't remount ... with MS_PRIVATE"), and CRIU
# refuses it on a dump. cgroup-root: runc 1.1 with cgroup v2 and systemd does not tell CRIU the
# new container's cgroup, so CRIU recreated the dumped container's scope path outside any unit
# (systemd then dropped the new scope, and the container could not be frozen, limited or
# checkpointed again). The file is rewritten before each dump or restore, under the
# repository's lock.
MACHINE_CRIU_CONFIG = "/etc/criu/runc.conf"
RESTORE_ONLY = ("mntns-compat-mode", "cgroup-root", "tcp-close")


@contextlib.contextmanager
def criu_mode(repo, restoring, machine_config=MACHINE_CRIU_CONFIG, cgroup=None, foreign=False):
    """Hold the repository's checkpoint lock with its CRIU configuration set for a dump or a restore.

    ``cgroup``: for a restore, the new container's cgroup (its scope in its service slice).
    ``foreign``: the checkpoint was taken in another repository (a fork's parent): connections
    established there are restored closed (``tcp-close``), never resumed between the fork's
    addresses and the parent's peers.
    """
    path = _compose.criu_config(repo.network_id)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        options = [line.strip() for line in (read_text(machine_config) or "").splitlines()
                   if line.strip() and not line.lstrip().startswith("#")
                   and line.split()[0] not in RESTORE_ONLY]

        def write(what, lines):
            write_atomic(path, "# Written by lockbox.fleet for a %s (see criu_checkpoint.py).\n%s\n"
                         % (what, "\n".join(lines)), mode=0o600)
        with _no_copies_left(_repo_daemon.temporary_dir(repo.mount)):
            if not restoring:
                write("dump", options)
                yield
                return
            write("restore", options + ["mntns-compat-mode"] + (["cgroup-root %s" % cgroup] if cgroup else []) +
                  (["tcp-close"] if foreign else []))
            try:
                yield
            finally:
                # Left as a dump's: any later dump (lockbox's, or docker checkpoint create by hand)
                # would otherwise meet restore-only options, which CRIU refuses on a dump.
                write("dump", options)


# containerd copies a checkpoint's images through a temporary directory of the daemon's TMPDIR
# (inside the volume) and leaves it there: one dump's size per checkpoint or restore, measured
# by benchmarks/checkpoint. The copies that appeared during our own step are removed after it.
CONTAINERD_COPY = "ctrd-checkpoint"


@contextlib.contextmanager
def _no_copies_left(temporary):
    def copies():
        try:
            return {n for n in os.listdir(temporary) if n.startswith(CONTAINERD_COPY)}
        except FileNotFoundError:
            return set()
    before = copies()
    try:
        yield
    finally:
        for name in sorted(copies() - before):
            shutil.rmtree(os.path.join(temporary, name), ignore_errors=True)


def root_of(mount):
    return os.path.join(mount, ROOT)


def path_of(mount, name):
    return os.path.join(root_of(mount), _rules.check_name(name))


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def manifest(mount, name):
    """The manifest of a finished checkpoint, or None."""
    found = _read_json(os.path.join(path_of(mount, name), MANIFEST))
    return found if isinstance(found, dict) and found.get("name") == name else None


def _size(path):
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def listing(mount):
    """Every finished checkpoint of the repository: name, time, size and containers, oldest first."""
    try:
        names = sorted(os.listdir(root_of(mount)))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not _rules.NAME.fullmatch(name):
            continue
        entry = manifest(mount, name)
        if entry:
            found.append({"name": name, "created": entry.get("created"), "size_bytes": _size(path_of(mount, name)),
                          "containers": [c["container"] for c in entry.get("containers") or []],
                          "services": [c["service"] for c in entry.get("containers") or []],
                          "kernel": entry.get("kernel")})
    return sorted(found, key=lambda e: (e["created"] or "", e["name"]))


def depends_on_label(value):
    """Service names of compose's ``com.docker.compose.depends_on`` label (``db:service_healthy:false,...``)."""
    return sorted({part.split(":", 1)[0] for part in (value or "").split(",") if part.split(":", 1)[0]})


def labelled_running(runner, repo):
    """The repository's running containers labelled rediacc.checkpoint=true, as the API lists them."""
    listed = _docker.containers(runner, _repo_daemon.docker_host(repo.network_id))
    return [c for c in listed if c.get("State") == "running" and _rules.is_labelled(c.get("Labels"))]


def _entry(repo, listed):
    labels = listed.get("Labels") or {}
    project_dir = labels.get("com.docker.compose.project.working_dir") or ""
    return {"container": (listed.get("Names") or ["/"])[0].lstrip("/"), "id": listed.get("Id"),
            "service": labels.get("com.docker.compose.service") or "", "image_id": listed.get("ImageID"),
            "project_dir": os.path.relpath(project_dir, repo.mount) if project_dir else "",
            "depends_on": depends_on_label(labels.get("com.docker.compose.depends_on"))}


def _mark_stopped(repo, entries, stopped):
    """Services the watchdog leaves alone (stopped by a checkpoint) or looks after again."""
    for project_dir in sorted({e["project_dir"] for e in entries}):
        where = os.path.join(repo.mount, project_dir)
        state = _project.load_project_state(where)
        if not state:
            continue
        services = {e["service"] for e in entries if e["project_dir"] == project_dir}
        current = set(state.get("stopped") or [])
        state["stopped"] = sorted(current | services if stopped else current - services)
        _project.save_project_state(where, state)


def create(runner, repo, name, *, leave_running=True, check_mode=False, lockbox_name=False, only=None):
    """Checkpoint the labelled running containers as ``name``; (changed, actions, summary).

    ``only``: container names to consider (a Hub user's environment: its own container, never
    one the user labelled through their Docker API).
    """
    _rules.check_name(name, creating=not lockbox_name)
    if manifest(repo.mount, name):
        return False, [], summary(repo.mount, name)
    entries = [e for e in (_entry(repo, c) for c in labelled_running(runner, repo))
               if only is None or e["container"] in only]
    if not entries:
        raise InvalidInput("nothing to checkpoint in repository %s: no running container is labelled "
                           "rediacc.checkpoint=true" % repo.name)
    actions = [{"action": "checkpoint", "detail": "checkpoint %s as %s%s" % (
        e["container"], name, "" if leave_running else " and stop it")} for e in entries]
    if check_mode:
        return True, actions, None
    root = root_of(repo.mount)
    os.makedirs(root, mode=0o700, exist_ok=True)
    if os.path.realpath(root) != os.path.join(os.path.realpath(repo.mount), ROOT):
        raise InvalidInput("%s leads to %s: checkpoints stay inside the repository's volume"
                           % (root, os.path.realpath(root)))
    os.chmod(root, 0o700)  # CRIU images hold process memory: secrets among it
    partial = os.path.join(root, PARTIAL + name)
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted earlier attempt
    os.mkdir(partial, 0o700)
    host = _repo_daemon.docker_host(repo.network_id)
    if not leave_running:
        _mark_stopped(repo, entries, stopped=True)
    done = []
    try:
        _criu_tool.learn_kernel(runner)
        with criu_mode(repo, restoring=False):
            for entry in entries:
                _dump(runner, host, entry, partial, leave_running)
                done.append(entry)
    except LockboxError as exc:
        # Nothing half-done: containers already dumped and stopped come back from what was dumped.
        if not leave_running:
            _start_again(runner, repo, done, partial)
            _mark_stopped(repo, entries, stopped=False)
        shutil.rmtree(partial, ignore_errors=True)
        raise LockboxError("checkpoint %s of %s failed at %s: %s" % (
            name, repo.name, entries[len(done)]["container"], with_criu_log(exc.msg)), cmd=exc.cmd,
            rc=exc.rc) from None
    faults.pause_after("checkpoint-dumped")  # the kill test: every image written, no manifest yet
    for entry in entries:
        entry["images"] = image_digests(os.path.join(partial, entry["container"]))
    write_atomic(os.path.join(partial, MANIFEST), json.dumps({
        "name": name, "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "repository": repo.name, "network_id": repo.network_id, "kernel": os.uname().release,
        "left_running": leave_running, "containers": entries}, indent=2, sort_keys=True) + "\n", mode=0o600)
    os.rename(partial, path_of(repo.mount, name))
    os.sync()  # on disk before anything snapshots the volume (a fork, a backup)
    return True, actions, summary(repo.mount, name)


def _dump(runner, host, entry, partial, leave_running):
    """``docker checkpoint create`` of one container, asked again after a failure of CRIU's own.

    A dump races the processes it freezes (one forking or exiting, a connection passing
    through a state CRIU cannot hold); CRIU then resumes them all and fails, and the same dump
    a moment later succeeds. Any other refusal (not running, unknown) is final at once.
    """
    for attempt in range(1, DUMP_ATTEMPTS + 1):
        try:
            _docker.checkpoint_create(runner, host, entry["id"], entry["container"], partial, leave_running)
            return
        except LockboxError as exc:
            if "criu failed" not in exc.msg or attempt == DUMP_ATTEMPTS:
                raise
            shutil.rmtree(os.path.join(partial, entry["container"]), ignore_errors=True)
            time.sleep(1)


# Images up to this size are hashed; larger ones (process memory: pages-*.img) only sized, so a
# restore does not read the whole memory image twice. A damaged image makes CRIU fail, or worse,
# resume a process that spins on corrupt memory: a damaged checkpoint is never handed to it.
HASHED_UP_TO = 1 << 20


def image_digests(directory):
    """file -> [size, sha256 or None] of the CRIU images of one container."""
    found = {}
    for name in sorted(os.listdir(directory) if os.path.isdir(directory) else []):
        path = os.path.join(directory, name)
        size = os.lstat(path).st_size
        digest = None
        if size <= HASHED_UP_TO:
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
        found[name] = [size, digest]
    return found


def damage(directory, entry):
    """Why the images of ``entry`` in checkpoint ``directory`` differ from what was dumped, or None."""
    recorded = entry.get("images")
    if recorded is None:
        return None  # a checkpoint of an older lockbox: nothing recorded to compare
    source = os.path.join(directory, entry["container"])
    try:
        found = image_digests(source)
    except OSError as exc:
        return "its images cannot be read (%s)" % exc.strerror
    changed = sorted(n for n in set(recorded) | set(found) if list(recorded.get(n) or []) != list(found.get(n) or []))
    return "its images differ from what was dumped (%s)" % ", ".join(changed[:5]) if changed else None


def with_criu_log(message):
    """``message`` and, when it names CRIU's log, that log's last error lines (the reason)."""
    errors = _criu_tool.log_errors(message)
    return "%s; CRIU's log says: %s" % (message, errors) if errors else message


def _start_again(runner, repo, entries, directory):
    host = _repo_daemon.docker_host(repo.network_id)
    for entry in entries:
        try:
            _start_from(runner, repo, entry, directory)
        except LockboxError:
            _docker.start(runner, host, entry["id"])


def _link_tree(source, target):
    """``target`` as a tree of hard links to ``source``'s files (same filesystem: no data is copied)."""
    for directory, _dirs, files in os.walk(source):
        where = os.path.join(target, os.path.relpath(directory, source))
        os.makedirs(where, mode=0o700, exist_ok=True)
        for name in files:
            try:
                os.link(os.path.join(directory, name), os.path.join(where, name))
            except OSError:
                shutil.copy2(os.path.join(directory, name), os.path.join(where, name))


def _start_from(runner, repo, entry, directory, foreign=False):
    """Start container ``entry["id"]`` from the images of ``entry["container"]`` in checkpoint ``directory``.

    ``foreign``: the checkpoint was taken in another repository (see criu_mode).

    dockerd restores only from the container's own checkpoint directory, so the images are
    linked there (inside the encrypted volume too) for the start, and the links removed after.
    """
    source = os.path.join(directory, entry["container"])
    if not os.path.isdir(source):
        raise LockboxError("checkpoint %s holds no images of %s" % (os.path.basename(directory), entry["container"]))
    damaged = damage(directory, entry)
    if damaged:
        raise LockboxError("checkpoint %s of %s is damaged: %s" % (os.path.basename(directory), entry["container"],
                                                                   damaged))
    found = _docker.inspect(runner, _repo_daemon.docker_host(repo.network_id), entry["id"]) or {}
    full_id = found.get("Id")
    if not full_id:
        raise LockboxError("container %s does not exist" % entry["container"])
    parent = (found.get("HostConfig") or {}).get("CgroupParent") or ""
    if not parent.startswith("rediacc-%d-" % repo.network_id) or not parent.endswith(".slice"):
        raise LockboxError("container %s is not in a slice of repository %s (%r)"
                           % (entry["container"], repo.name, parent))
    cgroup = "/" + os.path.relpath(_loopback_net.slice_cgroup(parent), _loopback_net.CGROUP_ROOT) + \
        "/docker-%s.scope" % full_id
    staged = os.path.join(_repo_daemon.data_root(repo.mount), "containers", full_id, "checkpoints", STAGED)
    shutil.rmtree(staged, ignore_errors=True)
    _link_tree(source, staged)
    try:
        # CRIU restores from inside the repository's guarded slice, where it cannot probe the
        # kernel: a host that never dumped since it booted (a migration's target, an autostart)
        # has it probed here first (criu.learn_kernel).
        _criu_tool.learn_kernel(runner)
        with criu_mode(repo, restoring=True, cgroup=cgroup, foreign=foreign):
            for attempt in range(1, RESTORE_ATTEMPTS + 1):
                try:
                    _docker.start_from_checkpoint(runner, _repo_daemon.docker_host(repo.network_id), full_id,
                                                  STAGED)
                    break
                except LockboxError as exc:
                    # dockerd now and then fails to hand the images to containerd ("content ...:
                    # already exists"); the same start succeeds when asked again.
                    if "already exists" not in exc.msg or attempt == RESTORE_ATTEMPTS:
                        raise LockboxError(with_criu_log(exc.msg), cmd=exc.cmd, rc=exc.rc) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def summary(mount, name):
    return next((e for e in listing(mount) if e["name"] == name), None)


def delete(repo, name, check_mode=False):
    """Remove checkpoint ``name`` (and an interrupted attempt of it); (changed, actions)."""
    path = path_of(repo.mount, name)
    partial = os.path.join(root_of(repo.mount), PARTIAL + name)
    present = [p for p in (path, partial) if os.path.lexists(p)]
    if not present:
        return False, []
    if not check_mode:
        for found in present:
            shutil.rmtree(found)
        if pending(repo.mount) == name:
            clear_pending(repo.mount)
    return True, [{"action": "delete", "detail": "delete checkpoint %s of %s" % (name, repo.name)}]


# --------------------------------------------------------------------------------------
# Restore


def pending(mount, record=None):
    """The checkpoint the next repo up restores, or None.

    Named in the volume (by repo down --checkpoint) or, for a fork with checkpoint, in the
    fork's record (RECORD_PENDING): the parent's volume never says what its forks restore.
    """
    found = _read_json(os.path.join(root_of(mount), PENDING))
    name = found.get("name") if isinstance(found, dict) else None
    if name is None and record:
        name = record.get(RECORD_PENDING)
    return name if isinstance(name, str) and _rules.NAME.fullmatch(name) and manifest(mount, name) else None


def set_pending(mount, name):
    write_atomic(os.path.join(root_of(mount), PENDING), json.dumps({"name": name}) + "\n", mode=0o600)


def clear_pending(mount, state_dir=None, name=None):
    """Nothing left to restore on the next up (``state_dir``/``name``: the record's mention too)."""
    try:
        os.unlink(os.path.join(root_of(mount), PENDING))
    except FileNotFoundError:
        pass
    if state_dir and name:
        with _state.HostState(state_dir) as host:
            record = host.get(name)
            if record and record.pop(RECORD_PENDING, None):
                host.put(record)


def _record_restored(directory, outcome):
    path = os.path.join(directory, RESTORED)
    current = _read_json(path) or {}
    current.update(outcome)
    write_atomic(path, json.dumps(current, indent=2, sort_keys=True) + "\n", mode=0o600)


def restored_outcome(mount, name):
    """container -> {started_at, restored, error} of the last restore of ``name``."""
    return _read_json(os.path.join(path_of(mount, name), RESTORED)) or {}


def restore_containers(runner, repo, directory, entries, log=None):
    """Start each (created or stopped) container from its CRIU images; a failure starts it fresh.

    ``entries``: manifest entries with ``id`` set to the container to start. Returns
    container -> {"restored": bool, "error": str|None, "started_at": str}; recorded in the
    checkpoint (RESTORED) so a repeated restore of the same state changes nothing.
    """
    host = _repo_daemon.docker_host(repo.network_id)
    taken_in = (_read_json(os.path.join(directory, MANIFEST)) or {}).get("network_id", repo.network_id)
    outcome = {}
    for entry in entries:
        error = None
        try:
            _start_from(runner, repo, entry, directory, foreign=taken_in != repo.network_id)
        except LockboxError as exc:
            error = exc.msg
            if log:
                log("could not restore %s from its checkpoint (%s): starting it fresh; the checkpoint is kept"
                    % (entry["container"], exc.msg))
            _docker.start(runner, host, entry["id"])
        started = ((_docker.inspect(runner, host, entry["id"]) or {}).get("State") or {}).get("StartedAt")
        outcome[entry["container"]] = {"restored": error is None, "error": error, "started_at": started}
    _record_restored(directory, outcome)
    return outcome


def _current(runner, host, entries):
    """container name -> its inspect answer (None when it does not exist)."""
    return {e["container"]: _docker.inspect(runner, host, e["container"]) for e in entries}


def restore(runner, repo, name, check_mode=False, log=None):
    """Restore checkpoint ``name`` into the repository's existing containers; (changed, actions, outcome)."""
    found = manifest(repo.mount, name)
    if not found:
        names = [e["name"] for e in listing(repo.mount)]
        raise InvalidInput("repository %s has no checkpoint %r (it has: %s)"
                           % (repo.name, name, ", ".join(names) or "none"))
    host = _repo_daemon.docker_host(repo.network_id)
    if _docker.server_version(runner, host) is None:
        raise InvalidInput("repository %s is not up (its dockerd does not answer): run repo up first" % repo.name)
    entries = found.get("containers") or []
    current = _current(runner, host, entries)
    missing = [n for n, c in current.items() if c is None]
    if missing:
        raise InvalidInput("cannot restore %s: container(s) %s no longer exist; repo up recreates them (and "
                           "restores the checkpoint repo down --checkpoint left)" % (name, ", ".join(missing)))
    last = restored_outcome(repo.mount, name)
    if all((c.get("State") or {}).get("Running") and (c.get("State") or {}).get("StartedAt") ==
           (last.get(n) or {}).get("started_at") for n, c in current.items()):
        return False, [], last  # running from this restore (or its fresh fallback) still
    ordered = [e for service in _rules.restore_order([e["service"] for e in entries],
                                                     {e["service"]: e["depends_on"] for e in entries})
               for e in entries if e["service"] == service]
    actions = [{"action": "restore", "detail": "stop %s and start it from checkpoint %s" % (e["container"], name)}
               for e in ordered]
    if check_mode:
        return True, actions, {}
    _mark_stopped(repo, ordered, stopped=True)  # the watchdog does not fight the restore
    try:
        for entry in ordered:
            if (current[entry["container"]].get("State") or {}).get("Running"):
                _docker.stop(runner, host, entry["container"])
        outcome = restore_containers(runner, repo, path_of(repo.mount, name),
                                     [dict(e, id=current[e["container"]]["Id"]) for e in ordered], log=log)
    finally:
        _mark_stopped(repo, ordered, stopped=False)
    return True, actions, outcome


# --------------------------------------------------------------------------------------
# Module entry point


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.criu_checkpoint."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
    layout = _repository.layout_of(params)
    record = _state.ready_record(layout.state_dir, params["repository"])
    repo = _project.Repository.from_record(layout, record)
    if not os.path.ismount(repo.mount):
        raise InvalidInput("repository %s is not mounted: run repo up first" % repo.name)
    state, name = params["state"], params.get("name")
    if state == "listed":
        return {"changed": False, "checkpoints": listing(repo.mount), "pending": pending(repo.mount, record)}
    if not name:
        raise InvalidInput("name is required with state=%s" % state)
    warnings = []
    if state == "present":
        changed, actions, found = create(runner, repo, name, leave_running=params.get("leave_running", True),
                                         check_mode=check_mode)
        result = {"checkpoint": found}
    elif state == "restored":
        # The journal hears of a fallback too; the module's own output is its JSON result.
        changed, actions, outcome = restore(runner, repo, name, check_mode=check_mode,
                                            log=lambda text: journal(text, stderr=False))
        warnings = ["%s started fresh: its restore failed (%s); checkpoint %s is kept" % (c, o["error"], name)
                    for c, o in sorted(outcome.items()) if o.get("error")]
        result = {"restored": outcome}
    else:
        changed, actions = delete(repo, name, check_mode=check_mode)
        result = {}
    result.update(changed=changed, actions=actions)
    if warnings:
        result["warnings"] = warnings
    return result


# --------------------------------------------------------------------------------------
# repo down --checkpoint / repo up


def journal(text, stderr=True):
    """Tell the host's journal (and the caller, on stderr) why a service did not come back from its checkpoint."""
    import sys
    import syslog
    syslog.openlog("renet")
    syslog.syslog(syslog.LOG_WARNING, text)
    if stderr:
        sys.stderr.write("renet: %s\n" % text)


def checkpoint_for_down(runner, repo, check_mode=False):
    """Before repo down: checkpoint (and stop) the labelled containers as the one the next up restores."""
    if not labelled_running(runner, repo):
        return []
    if not check_mode:
        delete(repo, _rules.DOWN)
    _changed, actions, _found = create(runner, repo, _rules.DOWN, leave_running=False, check_mode=check_mode,
                                       lockbox_name=True)
    if not check_mode:
        set_pending(repo.mount, _rules.DOWN)
    return actions


def restore_directory(repo, environ):
    """The checkpoint repo up asked renet compose to restore from (RESTORE_ENV), checked to be this repository's."""
    wanted = environ.get(RESTORE_ENV)
    if not wanted:
        return None
    directory = os.path.realpath(wanted)
    if os.path.dirname(directory) != os.path.realpath(root_of(repo.mount)) or \
            not _rules.NAME.fullmatch(os.path.basename(directory)):
        raise InvalidInput("%s=%s is not a checkpoint of repository %s" % (RESTORE_ENV, wanted, repo.name))
    return directory


def restore_during_up(runner, repo, directory, project, compose_cli):
    """``renet compose up`` under repo up with a pending checkpoint: dependencies first, then restores.

    ``project``: (directory, compose model, the up command line); ``compose_cli(args)`` runs
    docker compose on the rendered project and returns its exit status. The project's
    containers are created, the services that are not restored are started and waited for
    (healthy when they have a healthcheck), then the checkpointed ones are started from their
    CRIU images in depends_on order; the caller's ``up`` then finds them running.
    """
    project_dir, model, command = project
    found = _read_json(os.path.join(directory, MANIFEST)) or {}
    services = model.get("services") or {}
    named = [c for c in command[1:] if not c.startswith("-")]
    where = os.path.relpath(project_dir, repo.mount)
    done = _read_json(os.path.join(directory, RESTORED)) or {}
    entries = [e for e in found.get("containers") or [] if e["project_dir"] == where and e["service"] in services
               and (not named or e["service"] in named) and e["container"] not in done]
    if not entries:
        return {}

    def compose(*args):
        if compose_cli(list(args)) != 0:
            raise LockboxError("docker compose %s failed while restoring checkpoint %s" % (
                " ".join(args), os.path.basename(directory)))

    compose("up", "--no-start", *named)
    restored = {e["service"] for e in entries}
    others = [s for s in (named or sorted(services)) if s not in restored]
    if others:
        compose("up", "-d", "--wait", *others)
    by_service = {c["service"]: c for c in _project.containers(runner, repo.network_id)
                  if c.get("project_dir") and os.path.realpath(c["project_dir"]) == os.path.realpath(project_dir)}
    order = _rules.restore_order([e["service"] for e in entries],
                                 {s: list(services[s].get("depends_on") or {}) for s in services})
    ready, outcome = [], {}
    for service in order:
        entry = next(e for e in entries if e["service"] == service)
        current = by_service.get(service)
        if current is None or current["state"] == "running":
            # Started already (something that is not checkpointed depends on it): never restored over.
            journal("%s was not restored from checkpoint %s: it was already %s" % (
                entry["container"], os.path.basename(directory), "running" if current else "missing"))
            outcome[entry["container"]] = {"restored": False, "error": "already started", "started_at": None}
            continue
        ready.append(dict(entry, id=current["id"]))
    _mark_stopped(repo, ready, stopped=True)  # the watchdog does not start one while it is being restored
    try:
        outcome.update(restore_containers(runner, repo, directory, ready, log=journal))
    finally:
        _mark_stopped(repo, ready, stopped=False)
    _record_restored(directory, outcome)
    return outcome
