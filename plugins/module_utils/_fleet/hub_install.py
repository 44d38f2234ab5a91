# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.hub_install (and ``renet hub install|uninstall``): a compose file's Hub as a host service.

The Hub is the repository's compose service labelled ``rediacc.install_as=systemd`` with the
command ``hub start …``. Installing it writes, from the compose model:

- ``/etc/systemd/system/rediacc-hub.service``: ``renet hub start`` with the service's options,
  listening on the service's own IP in the repository's /26, its ``env_file`` files named with
  ``--env-file`` and left in the encrypted mount (the OAuth secrets never leave it; the Hub,
  not systemd, reads their ``HUB_*`` variables; the unit requires the mount), and the
  repository's ``REDIACC_*`` variables;
- ``/etc/rediacc/hub/hub.labels.yaml``: the checked templates and routes ``renet hub start`` reads;
- the router configuration: a Traefik file-provider file and, on a host with the router role,
  the embedded router's (Caddy) sites ``{prefix}.{domain}`` → the Hub;

then starts the unit (restarts it when any of these changed). Uninstalling stops and removes
them all; users' data-roots under the workspace directory are never touched.
"""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, remove_file, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_environments as _environments
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_routes as _hub_routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import paths as _paths
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

UNIT = "rediacc-hub.service"
LABELS_FILE = "/etc/rediacc/hub/hub.labels.yaml"
TRAEFIK_FILE = "/opt/rediacc/proxy/traefik/dynamic/rediacc-hub.yaml"
CADDY_FILE = "/etc/caddy/lockbox-hub.caddy"
RENET = "/usr/local/bin/renet"
# compose prints a host service's model only when it has an image: this one is never pulled or run.
PLACEHOLDER_IMAGE = "lockbox.invalid/host-service"


def _unit_path():
    return os.path.join(_systemd.UNIT_DIR, UNIT)  # UNIT_DIR read at call time: tests point it elsewhere


def _compose_path(mount, compose_file):
    """The compose file as a resolved path inside the repository's mount (a link out is refused)."""
    given = compose_file if os.path.isabs(compose_file) else os.path.join(mount, compose_file)
    path = _paths.check_absolute_path(given, "compose_file", allow_system=True)
    resolved = os.path.realpath(path)
    if not _paths.is_under(resolved, os.path.realpath(mount)):
        raise InvalidInput("compose_file %s is outside the repository's mount %s" % (compose_file, mount))
    if not os.path.isfile(resolved):
        raise InvalidInput("compose_file %s does not exist in the repository (is it opened?)" % compose_file)
    return resolved


def _env_files(raw_service, project_dir, mount):
    """The service's env_file paths, resolved, each inside the mount; (path, required) pairs."""
    entries = raw_service.get("env_file") or []
    entries = [entries] if isinstance(entries, (str, dict)) else entries
    found = []
    for entry in entries:
        path, required = (entry.get("path"), entry.get("required", True)) if isinstance(entry, dict) else (entry, True)
        resolved = os.path.realpath(os.path.join(project_dir, str(path)))
        if not _paths.is_under(resolved, os.path.realpath(mount)):
            raise InvalidInput("env_file %s is outside the repository's mount: the Hub's secrets stay in the "
                               "encrypted image" % path)
        if required and not os.path.isfile(resolved):
            raise InvalidInput("env_file %s does not exist" % path)
        found.append((resolved, bool(required)))
    return found


def _raw_service(files, name):
    """The service as the compose files write it (the last file that names it)."""
    raw = {}
    for path in files:
        document = _project.load_yaml(path)
        services = document.get("services") if isinstance(document, dict) else None
        if isinstance(services, dict) and isinstance(services.get(name), dict):
            raw = dict(raw, **services[name])
    return raw


