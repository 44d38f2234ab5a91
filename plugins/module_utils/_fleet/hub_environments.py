# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's users' environments: one dockerd and one container per user, in a /26 of their own.

A user's environment is built like a repository's services, from the same pieces: a networkId
from 32768 up (kept in ``<workspace>/<user>-docker/.networkid``, so a returning user gets the
same one), the daemon of ``repo_daemon`` with its data-root in ``<workspace>/<user>-docker``,
the loopback guard of ``loopback_net`` (users cannot reach each other or the repositories),
and the user's container on the /26's first service IP, from the template's labels. CPU and
memory limits are properties of the user's slice, which holds the daemon and the container.

A template with ``docker: per-user`` gets the daemon in its container, never its raw socket (a
root dockerd's socket is the host's root): the Hub judges each request by the sandbox's rule
(``sandbox.DockerGate``: the compose allowlist, binds only inside the user's workspace). A
template with ``checkpoint: true`` hibernates when idle: the container is checkpointed by
``criu_checkpoint``'s library into the root-only data-root (not the workspace the user's
container sees), the daemon stops, and the next request restores it with its memory.

Every step runs in a worker thread of the Hub; progress is kept per user for the waiting page.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import shutil
import socket
import threading
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _criu
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_audit as _hub_audit
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox as _sandbox
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

NETWORK_ID_FILE = ".networkid"
NETWORK_ID_STEP = 64
CONTAINER_SLOT = 0
# Where `systemctl set-property` keeps properties (runtime, persistent): the users' limits.
CONTROL_DIRS = ("/run/systemd/system.control", "/etc/systemd/system.control")
PORT_TIMEOUT = 180.0
SPAWN_ATTEMPTS_KEPT = 20
# One directory per user holding the socket of their judged Docker API (GATE_DIR is root's, 0700);
# the directory is what the container mounts, so a Hub restart's new socket is seen there.
GATE_DIR = "/run/rediacc/hub/users"
GATE_SOCKET = "docker.sock"
CONTAINER_GATE_DIR = "/run/lockbox"
# The checkpoint an idle environment hibernates into, in <data-root>/.rediacc/checkpoint/.
HIBERNATION = "hub-hibernate"
# CRIU failures in a row (dump or restore) after which the user's container is made anew.
MAX_CRIU_FAILURES = 3
CRIU_STATE = ".rediacc/hub-criu.json"
SPEC_LABEL = "rediacc.hub.spec"

# What criu_checkpoint's library needs of a repository: a user's environment has the same three.
_EnvRepository = collections.namedtuple("_EnvRepository", "name mount network_id")


def docker_root(workspace_dir, user):
    """``<workspace>/<user>-docker``: the user's daemon's home (data-root under .rediacc/docker/data)."""
    return os.path.join(workspace_dir, "%s-docker" % user)


def workspace_of(workspace_dir, user):
    return os.path.join(workspace_dir, user)


def gate_dir(user):
    return os.path.join(GATE_DIR, user)


def gate_paths(workspace_dir, user, network_id):
    """Where the user's own containers may bind host paths: their workspace (all of it), nothing else."""
    workspace = workspace_of(workspace_dir, user)
    return _isolation.HostPaths(workspace, workspace, network_id=network_id, private=False)


def container_name(user):
    return "hub-%s" % "".join(c if c.isalnum() or c in "_.-" else "-" for c in user)


MAX_USER_NETWORK_ID = (1 << 24) - NETWORK_ID_STEP  # the last /26 of 127.0.0.0/8


def _valid_network_id(text, taken):
    """A marker's networkId, when it is one the Hub could have given: in the users' range, on a /26
    boundary, not another user's. The markers lie in the repository's mount, where its containers
    may write: a forged one (the repository's own networkId, say) is ignored, never used."""
    if not text.isdigit():
        return None
    value = int(text)
    ok = _hub.FIRST_USER_NETWORK_ID <= value <= MAX_USER_NETWORK_ID and value % NETWORK_ID_STEP == 0
    return value if ok and value not in taken else None


def recorded_network_ids(workspace_dir):
    """{user: networkId} of every data-root (a real directory, not a link) with a valid marker."""
    found = {}
    for entry in sorted(os.listdir(workspace_dir)) if os.path.isdir(workspace_dir) else []:
        root = os.path.join(workspace_dir, entry)
        if entry.endswith("-docker") and not os.path.islink(root) and os.path.isdir(root):
            text = (read_text(os.path.join(root, NETWORK_ID_FILE)) or "").strip()
            value = _valid_network_id(text, set(found.values()))
            if value is not None:
                found[entry[:-len("-docker")]] = value
    return found


