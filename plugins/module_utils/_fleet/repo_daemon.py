# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A repository's own dockerd: its daemon.json and systemd unit (docs/contract.md)."""

from __future__ import annotations

import json
import os
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import read_text, write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._core.plan import Action, apply_plan
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import loopback_net as _loopback_net
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

SOCKET_DIR = "/var/run/rediacc"
CONFIG_DIR = "/etc/rediacc/docker"
API_TIMEOUT = 120.0


def socket_path(network_id, socket_dir=SOCKET_DIR):
    return "%s/docker-%d.sock" % (socket_dir, network_id)


def unit_name(network_id):
    return "rediacc-docker-%d.service" % network_id


def temporary_dir(mount):
    """The daemon's TMPDIR: inside the encrypted volume."""
    return "%s/.rediacc/tmp" % mount


def data_root(mount):
    """The repository daemon's data-root: inside the encrypted volume."""
    return "%s/.rediacc/docker/data" % mount


def daemon_config(mount, network_id, socket_dir=SOCKET_DIR):
    """daemon.json: data inside the encrypted volume, no bridge, no iptables, experimental on."""
    return {
        "hosts": ["unix://" + socket_path(network_id, socket_dir)],
        "data-root": data_root(mount),
        "exec-root": "/run/rediacc/docker-%d" % network_id,
        "pidfile": "/run/rediacc/docker-%d.pid" % network_id,
        "bridge": "none",
        "iptables": False,
        "ip6tables": False,
        "ip-forward": False,
        "ip-masq": False,
        "experimental": True,
        "live-restore": False,
        # Containers get time to stop before dockerd gives up on them (the default 15 s is
        # short on a loaded host, and a forced shutdown leaves their mounts behind).
        "shutdown-timeout": 60,
        "exec-opts": ["native.cgroupdriver=systemd"],
        # Its containers live in the repository's slice, where loopback_net's guard applies.
        "cgroup-parent": _loopback_net.repository_slice(network_id),
        # Several daemons may share a system containerd: keep their objects apart.
        "containerd-namespace": "rediacc-%d" % network_id,
        "containerd-plugins-namespace": "rediacc-%d-plugins" % network_id,
    }


def render_config(mount, network_id, socket_dir=SOCKET_DIR):
    return json.dumps(daemon_config(mount, network_id, socket_dir), indent=2, sort_keys=True) + "\n"


def unit_content(mount, network_id, config_path, service_lines=()):
    """One dockerd per repository, started after (and stopped before) its mount.

    ``service_lines`` go first in [Service] (a Hub user's daemon: the user's slice).
    """
    return "\n".join([
        "# Managed by lockbox.fleet: the Docker daemon of the repository mounted at %s." % mount,
        "[Unit]",
        "Description=lockbox repository dockerd (networkId %d)" % network_id,
        "After=network.target containerd.service",
        "RequiresMountsFor=%s" % mount,
        "",
        "[Service]",
        *service_lines,
        "Type=notify",
        "ExecStartPre=/bin/mkdir -p %s" % SOCKET_DIR,
        "ExecStart=/usr/sbin/dockerd --config-file %s" % config_path,
        # CRIU (started by runc under this daemon) restores without hardware breakpoints: a
        # ptrace breakpoint on a restored task crashed the kernel of an emulated (TCG) host, and
        # the fallback costs a few traced syscalls per task.
        "Environment=CRIU_FAULT=130",
        # containerd unpacks a checkpoint to restore into a temporary directory: process memory,
        # kept inside the encrypted volume rather than in the host's /tmp.
        "Environment=TMPDIR=%s" % temporary_dir(mount),
        "ExecStartPre=/bin/mkdir -p -m 0700 %s" % temporary_dir(mount),
        "ExecReload=/bin/kill -s HUP $MAINPID",
        "Delegate=yes",
        "KillMode=process",
        "Restart=on-failure",
        "TimeoutStartSec=120",
        "TimeoutStopSec=120",
        "LimitNOFILE=1048576",
        "",
    ])


def config_path(network_id, config_dir=CONFIG_DIR):
    return "%s/%d.json" % (config_dir, network_id)


def docker_host(network_id):
    return "unix://" + socket_path(network_id)


def server_version(runner, network_id):
    """The daemon's version when its API answers on the repository's socket, else None."""
    return _docker.server_version(runner, docker_host(network_id))


