# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docker against one repository's daemon: its API on the socket, and the compose CLI (never the user's config)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote, urlencode

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError


def compose_model(runner, global_args, env, cwd):
    """``docker compose config --format json``: the project's model, interpolated and normalised."""
    text = runner.run(["docker", "compose", *global_args, "config", "--format", "json"], env=env, cwd=cwd).stdout
    try:
        return json.loads(text)
    except ValueError as exc:
        raise LockboxError("docker compose config printed no JSON: %s" % exc) from None


# The daemon itself is asked through its API on the repository's socket (Runner.api).


def _socket(host):
    if not host.startswith("unix://"):
        raise LockboxError("a repository's dockerd listens on a unix socket, not %s" % host)
    return host[len("unix://"):]


def _container_path(container_id, action=""):
    return "/containers/%s%s" % (quote(container_id, safe=""), action)


def containers(runner, host):
    """Every container of the daemon (``docker ps -a``), as the API lists them."""
    return runner.api(_socket(host), "GET", "/containers/json?all=1").data or []


def inspect(runner, host, container_id):
    """``docker inspect`` of one container; None when there is no such container."""
    answer = runner.api(_socket(host), "GET", _container_path(container_id, "/json"), ok_statuses=(200, 404))
    return answer.data if answer.status == 200 else None


def mounts(runner, host, container_id):
    """The container's mounts as Docker reports them (Type, Source, RW, ...)."""
    return (inspect(runner, host, container_id) or {}).get("Mounts") or []


def start(runner, host, container_id):
    runner.api(_socket(host), "POST", _container_path(container_id, "/start"), ok_statuses=(204, 304))


def stop(runner, host, container_id, seconds=10):
    runner.api(_socket(host), "POST", _container_path(container_id, "/stop?t=%d" % seconds),
               ok_statuses=(204, 304), timeout=seconds + 60.0)


# CRIU through the daemon (experimental mode): dump and restore of a whole container can take
# minutes for a large memory image under emulation.
CHECKPOINT_TIMEOUT = 1800.0


def checkpoint_create(runner, host, container_id, checkpoint_id, directory, leave_running):  # noqa: PLR0917
    """``docker checkpoint create --checkpoint-dir DIRECTORY [--leave-running]``: CRIU images in DIRECTORY/ID."""
    runner.api(_socket(host), "POST", _container_path(container_id, "/checkpoints"), ok_statuses=(201, 204),
               timeout=CHECKPOINT_TIMEOUT,
               body={"CheckpointID": checkpoint_id, "CheckpointDir": directory, "Exit": not leave_running})


def start_from_checkpoint(runner, host, container_id, checkpoint_id):
    """``docker start --checkpoint ID`` of a created or stopped container.

    dockerd restores only from the container's own checkpoint directory
    (``<data-root>/containers/<id>/checkpoints/<ID>``): a custom directory is refused with 403.
    """
    query = urlencode({"checkpoint": checkpoint_id})
    runner.api(_socket(host), "POST", _container_path(container_id, "/start?" + query), ok_statuses=(204,),
               timeout=CHECKPOINT_TIMEOUT)


# How long a removal the daemon started itself (a fork's inherited container that the fork's
# new daemon cleans up as it starts) may take before it counts as stuck.
REMOVAL_WAIT = 120.0


def remove(runner, host, container_ids, wait=REMOVAL_WAIT):
    """``docker rm -f`` of each container. One the daemon is already removing (HTTP 409 "removal
    ... is already in progress") is waited for until it is gone: the same end, not a failure."""
    socket_path = _socket(host)
    for container_id in container_ids:
        path = _container_path(container_id, "?force=1")
        answer = runner.api(socket_path, "DELETE", path, ok_statuses=(204, 404, 409))
        if answer.status != 409:
            continue
        detail = answer.data.get("message") if isinstance(answer.data, dict) else answer.data
        if "already in progress" not in str(detail):
            raise LockboxError("DELETE %s on %s failed (HTTP 409): %s" % (path, socket_path, detail),
                               cmd=answer.request, rc=409)
        deadline = time.monotonic() + wait
        while inspect(runner, host, container_id) is not None:
            if time.monotonic() > deadline:
                raise LockboxError("container %s was still being removed by its daemon after %d s"
                                   % (container_id, wait), cmd=answer.request, rc=409)
            time.sleep(0.5)


def server_version(runner, host):
    """The daemon's version when its API answers, else None."""
    try:
        answer = runner.api(_socket(host), "GET", "/version", timeout=10.0).data
    except LockboxError:
        return None
    return (answer or {}).get("Version") if isinstance(answer, dict) else None


# The Hub's users' daemons: images and the user's container.
PULL_TIMEOUT = 1800.0


def _image_path(image, action):
    return "/images/%s%s" % (quote(image, safe=""), action)


def image_exists(runner, host, image):
    return runner.api(_socket(host), "GET", _image_path(image, "/json"), ok_statuses=(200, 404)).status == 200


def pull(runner, host, image):
    """``docker pull``: the daemon answers 200 with a stream of JSON progress lines, an error among them."""
    name, tag = image, "latest"
    if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
    answer = runner.api(_socket(host), "POST", "/images/create?" + urlencode({"fromImage": name, "tag": tag}),
                        timeout=PULL_TIMEOUT)
    for line in (answer.data if isinstance(answer.data, str) else json.dumps(answer.data or {})).splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise LockboxError("pulling %s failed: %s" % (image, message["error"]), cmd=answer.request)


def copy_image(runner, source, target, image):
    """``docker save`` from one daemon into ``docker load`` of another (no registry involved)."""
    runner.run(["bash", "-c", 'set -o pipefail; docker -H "$1" save "$3" | docker -H "$2" load -q',
                "copy-image", source, target, image], env={"DOCKER_CONFIG": "/nonexistent"})


def create(runner, host, name, spec):
    runner.api(_socket(host), "POST", "/containers/create?" + urlencode({"name": name}), ok_statuses=(201,),
               body=spec)


def exec_run(runner, host, container_id, argv, user=""):
    """Run ``argv`` in the container as ``user`` and wait for it; raise when it fails."""
    made = runner.api(_socket(host), "POST", _container_path(container_id, "/exec"), ok_statuses=(201,),
                      body={"Cmd": list(argv), "User": user, "AttachStdout": True, "AttachStderr": True}).data
    output = runner.api(_socket(host), "POST", "/exec/%s/start" % quote(made["Id"], safe=""), timeout=600.0,
                        body={"Detach": False, "Tty": False}).data
    code = runner.api(_socket(host), "GET", "/exec/%s/json" % quote(made["Id"], safe="")).data.get("ExitCode")
    if code != 0:
        raise LockboxError("%s in %s exited with %s" % (argv[-1][:100], container_id, code),
                           stdout=output if isinstance(output, str) else None)
    return output


def info(runner, host):
    """``docker info``: counts of containers and images among others."""
    return runner.api(_socket(host), "GET", "/info", timeout=10.0).data or {}