def network_id_for(workspace_dir, user, lock):
    """The user's networkId: the recorded one, else the lowest free one from 32768 (recorded now).

    The marker's time is the environment's last start: ``renet hub gc`` measures age by it.
    """
    with lock:
        recorded = recorded_network_ids(workspace_dir)
        if user in recorded:
            os.utime(os.path.join(docker_root(workspace_dir, user), NETWORK_ID_FILE))
            return recorded[user]
        taken = set(recorded.values())
        network_id = _hub.FIRST_USER_NETWORK_ID
        while network_id in taken:
            network_id += NETWORK_ID_STEP
        root = docker_root(workspace_dir, user)
        if os.path.islink(root):
            raise LockboxError("the data-root %s is a link: refused (the Hub never writes through one)" % root)
        os.makedirs(root, mode=0o700, exist_ok=True)
        write_atomic(os.path.join(root, NETWORK_ID_FILE), "%d\n" % network_id, mode=0o600)
        return network_id


def _daemon_configured(network_id):
    return os.path.exists(_repo_daemon.config_path(network_id)) or \
        _systemd.read_unit_file(_repo_daemon.unit_name(network_id)) is not None


def _mounts_under(path, mountinfo="/proc/self/mountinfo"):
    """Mount points at or below ``path`` (a data-root with a mount in it is never removed)."""
    found = []
    for line in (read_text(mountinfo) or "").splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape") if len(fields) > 4 else ""
        if point == path or point.startswith(path.rstrip("/") + "/"):
            found.append(point)
    return found