def wait_for_api(runner, network_id, timeout=API_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        version = server_version(runner, network_id)
        if version:
            return version
        if time.monotonic() > deadline:
            raise LockboxError("the dockerd of networkId %d did not answer on %s within %.0f s (see journalctl -u %s)"
                               % (network_id, socket_path(network_id), timeout, unit_name(network_id)))
        time.sleep(0.5)


class _Daemon:
    """What is on the host for one repository's daemon, and what it should be."""

    def __init__(self, runner, layout, record, config_dir, *, mount=None, service_lines=()):
        self.runner = runner
        self.network_id, self.mount = record["network_id"], mount or layout.mount(record["guid"])
        self.unit, self.conf = unit_name(self.network_id), config_path(self.network_id, config_dir)
        self.wanted_conf = render_config(self.mount, self.network_id)
        self.wanted_unit = unit_content(self.mount, self.network_id, self.conf, service_lines)
        self.status = _systemd.unit_status(runner, self.unit)
        self.current_conf, self.current_unit = read_text(self.conf), _systemd.read_unit_file(self.unit)
        self.actions = []

    def add(self, action, detail, apply):
        self.actions.append(Action(action, detail, apply))

    def systemctl(self, *args):
        return lambda: _systemd.systemctl(self.runner, *args)

    def plan_started(self):
        changed_files = False
        if self.current_conf != self.wanted_conf:
            self.add("write-config", "write %s" % self.conf, lambda: write_atomic(self.conf, self.wanted_conf))
            changed_files = True
        if self.current_unit is None:
            # systemd loads a unit file it has not seen on the next start (it notices the unit
            # directory changed): a daemon-reload, seconds on a busy host, is for changed files.
            self.add("write-unit", "write %s" % self.unit,
                     lambda: _systemd.write_unit_file(self.unit, self.wanted_unit))
            changed_files = True
        elif self.current_unit != self.wanted_unit:
            self.add("write-unit", "write %s and reload systemd" % self.unit, lambda: (
                _systemd.write_unit_file(self.unit, self.wanted_unit), self.systemctl("daemon-reload")()))
            changed_files = True
        if not self.status["active"]:
            self.add("start", "start %s" % self.unit, self.systemctl("start", self.unit))
        elif changed_files:
            # The configuration really changed: only then does a running daemon restart.
            self.add("restart", "restart %s for its new configuration" % self.unit,
                     self.systemctl("restart", self.unit))
        elif server_version(self.runner, self.network_id) is None:
            self.add("restart", "restart %s: active but its API does not answer" % self.unit,
                     self.systemctl("restart", self.unit))

    def plan_stopped(self, remove):
        for step in _stop_steps(self.runner, self.network_id, self.conf, active=self.status["active"], remove=remove,
                                names=("stop", "remove-unit", "remove-config")):
            self.add(*step)


def converge_daemon(runner, layout, name, *, state, check_mode=False, config_dir=CONFIG_DIR):
    """started / stopped / absent for the dockerd of repository ``name``."""
    if state not in ("started", "stopped", "absent"):
        raise InvalidInput("state must be started, stopped or absent, got %r" % (state,))
    daemon = _Daemon(runner, layout, _state.ready_record(layout.state_dir, name), config_dir)
    if state == "started":
        if not os.path.ismount(daemon.mount):
            raise InvalidInput("%s is not mounted at %s: open it first (lockbox.fleet.luks_repo state=opened)"
                               % (name, daemon.mount))
        daemon.plan_started()
    else:
        daemon.plan_stopped(remove=state == "absent")
    version = None
    reports = apply_plan(daemon.actions, check_mode)
    if not check_mode:
        if state == "started":
            version = wait_for_api(runner, daemon.network_id)
    # After a real run the state is the one asked for: started waited for the API to answer,
    # stopped and absent stopped the unit. Asking systemd again would only cost a command.
    active = (state == "started") if not check_mode else daemon.status["active"]
    return {"changed": bool(daemon.actions), "actions": reports,
            "daemon": {"name": name, "network_id": daemon.network_id, "unit": daemon.unit,
                       "socket": socket_path(daemon.network_id), "docker_host": docker_host(daemon.network_id),
                       "config": daemon.conf, "data_root": "%s/.rediacc/docker/data" % daemon.mount,
                       "active": active, "version": version}}


def start_daemon(runner, network_id, mount, service_lines=(), config_dir=CONFIG_DIR):
    """A dockerd for ``mount`` started (configuration and unit written, restarted when they changed)
    and answering; the reports of the steps taken. A Hub user's daemon is one of these."""
    daemon = _Daemon(runner, None, {"network_id": network_id}, config_dir, mount=mount, service_lines=service_lines)
    daemon.plan_started()
    reports = apply_plan(daemon.actions)
    wait_for_api(runner, network_id)
    return reports


def _stop_steps(runner, network_id, conf, *, active, remove, names):
    """(name, detail, apply) steps that stop a daemon and, with ``remove``, delete its unit and config."""
    unit = unit_name(network_id)
    stop, remove_unit, remove_config = names
    steps = []
    if active:
        steps.append((stop, "stop %s (its containers stop with it)" % unit,
                      lambda: _systemd.systemctl(runner, "stop", unit)))
    if remove and _systemd.read_unit_file(unit) is not None:
        steps.append((remove_unit, "remove %s" % unit, lambda: (
            _systemd.remove_unit_file(unit), _systemd.systemctl(runner, "daemon-reload"))))
    if remove and os.path.exists(conf):
        steps.append((remove_config, "remove %s" % conf, lambda: os.unlink(conf)))
    return steps


def removal_steps(runner, network_id, config_dir=CONFIG_DIR):
    """The steps of repository delete: stop and remove the daemon, and its socket if it left one."""
    active = _systemd.unit_status(runner, unit_name(network_id))["active"]
    steps = _stop_steps(runner, network_id, config_path(network_id, config_dir), active=active, remove=True,
                        names=("stop-daemon", "remove-daemon-unit", "remove-daemon-config"))
    sock = socket_path(network_id)
    if active or os.path.exists(sock):
        steps.insert(1 if active else 0, ("remove-socket", "remove %s if the daemon left it" % sock,
                                          lambda: _unlink(sock)))
    return steps


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_daemon."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
    return converge_daemon(runner, _repository.layout_of(params), params["name"], state=params["state"],
                           check_mode=check_mode)
