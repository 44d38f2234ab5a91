# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The docker CLI against one repository's daemon (its socket), never the user's config."""

from __future__ import annotations

import json

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

NO_DOCKER_CONFIG = {"DOCKER_CONFIG": "/nonexistent"}


def _docker(runner, host, *args, ok_rcs=(0,)):
    return runner.run(["docker", "-H", host, *args], env=NO_DOCKER_CONFIG, ok_rcs=ok_rcs).stdout


def compose_model(runner, global_args, env, cwd):
    """``docker compose config --format json``: the project's model, interpolated and normalised."""
    text = runner.run(["docker", "compose", *global_args, "config", "--format", "json"], env=env, cwd=cwd).stdout
    try:
        return json.loads(text)
    except ValueError as exc:
        raise LockboxError("docker compose config printed no JSON: %s" % exc) from None


def ps_all(runner, host, template):
    """``docker ps -a`` with a Go template, one line per container."""
    return _docker(runner, host, "ps", "-a", "--no-trunc", "--format", template)


def mounts(runner, host, container_id):
    """The container's mounts as Docker reports them (Type, Source, RW, ...)."""
    return json.loads(_docker(runner, host, "inspect", "--format", "{{json .Mounts}}", container_id) or "[]") or []


def start(runner, host, container_id):
    _docker(runner, host, "start", container_id)


def remove(runner, host, container_ids):
    _docker(runner, host, "rm", "-f", *container_ids)


def server_version(runner, host):
    """The daemon's version when its API answers, else None."""
    try:
        out = _docker(runner, host, "version", "--format", "{{.Server.Version}}").strip()
    except LockboxError:
        return None
    return out or None
