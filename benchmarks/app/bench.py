# SPDX-License-Identifier: GPL-3.0-or-later
"""Application benchmark, run inside a test guest with the collection on sys.path.

repo up from closed: open + mount + network guard + dockerd + up() until both services
answer HTTP on their service IPs. fork -> answering: fork of the running repository, then
repo up of the fork until both of its services answer. Medians of BENCH_ROUNDS rounds.
Calls the same library as the modules (no Ansible transport).
"""

import http.client
import json
import os
import shutil
import statistics
import sys
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import btrfs_fork as _btrfs_fork
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose

KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SERVICES = 2


def log(message):
    print(message, file=sys.stderr, flush=True)


def answering(network_id, timeout=300.0):
    """Wait until every service (slots 0..SERVICES-1) answers HTTP 200 on its IP."""
    deadline = time.monotonic() + timeout
    pending = {_compose.service_ip(network_id, slot) for slot in range(SERVICES)}
    while pending:
        for ip in sorted(pending):
            connection = http.client.HTTPConnection(ip, 8080, timeout=2)
            try:
                connection.request("GET", "/")
                if connection.getresponse().status == 200:
                    pending.discard(ip)
            except OSError:
                pass
            finally:
                connection.close()
        if pending and time.monotonic() > deadline:
            raise RuntimeError("services %s did not answer" % sorted(pending))
        if pending:
            time.sleep(0.05)


def record(layout, runner, name):
    return _repo_info.info(runner, layout, name)[0]


def up_from_closed(layout, runner, name):
    _repo_app.converge_app(runner, layout, name, state="down", unmount=True)
    started = time.monotonic()
    result = _repo_app.converge_app(runner, layout, name, state="up", key=KEY)
    answering(record(layout, runner, name)["network_id"])
    return (time.monotonic() - started) * 1000, [a["action"] for a in result["actions"]]


def fork_to_answering(layout, runner, name, tag):
    started = time.monotonic()
    _btrfs_fork.fork_repo(runner, layout, name, tag, opened=True, key=KEY)
    fork = "%s:%s" % (name, tag)
    _repo_app.converge_app(runner, layout, fork, state="up", key=KEY)
    answering(record(layout, runner, fork)["network_id"])
    elapsed = (time.monotonic() - started) * 1000
    _repo_app.converge_app(runner, layout, fork, state="down", unmount=True)
    _luks_repo.converge_repo(runner, layout, fork, state="absent", force=True)
    return elapsed


def main():
    layout, runner = _repository.Layout(), Runner()
    name = "bench-app"
    _luks_repo.converge_repo(runner, layout, name, state="opened", size="1G", key=KEY)
    mount = record(layout, runner, name)["mount_path"]
    shutil.copytree("/opt/lockbox/app", os.path.join(mount, "app"), dirs_exist_ok=True)
    started = time.monotonic()
    _repo_app.converge_app(runner, layout, name, state="up", key=KEY)
    answering(record(layout, runner, name)["network_id"])
    log("first up (image import included): %.0f ms" % ((time.monotonic() - started) * 1000))
    ups, forks = [], []
    for _round in range(ROUNDS):
        elapsed, steps = up_from_closed(layout, runner, name)
        ups.append(elapsed)
        log("  up from closed: %7.0f ms (%s)" % (elapsed, ", ".join(steps)))
    for round_ in range(ROUNDS):
        elapsed = fork_to_answering(layout, runner, name, "b%d" % round_)
        forks.append(elapsed)
        log("  fork -> answering: %7.0f ms" % elapsed)
    print(json.dumps({"up_from_closed_ms": statistics.median(ups), "up_all": ups,
                      "fork_to_answering_ms": statistics.median(forks), "fork_all": forks,
                      "services": SERVICES}, indent=2))
    _repo_app.converge_app(runner, layout, name, state="down", unmount=True)
    _luks_repo.converge_repo(runner, layout, name, state="absent", force=True)


if __name__ == "__main__":
    main()
