# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared by the benchmarks that run inside a test guest: the floor beside ours.

The floor is the same work done by bare commands, one argv at a time (each one listed in
the raw JSON), in the same guest and the same run, interleaved round by round with ours.
Commands are counted by tracing every execve of the benchmark's process tree with strace,
in a separate untimed round (tracing slows what it traces): daemons started through
systemd are not in that tree for either path, so both counts are of the same kind.
"""

import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def log(message):
    print(message, file=sys.stderr, flush=True)


def median(values):
    return round(statistics.median(values), 1)


class Bare:
    """Runs the floor's commands; ``steps`` keeps each argv once, for the raw JSON."""

    def __init__(self):
        self.steps = []

    def run(self, argv, stdin=None, env=None, cwd=None):
        if argv not in self.steps:
            self.steps.append(list(argv))
        proc = subprocess.run(argv, input=stdin, capture_output=True, env=dict(os.environ, **(env or {})), cwd=cwd,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError("floor: %s failed (rc=%d): %s" % (" ".join(argv), proc.returncode,
                                                                 proc.stderr.decode(errors="replace").strip()))
        return proc.stdout.decode().strip()


def delete_leftovers(runner, layout, is_ours):
    """Repositories an interrupted run left (its random key is gone with it), forks first."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
    names = [r["name"] for r in _repo_info.info(runner, layout) if is_ours(r["name"])]
    for name in sorted(names, key=lambda n: -n.count(":")):
        _luks_repo.converge_repo(runner, layout, name, state="absent", force=True)


def api_answers(socket_path, timeout=300.0):
    """Wait (no process started) until a dockerd answers GET /version on its socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.connect(socket_path)
            sock.sendall(b"GET /version HTTP/1.0\r\nHost: d\r\n\r\n")
            answered = sock.recv(12).startswith(b"HTTP/1.0 200")
        except OSError:
            answered = False
        finally:
            sock.close()
        if answered:
            return
        time.sleep(0.02)
    raise RuntimeError("no dockerd answered on %s" % socket_path)


def http_ok(ips, port=8080, timeout=120.0):
    """Wait until every address answers HTTP 200 on ``port``."""
    deadline = time.monotonic() + timeout
    pending = set(ips)
    while pending:
        for ip in sorted(pending):
            connection = http.client.HTTPConnection(ip, port, timeout=2)
            try:
                connection.request("GET", "/")
                if connection.getresponse().status == 200:
                    pending.discard(ip)
            except OSError:
                pass
            finally:
                connection.close()
        if pending and time.monotonic() > deadline:
            raise RuntimeError("%s did not answer" % sorted(pending))
        if pending:
            time.sleep(0.02)


def count_commands(action):
    """Run ``action()`` with every execve of this process tree traced; the number of programs started."""
    handle, trace = tempfile.mkstemp(prefix="bench-execve.")
    os.close(handle)
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", trace,
                               "-p", str(os.getpid())], stderr=subprocess.DEVNULL)
    time.sleep(2)  # strace attaches to every thread first
    try:
        action()
    finally:
        tracer.terminate()
        tracer.wait()
    with open(trace) as handle:
        started = [line for line in handle if "execve(" in line and line.rstrip().endswith("= 0")]
    os.unlink(trace)
    return len(started)


def machine():
    """Where the figures come from: TCG or not, CPUs, memory, kernel."""
    with open("/proc/cpuinfo") as handle:
        cpuinfo = handle.read()
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    accel = os.environ.get("BENCH_ACCEL", "tcg")
    return {"accel": accel, "tcg": accel == "tcg", "guest_cpus": os.cpu_count(), "guest_memory_mib": mem_kib // 1024,
            "guest_cpu_model": next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                                     if line.startswith("model name")), ""),
            "kernel": platform.release(), "host_kind": os.environ.get("BENCH_HOST_KIND", ""),
            "commit": os.environ.get("BENCH_COMMIT", "")}


def report(operations, extra=None):
    """The raw JSON: per operation ours, floor, ratio, rounds and command counts."""
    out = {"machine": machine(), "operations": operations}
    out.update(extra or {})
    for name, op in operations.items():
        op["ours_ms"], op["floor_ms"] = median(op["ours_all"]), median(op["floor_all"])
        op["ratio"] = round(op["ours_ms"] / op["floor_ms"], 2) if op["floor_ms"] else None
        log("%-28s ours %8.1f ms  floor %8.1f ms  ratio %5.2f  commands %s / %s"
            % (name, op["ours_ms"], op["floor_ms"], op["ratio"], op.get("ours_commands"), op.get("floor_commands")))
    print(json.dumps(out, indent=2))
