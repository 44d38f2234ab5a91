# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Applications in a repository: ``renet compose``, Rediaccfile lifecycle and the watchdog.

One implementation for the ``repo_app`` module and the ``renet`` command installed on hosts.
A project (a directory holding a compose file, usually next to its Rediaccfile) keeps its
service slots and saved restart policies in ``.rediacc.json``; the model handed to Docker
is written to ``.rediacc/compose.json`` beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import tempfile

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import (
    InvalidInput,
    LockboxError,
)
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import isolation as _isolation
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import bash as _bash
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")
# Services labelled rediacc.install_as=systemd run on the host (renet hub install), not in a
# container: an override puts them in this profile, which compose leaves out of every command.
HOST_PROFILE = "rediacc-host"
STATE_FILE = ".rediacc.json"
RENDERED = ".rediacc/compose.json"
REDIACCFILE = "Rediaccfile"
UP_STAMP = ".rediacc/up.json"
# One table of service IPs for the whole repository: a service name keeps its IP in every
# project of the repository and for the repository's life (forks inherit it).
SLOTS_FILE = ".rediacc/services.json"
# Rediaccfiles and compose files are looked for this many directory levels below the root.
MAX_DEPTH = 4
# docker compose options that come before the subcommand and take a value
GLOBAL_WITH_VALUE = frozenset(("-f", "--file", "-p", "--project-name", "--env-file", "--profile",
                               "--project-directory", "--ansi", "--progress", "--parallel"))
CREATING = frozenset(("up", "run", "create", "start", "restart"))
STOPPING = frozenset(("stop", "down", "kill", "pause", "rm"))
NO_DOCKER_CONFIG = {"DOCKER_CONFIG": "/nonexistent"}


def split_compose_args(args):
    """(global options, subcommand and its arguments) of a docker compose command line."""
    index = 0
    while index < len(args) and args[index].startswith("-"):
        option = args[index]
        index += 1
        if option in GLOBAL_WITH_VALUE and "=" not in option:
            index += 1
    return list(args[:index]), list(args[index:])


def _option_values(global_args, names):
    values, index = [], 0
    while index < len(global_args):
        option = global_args[index]
        if option in names and index + 1 < len(global_args):
            values.append(global_args[index + 1])
            index += 2
            continue
        values += [option.split("=", 1)[1] for name in names if option.startswith(name + "=")]
        index += 1
    return values


def compose_files(project_dir, global_args, with_overrides=False):
    """The compose files of a command: its -f options, else the default file (and its override file)."""
    given = _option_values(global_args, ("-f", "--file"))
    if given:
        return [os.path.join(project_dir, f) for f in given]
    found = [os.path.join(project_dir, n) for n in COMPOSE_FILES if os.path.isfile(os.path.join(project_dir, n))][:1]
    if found and with_overrides:
        found += [os.path.join(project_dir, n) for n in OVERRIDE_FILES
                  if os.path.isfile(os.path.join(project_dir, n))][:1]
    return found


def host_services(files):
    """Names of the services labelled ``rediacc.install_as=systemd`` in these compose files."""
    names = []
    for path in files:
        document = load_yaml(path)
        services = document.get("services") if isinstance(document, dict) else None
        for name, service in (services.items() if isinstance(services, dict) else ()):
            if isinstance(service, dict) and _hub.is_host_service(service) and str(name) not in names:
                names.append(str(name))
    return names