def gc_candidates(workspace_dir, max_age, now, configured=_daemon_configured, mounts=_mounts_under):
    """Abandoned data-roots: marker older than ``max_age`` seconds and its daemon no longer configured.

    Returns [{"user", "path", "network_id", "age_days", "eligible", "reason"}] for every data-root.
    """
    report = []
    for user, network_id in sorted(recorded_network_ids(workspace_dir).items()):
        root = docker_root(workspace_dir, user)
        age = now - os.stat(os.path.join(root, NETWORK_ID_FILE)).st_mtime
        entry = {"user": user, "path": root, "network_id": network_id, "age_days": round(age / 86400, 1)}
        if age <= max_age:
            entry.update(eligible=False, reason="used within the last %d days" % (max_age // 86400))
        elif configured(network_id):
            entry.update(eligible=False, reason="its daemon rediacc-docker-%d is still configured" % network_id)
        elif mounts(root):
            entry.update(eligible=False, reason="something is mounted in it: %s" % mounts(root)[0])
        else:
            entry.update(eligible=True, reason="unused for %.0f days, no daemon" % (age / 86400))
        report.append(entry)
    return report


def gc(workspace_dir, max_age, dry_run, *, now=None, configured=_daemon_configured, mounts=_mounts_under):
    """``renet hub gc``: remove (or with ``dry_run`` only list) the abandoned data-roots; users' workspaces stay."""
    report = gc_candidates(workspace_dir, max_age, time.time() if now is None else now, configured, mounts)
    for entry in report:
        entry["removed"] = False
        if entry["eligible"] and not dry_run:
            shutil.rmtree(entry["path"])
            entry["removed"] = True
    return report


def daemon_service_lines(network_id):
    """What a user's daemon adds to the repository daemon's unit: it runs in the user's slice."""
    return ["Slice=%s" % _loopback_net.repository_slice(network_id)]


def removal_steps(runner, network_id):
    """(name, detail, apply) steps that remove a user's daemon, slices and limits (not the data-root)."""
    steps = _repo_daemon.removal_steps(runner, network_id) + _loopback_net.removal_steps(runner, network_id)
    user_slice = _loopback_net.repository_slice(network_id)
    if any(os.path.isdir(os.path.join(d, user_slice + ".d")) for d in CONTROL_DIRS):
        steps.append(("revert-limits", "systemctl revert %s (the user's limits)" % user_slice,
                      lambda: _systemd.systemctl(runner, "revert", user_slice)))
    return steps


def slice_limits(template):
    """``systemctl set-property`` arguments of the template's limits."""
    props = []
    if template.get("limits.cpu"):
        props.append("CPUQuota=%s" % template["limits.cpu"])
    if template.get("limits.memory"):
        props.append("MemoryMax=%s" % template["limits.memory"])
    return props


def container_spec(user, network_id, template, workspace_dir, image):
    """The Engine API body that creates the user's container."""
    ip = _compose.service_ip(network_id, CONTAINER_SLOT)
    command = _hub.expand_command(template.get("command") or "", ip)
    host = {"NetworkMode": "host", "ShmSize": template["shm_size"], "CapDrop": ["NET_RAW"], "Init": True,
            "CgroupParent": _loopback_net.service_slice(network_id, CONTAINER_SLOT),
            "SecurityOpt": ["no-new-privileges"]}
    # runc hands CRIU the environment's own configuration (written before each dump or restore).
    host["Annotations"] = {_compose.CRIU_CONFIG_ANNOTATION: _compose.criu_config(network_id)}
    env = ["SERVICE_IP=%s" % ip, "HUB_USER=%s" % user, "HOME=%s" % template["workspace"]]
    labels = {"rediacc.hub.user": user, "rediacc.hub.template": template.get("name", ""),
              "rediacc.network_id": str(network_id), "rediacc.service_ip": ip}
    binds = []
    if template["mode"] == "ephemeral":
        host["Tmpfs"] = {template["workspace"]: "rw,nosuid,nodev,size=%d" % (1 << 30)}
    else:
        binds.append("%s:%s:rw" % (workspace_of(workspace_dir, user), template["workspace"]))
        if template.get("checkpoint"):
            labels["rediacc.checkpoint"] = "true"  # what criu_checkpoint dumps
    if template.get("docker") == "per-user":
        # The judged API: DOCKER_HOST names it in the mounted directory (a Hub restart's new socket
        # shows there); /var/run/docker.sock too, for programs that only know that path.
        binds += ["%s:%s:ro" % (gate_dir(user), CONTAINER_GATE_DIR),
                  "%s:/var/run/docker.sock" % os.path.join(gate_dir(user), GATE_SOCKET)]
        env += ["DOCKER_HOST=unix://%s/%s" % (CONTAINER_GATE_DIR, GATE_SOCKET),
                "HUB_WORKSPACE_HOST=%s" % workspace_of(workspace_dir, user)]
    if binds:
        host["Binds"] = binds
    spec = {"Image": image, "User": template["user"], "WorkingDir": template["workspace"], "Env": env,
            "Labels": labels, "HostConfig": host}
    if command:
        spec["Cmd"] = ["/bin/sh", "-c", command]
    # What the container was made from: a stopped one made from another spec is made anew.
    labels[SPEC_LABEL] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return spec


class Environment:
    """What the Hub knows of one user's environment."""

    def __init__(self, user):
        self.user, self.template, self.status = user, None, "absent"
        self.network_id, self.address, self.error = None, None, None
        self.steps, self.last_active, self.lock = [], time.time(), threading.Lock()
        self.follower, self.cpu_usec, self.stats, self.gate = None, None, {}, None

    def step(self, text):
        self.steps = [*self.steps, text][-SPAWN_ATTEMPTS_KEPT:]


class _Touching:
    """An audit log that also marks the user active: an event of their daemon is their work."""

    def __init__(self, log, touch):
        self.log, self.touch = log, touch

    def write(self, record):
        self.touch()
        self.log.write(record)


class Environments:
    """Every user's environment on this host, built and stopped in worker threads."""

    def __init__(self, runner, config, options, *, audit_log=None, port_timeout=PORT_TIMEOUT):
        self.runner, self.config, self.options = runner, config, options
        self.workspace_dir = options["workspace_dir"]
        self.audit_log = audit_log
        self.audit = audit_log.hub_event if audit_log else (lambda user, kind, **fields: None)
        self.port_timeout = port_timeout
        self.users, self.lock, self.id_lock = {}, threading.Lock(), threading.Lock()
        # Called with a user before their environment stops being ready (the router's direct route goes first).
        self.leaving = None

    def _env(self, user):
        with self.lock:
            return self.users.setdefault(user, Environment(user))

    def template_of(self, env):
        name = env.template or self.config["default_template"]
        return dict(self.config["templates"][name], name=name)

    def _leave(self, user):
        """The user's direct route withdrawn; a router that fails to reload does not keep the environment up."""
        if self.leaving is not None:
            try:
                self.leaving(user)
            except (LockboxError, OSError) as exc:
                self.audit(user, "route-withdraw-failed", error=str(getattr(exc, "msg", exc)))

    def choose_template(self, user, name):
        env = self._env(user)
        if env.template != name and env.status == "ready":
            self._leave(user)
            env.status = "rebuild"  # switching template rebuilds the container on the next request
            env.address = None
        env.template = name

    def touch(self, user):
        self._env(user).last_active = time.time()

    def address(self, user):
        env = self._env(user)
        return env.address if env.status == "ready" else None

    def progress(self, user):
        env = self._env(user)
        return {"status": env.status, "steps": env.steps, "ready": env.status == "ready", "error": env.error}

    def ensure(self, user):
        """Start building the user's environment unless it is being built."""
        env = self._env(user)
        with env.lock:
            if env.status in ("starting", "ready"):
                return
            env.status, env.error, env.steps = "starting", None, []
        threading.Thread(target=self._build, args=(env,), daemon=True).start()

    def _build(self, env):
        try:
            self.build(env)
            env.status = "ready"
            env.step("ready")
            self._follow_daemon(env)
        except (LockboxError, OSError) as exc:
            env.status, env.error = "failed", str(getattr(exc, "msg", exc))
            env.step("failed: %s" % env.error)
            self.audit(env.user, "spawn-failed", error=env.error)

    def _follow_daemon(self, env):
        """The audit records of the user's daemon, for as long as the environment is ready."""
        if self.audit_log is None or (env.follower and env.follower.is_alive()):
            return
        who = {"user": env.user, "network_id": env.network_id, "socket": _repo_daemon.socket_path(env.network_id),
               "container": container_name(env.user)}
        env.follower = threading.Thread(target=_hub_audit.follow, daemon=True, args=(
            self.runner, who, _Touching(self.audit_log, lambda: self.touch(env.user)), lambda: env.status == "ready"))
        env.follower.start()

    def build(self, env):
        """Network, daemon, image, container, port: each step reported on the waiting page."""
        template = self.template_of(env)
        env.step("allocating your network")
        env.network_id = network_id_for(self.workspace_dir, env.user, self.id_lock)
        root = docker_root(self.workspace_dir, env.user)
        host = _repo_daemon.docker_host(env.network_id)
        env.step("starting your Docker daemon (networkId %d)" % env.network_id)
        refuse_links(self.workspace_dir, _repo_daemon.data_root(root))
        self._daemon(env.network_id, root, template)
        if template.get("docker") == "per-user":
            self._open_gate(env)
        env.step("getting image %s" % template["image"])
        self._image(host, template["image"])
        env.step("starting your container (template %s)" % template["name"])
        if template["mode"] != "ephemeral":  # an ephemeral workspace is a tmpfs in the container
            prepare_workspace(workspace_of(self.workspace_dir, env.user), template)
        created = self._container(env, host, template)
        if created and template.get("hook.on_create"):
            env.step("running the on_create hook")
            _docker.exec_run(self.runner, host, container_name(env.user), ["/bin/sh", "-c", template["hook.on_create"]],
                             user=template["user"])
        ip = _compose.service_ip(env.network_id, CONTAINER_SLOT)
        first_port = sorted(self.config["routes"].values())[0]
        env.step("waiting for your environment to answer on port %d" % first_port)
        wait_for_port(ip, first_port, self.port_timeout)
        env.address = ip

    def _daemon(self, network_id, root, template):
        _loopback_net.ensure_guard(self.runner, network_id)
        _loopback_net.converge_service(self.runner, network_id, CONTAINER_SLOT)
        limits = slice_limits(template)
        if limits:
            # --runtime: the limits live as long as the slice; the next build sets them again.
            _systemd.systemctl(self.runner, "set-property", "--runtime", _loopback_net.repository_slice(network_id),
                               *limits)
        _repo_daemon.start_daemon(self.runner, network_id, root, daemon_service_lines(network_id))

    def _image(self, host, image):
        if _docker.image_exists(self.runner, host, image):
            return
        source = self.options.get("docker_socket")
        if source and _docker.image_exists(self.runner, "unix://" + source, image):
            _docker.copy_image(self.runner, "unix://" + source, host, image)  # what the repository already has
        else:
            _docker.pull(self.runner, host, image)

    def _container(self, env, host, template):
        """Start the user's container (created from the template when missing or of another template)."""
        name = container_name(env.user)
        found = _docker.inspect(self.runner, host, name)
        spec = container_spec(env.user, env.network_id, template, self.workspace_dir, template["image"])
        labels = ((found or {}).get("Config") or {}).get("Labels") or {}
        running = ((found or {}).get("State") or {}).get("Running")
        repo = self._repository(env)
        # Another template is made at once (the user chose it); a changed template (image,
        # command, limits, ...) at the next start, never under a running environment.
        if found and (labels.get("rediacc.hub.template") != template["name"] or
                      (not running and labels.get(SPEC_LABEL) != spec["Labels"][SPEC_LABEL])):
            _docker.remove(self.runner, host, [name])
            _criu.delete(repo, HIBERNATION)  # its processes belonged to the old container
            found = None
        if found is None:
            _docker.create(self.runner, host, name, spec)
            self.audit(env.user, "container-created", template=template["name"])
            _docker.start(self.runner, host, name)
            return True
        if running:
            return False
        hibernated = _criu.manifest(repo.mount, HIBERNATION)
        if not hibernated:
            _docker.start(self.runner, host, name)
        elif not self._resume(env, host, template, found, hibernated):
            # CRIU failed MAX_CRIU_FAILURES times in a row: the container is made anew from the template.
            _docker.remove(self.runner, host, [name])
            return self._container(env, host, template)
        return False

    # -- hibernation -------------------------------------------------------------------------

    def _repository(self, env):
        return _EnvRepository("hub user %s" % env.user, docker_root(self.workspace_dir, env.user), env.network_id)

    def _hook(self, env, host, template, which):
        """Run the template's hook ``which`` as the container's user; a failure is recorded, not fatal."""
        hook = template.get("hook.%s" % which)
        if not hook:
            return
        env.step("running the %s hook" % which)
        try:
            _docker.exec_run(self.runner, host, container_name(env.user), ["/bin/sh", "-c", hook],
                             user=template["user"])
        except LockboxError as exc:
            self.audit(env.user, "hook-failed", hook=which, error=exc.msg)

    def _criu_failed(self, env, what, error):
        """Count one CRIU failure in a row; True when the container is to be made anew (and the count reset)."""
        root = docker_root(self.workspace_dir, env.user)
        failures = criu_failures(root) + 1
        self.audit(env.user, "%s-failed" % what, error=error, failures_in_a_row=failures)
        recreate = failures >= MAX_CRIU_FAILURES
        if recreate:
            self.audit(env.user, "criu-recreate", failures_in_a_row=failures)
        record_criu_failures(self.workspace_dir, root, 0 if recreate else failures)
        return recreate

    def _resume(self, env, host, template, found, hibernated):
        """Start the hibernated container from its checkpoint (``hibernated``: its manifest); False when
        it is to be made anew."""
        repo = self._repository(env)
        name = container_name(env.user)
        entries = hibernated.get("containers") or []
        entry = next((e for e in entries if e.get("container") == name), None)
        env.step("restoring your environment from hibernation")
        if entry is None:
            outcome = {"error": "the checkpoint holds no images of %s" % name}
            _docker.start(self.runner, host, name)
        else:
            outcome = _criu.restore_containers(self.runner, repo, _criu.path_of(repo.mount, HIBERNATION),
                                               [dict(entry, id=found["Id"])])[name]
        _criu.delete(repo, HIBERNATION)  # process memory: kept no longer than needed
        if outcome["error"]:
            return not self._criu_failed(env, "restore", outcome["error"])
        record_criu_failures(self.workspace_dir, repo.mount, 0)
        self.audit(env.user, "resumed")
        self._hook(env, host, template, "checkpoint.post_restore")
        return True

    def hibernate(self, user):
        """Idle: checkpoint the container (templates with ``checkpoint``) and stop the daemon; else stop.

        Whatever fails on the way, the environment ends stopped (its files kept): never half-hibernated.
        """
        env = self._env(user)
        template = self.template_of(env)
        if not template.get("checkpoint") or template["mode"] == "ephemeral" or env.status != "ready":
            self.stop(user)
            return
        self._leave(user)
        with env.lock:
            env.status, env.address = "hibernating", None
        host, name, repo = _repo_daemon.docker_host(env.network_id), container_name(user), self._repository(env)
        hibernated = False
        try:
            self._hook(env, host, template, "checkpoint.pre_dump")
            refuse_links(self.workspace_dir, _criu.root_of(repo.mount))
            _criu.delete(repo, HIBERNATION)
            _criu.create(self.runner, repo, HIBERNATION, leave_running=False, lockbox_name=True, only={name})
            hibernated = True
            self.audit(user, "hibernated")
        except (LockboxError, OSError) as exc:
            with contextlib.suppress(LockboxError, OSError):
                _docker.stop(self.runner, host, name)
            if self._criu_failed(env, "checkpoint", str(getattr(exc, "msg", exc))):
                with contextlib.suppress(LockboxError, OSError):
                    _docker.remove(self.runner, host, [name])
        finally:
            try:
                _systemd.systemctl(self.runner, "stop", _repo_daemon.unit_name(env.network_id))
            finally:
                env.status = "hibernated" if hibernated else "stopped"

    # -- the judged Docker API ---------------------------------------------------------------

    def _open_gate(self, env):
        """The user's Docker API socket, each request judged before it reaches their daemon (for the Hub's life)."""
        if env.gate is not None:
            return
        os.makedirs(GATE_DIR, mode=0o700, exist_ok=True)
        directory = gate_dir(env.user)
        if os.path.islink(directory):
            raise LockboxError("%s is a link: refused" % directory)
        os.makedirs(directory, mode=0o711, exist_ok=True)
        path = os.path.join(directory, GATE_SOCKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # the socket of an earlier Hub
        # Any uid of the container may use it: the directory is mounted in that one container only.
        listener = _sandbox.listen(path, 0o666)
        gate = _sandbox.DockerGate(_repo_daemon.socket_path(env.network_id),
                                   gate_paths(self.workspace_dir, env.user, env.network_id),
                                   lambda why: self.audit(env.user, "docker-refused", reason=why))
        gate.serve(listener)
        env.gate = listener

    def _close_gate(self, env):
        if env.gate is not None:
            env.gate.close()
            env.gate = None
        shutil.rmtree(gate_dir(env.user), ignore_errors=True)

    def sample(self, disk_usage=None):
        """The dashboard's figures of every known environment: disk used, containers and images."""
        disk_usage = disk_usage or (lambda path: _du(self.runner, path))
        self.status()  # every user with a data-root is known
        with self.lock:
            envs = list(self.users.values())
        for env in envs:
            paths = (docker_root(self.workspace_dir, env.user), workspace_of(self.workspace_dir, env.user))
            stats = {"disk_bytes": sum(disk_usage(p) or 0 for p in paths if os.path.isdir(p))}
            if env.status == "ready" and env.network_id is not None:
                try:
                    counts = _docker.info(self.runner, _repo_daemon.docker_host(env.network_id))
                    stats.update(containers=counts.get("Containers"), images=counts.get("Images"))
                except LockboxError:
                    pass
            env.stats = stats

    def idle_pass(self, now, interval, cpu_usage=None, active=()):
        """The users whose environment has been idle ``--idle-timeout``: no request or message from
        their browser (touch through the Hub, ``active`` on the router's direct route), no event of
        their daemon, no CPU above the threshold in their slice."""
        cpu_usage = cpu_usage or slice_cpu_usec
        timeout = self.options.get("idle_timeout") or 0
        with self.lock:
            envs = [e for e in self.users.values() if e.status == "ready"]
        idle = []
        for env in envs:
            usage = cpu_usage(env.network_id)
            if env.user in active or _hub.still_working(env.cpu_usec, usage, interval):
                env.last_active = now
            env.cpu_usec = usage
            if _hub.idle_for(now, env.last_active, timeout):
                idle.append(env.user)
        return idle

    def stop(self, user):
        env = self._env(user)
        self._leave(user)
        with env.lock:
            env.status, env.address = "stopping", None
        if env.network_id is None:
            env.network_id = recorded_network_ids(self.workspace_dir).get(user)
        if env.network_id is not None:
            host = _repo_daemon.docker_host(env.network_id)
            template = self.template_of(env)
            with contextlib.suppress(LockboxError):
                if template["mode"] == "ephemeral":
                    _docker.remove(self.runner, host, [container_name(user)])
                else:
                    _docker.stop(self.runner, host, container_name(user))
            _systemd.systemctl(self.runner, "stop", _repo_daemon.unit_name(env.network_id))
            # A stop is a stop: the next start is a fresh one, not a resume of an older hibernation.
            _criu.delete(self._repository(env), HIBERNATION)
            if template["mode"] == "ephemeral":
                self._forget(env)
        env.status = "stopped"

    def _forget(self, env):
        """An ephemeral environment leaves nothing: daemon unit and configuration, slices, data-root."""
        for _name, _detail, apply in removal_steps(self.runner, env.network_id):
            apply()
        shutil.rmtree(docker_root(self.workspace_dir, env.user), ignore_errors=True)
        self._close_gate(env)
        self.audit(env.user, "ephemeral-removed", network_id=env.network_id)
        env.network_id = None

    def status(self):
        known = recorded_network_ids(self.workspace_dir)
        for user in known:
            self._env(user)
        now = time.time()
        with self.lock:
            envs = list(self.users.values())
        timeout = self.options.get("idle_timeout") or 0
        return [dict({"user": e.user, "status": e.status, "template": self.template_of(e)["name"],
                      "network_id": e.network_id or known.get(e.user), "address": e.address,
                      "idle_seconds": int(now - e.last_active), "error": e.error,
                      "stops_in_seconds": max(0, int(timeout - (now - e.last_active))) if timeout else None},
                     **e.stats)
                for e in sorted(envs, key=lambda e: e.user)]


def criu_failures(root):
    """CRIU failures in a row recorded for the environment whose data-root is ``root``."""
    try:
        found = json.loads(read_text(os.path.join(root, CRIU_STATE)) or "{}")
    except ValueError:
        return 0
    count = found.get("failures_in_a_row") if isinstance(found, dict) else None
    return count if isinstance(count, int) and count >= 0 else 0


def record_criu_failures(workspace_dir, root, count):
    path = os.path.join(root, CRIU_STATE)
    refuse_links(workspace_dir, path)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps({"failures_in_a_row": count}) + "\n", mode=0o600)


def refuse_links(base, path):
    """Refuse ``path`` when it or a directory between ``base`` and it is a symbolic link.

    The daemon's data-root lies where the repository's containers may write: a data-root that
    leads elsewhere (``/`` or another user's) must never reach a root dockerd.
    """
    relative = os.path.relpath(path, base)
    if relative.startswith(".."):
        raise LockboxError("%s is outside %s: refused" % (path, base))
    current = base
    for part in relative.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise LockboxError("%s is a link: refused (the Hub never hands a daemon a path through one)" % current)


def prepare_workspace(path, template):
    """The user's persistent workspace, owned by the container's user when the template names a uid.

    The workspaces lie in the repository's mount, where its containers may write: a workspace
    that is not a real directory (a link put there to /etc/shadow, say) is refused, and the
    owner is changed on the entry itself, never through a link.
    """
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
        raise LockboxError("the workspace %s is not a directory of its own (a link?): refused" % path)
    os.makedirs(path, mode=0o750, exist_ok=True)
    ids = template["user"].split(":")
    if ids[0].isdigit():
        uid = int(ids[0])
        gid = int(ids[1]) if len(ids) > 1 and ids[1].isdigit() else uid
        if os.lstat(path).st_uid != uid:
            os.chown(path, uid, gid, follow_symlinks=False)


def _du(runner, path):
    """Bytes used under ``path`` (``du -s``, one file system), or None when it cannot tell."""
    try:
        out = runner.run(["du", "-s", "-x", "--block-size=1", path], ok_rcs=(0, 1)).stdout
    except LockboxError:
        return None
    first = out.split(None, 1)[0] if out.strip() else ""
    return int(first) if first.isdigit() else None


def slice_cpu_usec(network_id):
    """CPU time the user's slice (daemon and containers) used so far, from its cgroup; None when gone."""
    text = read_text(os.path.join(_loopback_net.slice_cgroup(_loopback_net.repository_slice(network_id)),
                                  "cpu.stat")) or ""
    for line in text.splitlines():
        name, _space, value = line.partition(" ")
        if name == "usage_usec" and value.strip().isdigit():
            return int(value)
    return None


def wait_for_port(ip, port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LockboxError("nothing answered on %s:%d within %.0f s" % (ip, port, timeout)) from None
            time.sleep(0.5)
