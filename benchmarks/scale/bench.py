# SPDX-License-Identifier: GPL-3.0-or-later
"""Scale benchmark, run inside a test guest with the collection on sys.path.

Ten small repositories (one tiny routed service each) are brought up one after the other on
one host. Measured at 1, 5 and 10 repositories up: the time of that repo up (from closed,
services answering), repo_info of all repositories, a route sync (Caddy and Traefik files
written, no reload), and the CPU time the watchdog service uses in a minute in which nothing
happens (systemd's CPUUsageNSec of rediacc-watchdog.service).
"""

import os
import shutil
import subprocess
import time

from floor import delete_leftovers, http_ok, log, median, report

from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = _repository.Key(os.urandom(32).hex().encode(), "key")
COUNT = 10
MARKS = (1, 5, 10)
IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "60"))
REPEATS = int(os.environ.get("BENCH_ROUNDS", "5"))
LAYOUT, RUNNER = _repository.Layout(), Runner()
ROUTER = {"machine": "bench", "base_domain": "bench.test", "caddy_routes": "/run/bench-routes.caddy",
          "traefik_routes": "/run/bench-routes.traefik.yml", "forward": False, "reload_caddy": False}


def name_of(index):
    return "scale-%02d" % index


def prepare(index):
    """Created, the app copied, the image imported, then closed (untimed)."""
    name = name_of(index)
    _luks_repo.converge_repo(RUNNER, LAYOUT, name, state="opened", size="256M", key=KEY)
    record = _repo_info.info(RUNNER, LAYOUT, name)[0]
    shutil.copytree(os.path.join(HERE, "app"), os.path.join(record["mount_path"], "app"), dirs_exist_ok=True)
    _repo_daemon.converge_daemon(RUNNER, LAYOUT, name, state="started")
    subprocess.run(["docker", "-H", _repo_daemon.docker_host(record["network_id"]), "import",
                    "/usr/share/lockbox-test/busybox.tar", "lockbox-test/busybox:1"], capture_output=True, check=True)
    _repo_app.converge_app(RUNNER, LAYOUT, name, state="down", unmount=True)
    return record


def up(index, record):
    started = time.monotonic()
    _repo_app.converge_app(RUNNER, LAYOUT, name_of(index), state="up", key=KEY)
    http_ok([_compose.service_ip(record["network_id"], 0)])
    return (time.monotonic() - started) * 1000


def timed(action):
    times = []
    for _round in range(REPEATS):
        started = time.monotonic()
        action()
        times.append((time.monotonic() - started) * 1000)
    return median(times)


def watchdog_cpu_ms_per_minute():
    def usage():
        out = subprocess.run(["systemctl", "show", "-P", "CPUUsageNSec", "rediacc-watchdog.service"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return int(out)
    before = usage()
    time.sleep(IDLE_SECONDS)
    return round((usage() - before) / 1e6 * 60 / IDLE_SECONDS, 1)


def main():
    delete_leftovers(RUNNER, LAYOUT, lambda name: name.startswith("scale-"))
    # The watchdog restarted with the accounting on: its CPU time is what is measured.
    subprocess.run(["systemctl", "restart", "rediacc-watchdog.service"], check=True)
    records = [prepare(index) for index in range(1, COUNT + 1)]
    marks = {}
    for index, record in enumerate(records, start=1):
        elapsed = up(index, record)
        log("repo up %2d: %.0f ms" % (index, elapsed))
        if index in MARKS:
            # One up is one sample: at a mark the Nth repository goes down and up again until
            # there are REPEATS, with the other N-1 up all the while; the median is reported.
            ups = [elapsed]
            while len(ups) < REPEATS:
                _repo_app.converge_app(RUNNER, LAYOUT, name_of(index), state="down", unmount=True)
                ups.append(up(index, record))
            log("repo up %2d, %d rounds: %s ms" % (index, len(ups), ", ".join("%.0f" % u for u in ups)))
            time.sleep(5)  # let the watchdog's first look at the new daemon pass
            marks[index] = {
                "repo_up_ms": round(median(ups), 1),
                "repo_up_rounds_ms": [round(u, 1) for u in ups],
                "repo_info_all_ms": timed(lambda: _repo_info.info(RUNNER, LAYOUT)),
                "route_sync_ms": timed(lambda: _routes.sync(RUNNER, LAYOUT.state_dir, ROUTER)),
                "routes": len(_routes.sync(RUNNER, LAYOUT.state_dir, ROUTER)[1]["routes"]),
                "watchdog_cpu_ms_per_idle_minute": watchdog_cpu_ms_per_minute(),
            }
            log("%2d up: %r" % (index, marks[index]))
    first, last = marks[MARKS[0]], marks[MARKS[-1]]
    growth = {key: round(last[key] / first[key], 2) if first[key] else None
              for key in ("repo_up_ms", "repo_info_all_ms", "route_sync_ms", "watchdog_cpu_ms_per_idle_minute")}
    report({}, {"marks": marks, "tenth_vs_first": growth, "repeats": REPEATS, "idle_seconds": IDLE_SECONDS})
    for index in range(COUNT, 0, -1):
        _repo_app.converge_app(RUNNER, LAYOUT, name_of(index), state="down", unmount=True)
        _luks_repo.converge_repo(RUNNER, LAYOUT, name_of(index), state="absent", force=True)


if __name__ == "__main__":
    main()