@contextlib.contextmanager
def host_service_args(project_dir, global_args, placeholder_image=None):
    """``global_args`` with an override that puts the host services in HOST_PROFILE (unchanged without any).

    With ``placeholder_image`` the override also gives them that image, so that compose, asked
    with ``--profile HOST_PROFILE``, prints their model (a service without image is refused).
    The override is a temporary file, removed when the block ends.
    """
    files = compose_files(project_dir, global_args, with_overrides=True)
    names = host_services(files)
    if not names:
        yield list(global_args)
        return
    extra = {"profiles": [HOST_PROFILE]}
    if placeholder_image:
        extra["image"] = placeholder_image
    handle, path = tempfile.mkstemp(prefix="lockbox-host-services-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({"services": {name: extra for name in names}}, out)
        kept, index = [], 0
        while index < len(global_args):  # the files are named again below, the override last
            if global_args[index] in ("-f", "--file"):
                index += 2
                continue
            if not global_args[index].startswith(("-f=", "--file=")):
                kept.append(global_args[index])
            index += 1
        yield [*kept, *[arg for f in files for arg in ("-f", f)], "-f", path]
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        raise LockboxError("python3-yaml is required on the host (the lockbox.fleet.machine role installs it)") \
            from None
    try:
        with open(path) as handle:
            return yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None  # docker compose reports a broken file itself, with a better message


def service_order(path):
    """Service names in the order a compose file lists them (PyYAML keeps mapping order)."""
    document = load_yaml(path)
    services = document.get("services") if isinstance(document, dict) else None
    return [str(name) for name in services] if isinstance(services, dict) else []


def _as_list(value):
    return value if isinstance(value, list) else [value] if value else []


def referenced_host_files(files, depth=0):
    """(what, path as written, directory it is relative to) of env files the compose client reads.

    docker compose reads env_file (and included or extended files) on the host, as root, before
    any model exists to check: a path to another repository's .env would land in this
    repository's containers. They are read from the files themselves, following include and
    extends.file.
    """
    found = []
    for path in files:
        document = load_yaml(path) if depth < 5 else None
        if not isinstance(document, dict):
            continue
        base = os.path.dirname(path)
        for entry in _as_list(document.get("include")):
            for included in _as_list(entry.get("path") if isinstance(entry, dict) else entry):
                found.append(("include", str(included), base))
                found += referenced_host_files([os.path.join(base, str(included))], depth + 1)
        for service in (document.get("services") or {}).values() if isinstance(document.get("services"), dict) else []:
            if not isinstance(service, dict):
                continue
            for entry in _as_list(service.get("env_file")):
                found.append(("env_file", str(entry.get("path") if isinstance(entry, dict) else entry), base))
            extends = service.get("extends")
            if isinstance(extends, dict) and extends.get("file"):
                found.append(("extends file", str(extends["file"]), base))
                found += referenced_host_files([os.path.join(base, str(extends["file"]))], depth + 1)
    return found


def check_referenced_files(repo, files, unsafe=False):
    """Refuse env files and included compose files outside the repository, before compose reads them.

    With ``unsafe`` only other repositories' secrets are refused.
    """
    problems, foreign = [], []
    for what, written, base in referenced_host_files(files):
        if "$" in written:
            problems.append("%s %s: a path with variables cannot be checked before compose reads it; write it out"
                            % (what, written))
            continue
        paths = _isolation.HostPaths(repo.mount, base, network_id=repo.network_id)
        _resolved, why = paths.judge(written, whole_tree=False)
        if why:
            problems.append("%s %s: %s" % (what, written, why))
            foreign += paths.foreign_secrets
    if foreign:
        raise InvalidInput("refused: %s names other repositories' secrets (no --unsafe lifts this)"
                           % ", ".join(foreign))
    if problems and not unsafe:
        raise InvalidInput("refused, this would break the repository's isolation: " + "; ".join(problems))


def ordered_services(files, services):
    """``services`` (as compose reports them) in file order; any the files do not show come last."""
    order = []
    for path in files:
        order += [n for n in service_order(path) if n in services and n not in order]
    return order + sorted(s for s in services if s not in order)


def env_name(service):
    return re.sub(r"[^A-Z0-9_]", "_", service.upper()) + "_IP"


def load_project_state(project_dir):
    try:
        with open(os.path.join(project_dir, STATE_FILE)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LockboxError("%s is damaged: %s" % (os.path.join(project_dir, STATE_FILE), exc)) from None


def save_json(path, content):
    write_atomic(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


def save_project_state(project_dir, state):
    save_json(os.path.join(project_dir, STATE_FILE), state)


class Repository:
    """What renet needs to know of the repository it works in."""

    def __init__(self, name, guid, network_id, mount, aliases=(), egress=None):  # noqa: PLR0917
        self.name, self.guid, self.network_id, self.mount = name, guid, network_id, mount
        self.aliases = list(aliases)  # networkIds whose addresses mean its own (see loopback_net)
        self.egress = egress  # a fork's allowlist beyond loopback; None: no limit (see loopback_net)

    @classmethod
    def from_record(cls, layout, record):
        return cls(record["name"], record["guid"], record["network_id"], layout.mount(record["guid"]),
                   record.get("address_aliases") or (), _loopback_net.egress_of(record))

    def environment(self):
        return {"REDIACC_WORKING_DIR": self.mount.rstrip("/") + "/", "REDIACC_NETWORK_ID": str(self.network_id),
                "REDIACC_REPOSITORY": self.guid, "REDIACC_REPOSITORY_NAME": self.name,
                "DOCKER_HOST": _repo_daemon.docker_host(self.network_id),
                _secrets.SECRETS_DIR_VARIABLE: _secrets.directory(self.network_id)}


def repository_for(layout, environ, cwd):
    """The repository of this call: from REDIACC_NETWORK_ID (set by repo up), else the one whose mount holds cwd."""
    network_id = environ.get("REDIACC_NETWORK_ID")
    for record in _state.HostState(layout.state_dir).all():
        mount = layout.mount(record["guid"]).rstrip("/")
        if str(record["network_id"]) == network_id or (not network_id and (cwd + "/").startswith(mount + "/")):
            return Repository.from_record(layout, record)
    raise InvalidInput("not inside a repository: run from a directory under its mount or through repo up "
                       "(REDIACC_NETWORK_ID is %s)" % (network_id or "unset"))


@contextlib.contextmanager
def _slot_table(mount):
    """The repository's service table, locked against a concurrent renet compose."""
    path = os.path.join(mount, SLOTS_FILE)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as handle:
                table = json.load(handle).get("slots") or {}
        except FileNotFoundError:
            table = {}
        except ValueError as exc:
            raise LockboxError("%s is damaged: %s" % (path, exc)) from None
        before = dict(table)
        yield table
        if table != before:
            save_json(path, {"slots": table})


def peek_slots(mount):
    """The repository's service table as it is (read only: planning in check mode)."""
    path = os.path.join(mount, SLOTS_FILE)
    try:
        with open(path) as handle:
            return dict(json.load(handle).get("slots") or {})
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LockboxError("%s is damaged: %s" % (path, exc)) from None


def claim_slots(mount, names, recorded=None):
    """Slots of ``names`` (claimed in this order when new) in the repository's table; the whole table."""
    with _slot_table(mount) as table:
        for name, slot in (recorded or {}).items():  # projects composed before the table existed
            if name not in table and slot not in table.values():
                table[name] = slot
        table.update(_compose.assign_slots(list(table) + [n for n in names if n not in table], table))
        return dict(table)


def plan_slots(runner, repo, project_dir, global_args, environ):
    """(services of a project in compose order with their repository-wide slots, compose's model, environment).

    compose interpolates ``{SVC}_IP`` while it builds the model, so the model is asked for with
    every IP the repository's table already holds: one compose call when the project's services
    are known (every up after the first). A service new to the table gets its slot and the
    model is asked for once more, now with its IP.
    """
    base = dict(environ, **repo.environment())
    table = claim_slots(repo.mount, [], load_project_state(project_dir).get("slots"))
    files = compose_files(project_dir, global_args)
    for _attempt in (1, 2):
        env = dict(base, **service_environment(repo, table))
        with host_service_args(project_dir, global_args) as args:
            model = _docker.compose_model(runner, args, env, project_dir)
        ordered = ordered_services(files, list(model.get("services") or {}))
        if all(name in table for name in ordered):
            break
        table = claim_slots(repo.mount, ordered)
    return {name: table[name] for name in ordered}, model, env


def service_environment(repo, slots):
    return {env_name(name): _compose.service_ip(repo.network_id, slot) for name, slot in slots.items()}


def render(runner, repo, project_dir, global_args, environ, *, unsafe, sentinels=None):
    """The rewritten model, its slots, saved restart policies and environment; refuses hostile settings.

    ``sentinels`` ({key: placeholder}) stand in for env secrets while compose builds the model:
    the values themselves never reach compose's command line, environment or any file on disk.
    """
    # down/stop of a project still work (unsafe is set for them): nothing is created
    check_referenced_files(repo, compose_files(project_dir, global_args), unsafe)
    placeholders = {_secrets.env_variable(k): v for k, v in (sentinels or {}).items()}
    slots, model, env = plan_slots(runner, repo, project_dir, global_args, dict(environ, **placeholders))
    out, slots, restart = _compose.rewrite(model, repo.network_id, slots, mount=repo.mount,
                                           project_dir=project_dir, unsafe=unsafe)
    for name, service in out["services"].items():
        # The service's slice: where its address rewrite applies (see _loopback_net).
        service["cgroup_parent"] = _loopback_net.service_slice(repo.network_id, slots[name])
    for variable in placeholders:
        env.pop(variable, None)
    return out, slots, restart, env


def _replace_strings(node, replace):
    if isinstance(node, dict):
        return {key: _replace_strings(value, replace) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_strings(value, replace) for value in node]
    return replace(node) if isinstance(node, str) else node


def with_secrets(model, sentinels, values):
    """``model`` with each sentinel replaced by ``values[key]`` (escaped, as compose reads the file again)."""
    def replace(text):
        for key, sentinel in sentinels.items():
            if sentinel in text:
                text = text.replace(sentinel, values[key].replace("$", "$$"))
        return text
    return _replace_strings(model, replace) if sentinels else model


def secret_references(files, opened, network_id, model):
    """(warnings, problems) about the secrets a project refers to and the repository does not have.

    An env secret the repository lacks interpolates to empty (a warning: a fork starts with
    none); a file secret it lacks stops the command.
    """
    warnings, problems = [], []
    texts = []
    for path in files + [os.path.join(base, written) for what, written, base in referenced_host_files(files)
                         if what != "env_file"]:
        with contextlib.suppress(OSError):
            with open(path) as handle:
                texts.append(handle.read())
    for key in _secrets.referenced_keys("\n".join(texts)):
        mode = opened.get(key, (None, None))[0]
        if mode != "env":
            warnings.append("%s%s is %s: it interpolates to an empty string (a fork starts with no secrets; set it "
                            "with renet secret set or lockbox.fleet.repo_secret)"
                            % (_secrets.ENV_PREFIX, key, "a file secret, not an env one" if mode else "not set"))
    own = os.path.realpath(_secrets.directory(network_id))
    for name, item in sorted((model.get("secrets") or {}).items()):
        source = item.get("file") if isinstance(item, dict) else None
        if not source or os.path.dirname(source) != own:
            continue
        key = os.path.basename(source)
        if opened.get(key, (None, None))[0] != "file":
            kind = " as a file secret" if key in opened else ""
            problems.append("secret %s needs the file secret %s, which this repository does not have%s (a fork "
                            "starts with no secrets): set it with renet secret set --mode file or "
                            "lockbox.fleet.repo_secret mode: file" % (name, key, kind))
    return warnings, problems


def compose(runner, layout, args, environ, cwd, *, unsafe=False, exec_=subprocess.call,
            warn=None, secrets_root=_secrets.SECRETS_ROOT):
    """``renet compose [--unsafe] -- ARGS``: rewrite, prepare the kernel rules, run docker compose."""
    repo = repository_for(layout, environ, cwd)
    global_args, command = split_compose_args(args)
    directories = _option_values(global_args, ("--project-directory",))
    project_dir = os.path.abspath(directories[0] if directories else cwd)
    subcommand = command[0] if command else ""
    creating = subcommand in CREATING
    # Secrets are opened only where containers are made; everything else sees placeholders.
    opened = _repo_secret.SecretStore(layout.state_dir, repo.guid).values() if creating else {}
    nonce = os.urandom(8).hex()
    sentinels = {key: "lockbox-secret-%s-%s-end" % (nonce, key) for key, (mode, _v) in opened.items()
                 if mode == "env"}
    # Hostile settings are refused where containers are made; down/stop of such a project still work.
    model, slots, restart, env = render(runner, repo, project_dir, global_args, environ,
                                        unsafe=unsafe or not creating, sentinels=sentinels)
    if creating:
        warnings, problems = secret_references(compose_files(project_dir, global_args), opened, repo.network_id,
                                               model)
        if problems:
            raise InvalidInput("; ".join(problems))
        for warning in warnings:
            (warn or (lambda _text: None))(warning)
        _repo_secret.write_files(opened, repo.network_id, secrets_root)
    live = with_secrets(model, sentinels, {k: v for k, (_m, v) in opened.items()})
    model = with_secrets(model, sentinels, {k: "[secret %s%s]" % (_secrets.ENV_PREFIX, k) for k in sentinels})
    previous = load_project_state(project_dir)
    stopped = set(previous.get("stopped") or [])
    restarts = dict(previous.get("restarts") or {})
    named = [c for c in command[1:] if not c.startswith("-")]
    if creating:
        _loopback_net.ensure_guard(runner, repo.network_id, repo.aliases, egress=repo.egress)
        for slot in sorted(set(slots.values())):
            _loopback_net.converge_service(runner, repo.network_id, slot)
        stopped -= set(named or slots)
        for service in named or slots:
            restarts.pop(service, None)  # on-failure:N counts again from here
    elif subcommand in STOPPING:
        # Deliberately stopped: the watchdog leaves these alone until the next up/start.
        stopped |= set(named or slots)
    rendered = os.path.join(project_dir, RENDERED)
    os.makedirs(os.path.dirname(rendered), mode=0o700, exist_ok=True)
    with open(rendered, "w") as handle:
        json.dump(model, handle, indent=2, sort_keys=True)
    save_project_state(project_dir, {"network_id": repo.network_id, "project": model.get("name"),
                                     "slots": slots, "restart": restart, "stopped": sorted(stopped),
                                     "restarts": restarts})
    # With env secrets, compose reads the model holding their values from tmpfs (root-only),
    # removed when it is done: the copy in the repository shows placeholders.
    handed = rendered if live == model else _repo_secret.write_live_model(live, repo.network_id, secrets_root)
    base = ["docker", "compose", "-p", model.get("name") or os.path.basename(project_dir), "-f", handed,
            "--project-directory", project_dir]
    try:
        if subcommand == "up":
            # Under repo up with a pending checkpoint: its services come back from it (criu_checkpoint).
            from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _checkpoint
            directory = _checkpoint.restore_directory(repo, environ)
            if directory:
                _checkpoint.restore_during_up(runner, repo, directory, (project_dir, model, command),
                                              lambda args: exec_([*base, *args], env=env, cwd=project_dir))
        return exec_([*base, *command], env=env, cwd=project_dir)
    finally:
        if handed != rendered:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handed)


# ---------------------------------------------------------------------------------------
# Rediaccfile lifecycle


def _walk(mount):
    """(directory, file names) of the repository, parents before children, siblings sorted.

    Hidden directories (the repository's .rediacc with the daemon's data-root among them) and
    anything deeper than MAX_DEPTH are skipped; symbolic links to directories are not followed.
    """
    root_depth = mount.rstrip("/").count("/")
    for directory, subdirs, files in os.walk(mount):
        depth = directory.rstrip("/").count("/") - root_depth
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if depth < MAX_DEPTH else []
        yield directory, sorted(files)


def _regular(path):
    try:
        return os.stat(path, follow_symlinks=False).st_mode & 0o170000 == 0o100000
    except OSError:
        return False


def rediaccfiles(mount):
    """Every Rediaccfile of the repository, in walk order: up() runs in this order, down() in reverse."""
    found = []
    for directory, files in _walk(mount):
        if REDIACCFILE in files:
            path = os.path.join(directory, REDIACCFILE)
            if not _regular(path):
                raise InvalidInput("%s is not a regular file (a symbolic link?): a Rediaccfile must be a file of "
                                   "the repository itself" % path)
            found.append(path)
    return found


def is_compose_file(name):
    return "compose" in name and name.endswith((".yaml", ".yml"))


def repository_services(mount):
    """Service names of every compose file of the repository, in walk and file order."""
    names = []
    for directory, files in _walk(mount):
        for name in files:
            path = os.path.join(directory, name)
            if is_compose_file(name) and _regular(path):
                names += [n for n in service_order(path) if n not in names]
    return names


def run_function(runner, repo, rediaccfile, function, environ, ips=None):  # noqa: PLR0917 - the lifecycle call
    """Source the Rediaccfile in its directory, as bash does, with REDIACC_*, DOCKER_HOST and {SVC}_IP set.

    No ``set -e``: a failing command inside the function does not end it; the function's own
    exit status decides success.
    """
    project_dir = os.path.dirname(rediaccfile)
    env = dict(environ, **repo.environment(), **(ips if ips is not None else service_environment(repo, mount_slots(
        repo))))
    try:
        result = _bash.call_function(runner, project_dir, function, env)
    except LockboxError as exc:
        output = ((exc.stdout or "") + (exc.stderr or "")).strip()
        last = ": " + output.splitlines()[-1] if output else ""
        raise LockboxError("%s() of %s failed (exit %s)%s" % (function, rediaccfile, exc.rc, last),
                           cmd=exc.cmd, rc=exc.rc, stdout=exc.stdout, stderr=exc.stderr) from None
    return (result.stdout + result.stderr).strip()


def mount_slots(repo):
    """Slots of every service of the repository's compose files (claimed now when new)."""
    return claim_slots(repo.mount, repository_services(repo.mount))


def fingerprint(mount):
    """A hash of every Rediaccfile and compose file: up() runs again when any of them changes."""
    digest = hashlib.sha256()
    for directory, files in _walk(mount):
        for name in files:
            path = os.path.join(directory, name)
            if (name == REDIACCFILE or is_compose_file(name)) and _regular(path):
                digest.update(path.encode() + b"\0")
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


# What we read of a container: its labels, by the name we use.
LABEL_FIELDS = {
    "service": "com.docker.compose.service", "project_dir": "com.docker.compose.project.working_dir",
    "service_ip": "rediacc.service_ip", "service_port": "rediacc.service_port", "network_id": "rediacc.network_id",
    "tcp_ports": "rediacc.tcp_ports", "udp_ports": "rediacc.udp_ports",
    "custom_domains": "rediacc.custom_domains", "custom_port": "rediacc.custom_port",
}


def parse_containers(listed):
    """Containers as the API lists them (GET /containers/json), flattened; exit code read from the status."""
    found = []
    for item in listed:
        labels = item.get("Labels") or {}
        names = item.get("Names") or []
        entry = {"id": item.get("Id") or None, "name": names[0].lstrip("/") if names else None,
                 "state": item.get("State") or None}
        entry.update({field: labels.get(label) or None for field, label in LABEL_FIELDS.items()})
        match = re.match(r"Exited \((-?\d+)\)", item.get("Status") or "")
        entry["exit_code"] = int(match.group(1)) if match else None
        found.append(entry)
    return found


def containers(runner, network_id):
    return parse_containers(_docker.containers(runner, _repo_daemon.docker_host(network_id)))