def _unescaped(node):
    """compose prints its model as compose input, a literal ``$`` still written ``$$``: the values as meant."""
    if isinstance(node, dict):
        return {k: _unescaped(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unescaped(v) for v in node]
    return node.replace("$$", "$") if isinstance(node, str) else node


def _raw_environment_keys(raw_service):
    environment = raw_service.get("environment") or {}
    if isinstance(environment, list):
        return [str(item).split("=", 1)[0] for item in environment]
    return [str(key) for key in environment]


def describe(runner, layout, repository, compose_file, service=None):
    """Everything the install writes, computed from the repository and its compose file (no changes)."""
    record = _state.ready_record(layout.state_dir, repository)
    installed = json.loads(read_text(LABELS_FILE) or "null")
    if installed and installed.get("guid") != record["guid"]:
        # One Hub per host: its unit, router files and the users' networkIds (from 32768) are the host's.
        raise InvalidInput("the Hub of repository %s is installed on this host: uninstall it first (state=absent); "
                           "a host runs one Hub" % installed.get("repository"))
    repo = _project.Repository.from_record(layout, record)
    if not os.path.ismount(repo.mount.rstrip("/")):
        raise InvalidInput("repository %s is not opened: open it (repo up) before installing its Hub" % repository)
    path = _compose_path(repo.mount, compose_file)
    project_dir = os.path.dirname(path)
    env = dict(repo.environment(), DOCKER_SOCKET=_repo_daemon.socket_path(repo.network_id), **_project.NO_DOCKER_CONFIG)
    with _project.host_service_args(project_dir, ["-f", path], PLACEHOLDER_IMAGE) as args:
        model = _docker.compose_model(runner, ["--profile", _project.HOST_PROFILE, *args], env, project_dir)
    hosts = {n: _unescaped(s) for n, s in (model.get("services") or {}).items() if _hub.is_host_service(s)}
    if service:
        if service not in hosts:
            raise InvalidInput("%s has no service %r labelled rediacc.install_as=systemd (found: %s)"
                               % (compose_file, service, ", ".join(sorted(hosts)) or "none"))
    elif len(hosts) != 1:
        raise InvalidInput("%s must have exactly one service labelled rediacc.install_as=systemd, found %d%s: name "
                           "it with service" % (compose_file, len(hosts), " (%s)" % ", ".join(sorted(hosts)) if hosts
                                                else ""))
    name = service or next(iter(hosts))
    labels = _hub.labels_of(hosts[name])
    config = _hub.parse_labels(labels)
    options = _hub.parse_start(_hub.host_argv(hosts[name].get("command")), mount=repo.mount)
    if options["network_id"] != repo.network_id:
        raise InvalidInput("hub start --network-id=%d, but repository %s has networkId %d"
                           % (options["network_id"], repository, repo.network_id))
    slots = _project.peek_slots(repo.mount)
    slot = slots.get(name, _compose.assign_slots([*slots, name], slots)[name])
    listen = _compose.service_ip(repo.network_id, slot)
    raw = _raw_service([path], name)
    # Only HUB_* variables of the file's own environment: section (never LD_PRELOAD, PATH, PYTHON*:
    # the Hub runs as root) and the repository's REDIACC_* ones.
    environment = {k: str(v) for k, v in (hosts[name].get("environment") or {}).items()
                   if k in _raw_environment_keys(raw) and v is not None and _hub.is_hub_variable(k)}
    environment.update(env)
    hub_hosts = _hub.route_hosts(config["routes"], options["base_domain"])
    routers, ignored = _hub.traefik_routers(labels, hub_hosts)
    upstream = "%s:%d" % (listen, options["port"])
    settings = _routes.load_settings()
    wanted = {
        LABELS_FILE: _labels_document(record, name, listen, options, config),
        _unit_path(): _unit(repo, _env_files(raw, project_dir, repo.mount), environment,
                            _hub.host_argv(hosts[name]["command"]), listen),
        TRAEFIK_FILE: json.dumps({"http": {"routers": routers, "services": {_hub.HUB_TRAEFIK_SERVICE: {
            "loadBalancer": {"servers": [{"url": "http://%s" % upstream}]}}}}}, indent=2, sort_keys=True) + "\n",
    }
    if settings:  # a host with the router role: the embedded router serves the Hub's names too
        wanted[CADDY_FILE] = caddy_file(config["routes"], options["base_domain"], settings.get("tls", "internal"),
                                        upstream)
    return {"repository": repository, "service": name, "slot": slot, "slot_is_new": name not in slots,
            "workspace_dir": options["workspace_dir"],
            "listen": listen, "port": options["port"], "hosts": sorted(hub_hosts), "wanted": wanted,
            "templates": sorted(config["templates"]), "ignored_labels": ignored, "mount": repo.mount}


def caddy_file(routes, base_domain, tls, hub_upstream, routes_dir=_hub_routes.ROUTES_DIR):
    """The router's Hub sites: each route host with its direct route (``hub_routes``), then the Hub."""
    sites = [_hub_routes.caddy_site(host, tls, hub_upstream, port, routes_dir)
             for host, port in sorted(_hub.route_hosts(routes, base_domain).items())]
    return "\n".join(["# Managed by lockbox.fleet (hub_install): the Hub's sites.", "", *sites])


def _labels_document(record, service, listen, options, config):
    """hub.labels.yaml (JSON, which is YAML): what ``renet hub start`` reads besides its options."""
    return json.dumps({"repository": record["name"], "guid": record["guid"], "network_id": record["network_id"],
                       "service": service, "listen": listen, "port": options["port"],
                       "base_domain": options["base_domain"], "routes": config["routes"],
                       "workspace_dir": options["workspace_dir"],
                       "default_template": config["default_template"], "templates": config["templates"]},
                      indent=2, sort_keys=True) + "\n"


def _unit(repo, env_files, environment, argv, listen):
    lines = ["# Managed by lockbox.fleet (renet hub install): the Hub of repository %s." % repo.name,
             "[Unit]", "Description=lockbox Hub of repository %s" % repo.name,
             "After=network-online.target rediacc-watchdog.service", "Wants=network-online.target",
             # The options, secrets and users' workspaces live in the repository's encrypted mount.
             "RequiresMountsFor=%s" % repo.mount.rstrip("/"), "", "[Service]", "Type=simple", "Slice=rediacc.slice"]
    lines += ["Environment=%s" % _systemd.quote_environment(k, v) for k, v in sorted(environment.items())]
    # The env files stay in the mount, where the repository's own containers may write: systemd
    # never loads them (a LD_PRELOAD there would run in a root process); renet hub start reads
    # only their HUB_* variables itself.
    files = ["--env-file=%s%s" % ("" if required else "?", path) for path, required in env_files]
    command = [RENET, "hub", "start", "--labels=%s" % LABELS_FILE, "--listen=%s" % listen, *files, *argv]
    lines += ["ExecStart=%s" % " ".join(_systemd.quote_exec_arg(a) for a in command),
              "Restart=on-failure", "RestartSec=2", "", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _write(path, content):
    def apply():
        write_atomic(path, content, mode=0o644)
    return apply


def _remove(path):
    return lambda: remove_file(path)


def _caddy_reload(runner):
    def apply():
        if _systemd.is_active(runner, "caddy.service") == "active":
            _systemd.systemctl(runner, "reload", "caddy.service")
    return apply


def plan_present(runner, described, status):
    actions = []
    if described["slot_is_new"]:
        actions.append(Action("claim-slot", "give service %s slot %d (%s)" % (
            described["service"], described["slot"], described["listen"]),
            lambda: _project.claim_slots(described["mount"], [described["service"]])))
    changed = [p for p, c in described["wanted"].items() if read_text(p) != c]
    actions += [Action("write", "write %s" % p, _write(p, described["wanted"][p])) for p in changed]
    unit_path = _unit_path()
    if unit_path in changed:
        actions.append(Action("daemon-reload", "systemctl daemon-reload",
                              lambda: _systemd.systemctl(runner, "daemon-reload")))
    if not status["enabled"]:
        actions.append(Action("enable", "enable %s" % UNIT, lambda: _systemd.systemctl(runner, "enable", UNIT)))
    if not status["active"]:
        actions.append(Action("start", "start %s" % UNIT, lambda: _systemd.systemctl(runner, "start", UNIT)))
    elif changed:
        actions.append(Action("restart", "restart %s (its configuration changed)" % UNIT,
                              lambda: _systemd.systemctl(runner, "restart", UNIT)))
    if CADDY_FILE in changed:
        actions.append(Action("reload-router", "reload caddy.service", _caddy_reload(runner)))
    return actions


def _users_network_ids():
    """networkIds of the installed Hub's users (their data-root markers); none when nothing is installed."""
    installed = read_text(LABELS_FILE)
    workspace = json.loads(installed).get("workspace_dir") if installed else None
    return sorted(_environments.recorded_network_ids(workspace).values()) if workspace else []


def plan_absent(runner, status):
    actions = []
    if status["active"]:
        actions.append(Action("stop", "stop %s" % UNIT, lambda: _systemd.systemctl(runner, "stop", UNIT)))
    # The users' daemons and slices go with the Hub; their data-roots and workspaces stay.
    for network_id in _users_network_ids():
        actions += [Action(*step) for step in _environments.removal_steps(runner, network_id)]
    if os.path.isdir(_environments.GATE_DIR):
        actions.append(Action("remove", "remove %s (the users' Docker API sockets)" % _environments.GATE_DIR,
                              lambda: shutil.rmtree(_environments.GATE_DIR, ignore_errors=True)))
    if status["enabled"]:
        actions.append(Action("disable", "disable %s" % UNIT, lambda: _systemd.systemctl(runner, "disable", UNIT)))
    unit_path = _unit_path()
    present = [p for p in (unit_path, LABELS_FILE, TRAEFIK_FILE, CADDY_FILE) if os.path.lexists(p)]
    actions += [Action("remove", "remove %s" % p, _remove(p)) for p in present]
    if unit_path in present:
        actions.append(Action("daemon-reload", "systemctl daemon-reload",
                              lambda: _systemd.systemctl(runner, "daemon-reload")))
    if CADDY_FILE in present:
        actions.append(Action("reload-router", "reload caddy.service", _caddy_reload(runner)))
    return actions


def converge(runner, layout, state, *, repository=None, compose_file=None, service=None, check_mode=False):
    status = _systemd.unit_status(runner, UNIT)
    result = {"unit": UNIT}
    if state == "present":
        if not repository or not compose_file:
            raise InvalidInput("state=present needs repository and compose_file")
        described = describe(runner, layout, repository, compose_file, service)
        actions = plan_present(runner, described, status)
        result.update({k: described[k] for k in ("repository", "service", "listen", "port", "hosts", "templates",
                                                 "ignored_labels", "workspace_dir")})
    elif state == "absent":
        actions = plan_absent(runner, status)
    else:
        raise InvalidInput("state must be present or absent, got %r" % (state,))
    previous = {p: read_text(p) for p in _managed_files()}
    try:
        reports = apply_plan(actions, check_mode)
    except LockboxError as exc:
        _roll_back(runner, previous, status, exc)
        raise
    return dict(result, changed=bool(actions), actions=reports)


def _managed_files():
    return (_unit_path(), LABELS_FILE, TRAEFIK_FILE, CADDY_FILE)


def _roll_back(runner, previous, status, exc):
    """Put back the files and the unit's state as they were before a failed step (best effort, reported)."""
    undone = []
    try:
        for path, content in previous.items():
            if read_text(path) == content:
                continue
            if content is None:
                _remove(path)()
            else:
                write_atomic(path, content, mode=0o644)
            undone.append(path)
        _systemd.systemctl(runner, "daemon-reload")
        if status["active"] and previous[_managed_files()[0]] is not None:
            _systemd.systemctl(runner, "restart", UNIT)
        elif not status["active"]:
            runner.run(["systemctl", "stop", UNIT], ok_rcs=(0, 5))
        if not status["enabled"]:
            runner.run(["systemctl", "disable", UNIT], ok_rcs=(0, 1))
    except LockboxError as again:
        exc.msg += "; rolling back failed too: %s" % again.msg
    else:
        exc.msg += "; rolled back: %s" % (", ".join(undone) if undone else "nothing had been written")
    exc.args = (exc.msg,)


def status(runner):
    """The Hub unit's state, what it was installed with, and its users' environments (``renet hub status``)."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_server as _hub_server
    installed = read_text(LABELS_FILE)
    unit = _systemd.unit_status(runner, UNIT)
    environments = None
    if unit["active"]:
        try:
            environments = runner.api(_hub_server.ADMIN_SOCKET, "GET", "/status", timeout=10.0).data["environments"]
        except LockboxError:
            environments = None  # starting: its socket is not there yet
    return dict(unit, unit=UNIT, installed=json.loads(installed) if installed else None, environments=environments)


def stop_user(runner, user, verb="stop"):
    """``renet hub stop|hibernate USER``: the running Hub stops that user's environment (container and
    daemon), for ``hibernate`` after checkpointing it as an idle one is."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_server as _hub_server
    from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
    key = _hub.check_username(user)
    answer = runner.api(_hub_server.ADMIN_SOCKET, "POST", "/%s/%s" % (verb, key), ok_statuses=(200, 404),
                        timeout=600.0)
    if answer.status == 404:
        raise InvalidInput("the Hub has no environment of user %s" % key)
    return answer.data


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.hub_install."""
    return converge(runner, _repository.layout_of(params), params.get("state") or "present",
                    repository=params.get("repository"), compose_file=params.get("compose_file"),
                    service=params.get("service"), check_mode=check_mode)
