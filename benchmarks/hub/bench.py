# SPDX-License-Identifier: GPL-3.0-or-later
"""Hub data-path benchmark, on this machine (no guest): the same small answer of a user's service
fetched with wrk at 200 connections on loopback, four ways in the same run, interleaved:

- direct: wrk to the service itself (Node's http server);
- hub: an established session through the router (Debian's Caddy with the sites hub_install
  writes, alice's session and route cookies; the route map as the Hub writes it): the data path;
- hub_first: through the Hub's own server (its aiohttp proxy, alice's session cookie only): the
  path of a session's first request, before the router knows its token;
- chp: through configurable-http-proxy (npm, JupyterHub's proxy) with the same single route.

The router is started like Debian's caddy.service (no tuning of its own) and serves plain HTTP, as
the other proxies do here. Prints ours / floor (floor: CHP) and writes the raw JSON to
benchmarks/hub/runs/<time>.json.
Usage: bench.py [--seconds S] [--rounds N] [--connections C]
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(argv, env=None, ready="listening"):
    """A server process; its first line of output starting with ``ready`` (the rest is returned)."""
    proc = subprocess.Popen(argv, env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE, text=True,
                            cwd=HERE)
    line = proc.stdout.readline()
    if not line.startswith(ready):
        proc.kill()
        raise RuntimeError("%s did not start: %r" % (argv[0], line))
    return proc, line[len(ready):].strip()


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("nothing answers on port %d" % port)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(text):
    """Requests per second, latency percentiles (ms), request and error counts from ``wrk --latency``."""
    def ms(value):
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
        return round(float(number) * _UNITS[unit], 2)
    found = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
             "requests": int(re.search(r"(\d+) requests in", text).group(1))}
    for percent in ("50", "90", "99"):
        found["p%s_ms" % percent] = ms(re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % percent, text, re.M).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    found["errors"] = (sum(int(g) for g in errors.groups()) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)
    return found


def wrk(port, headers, seconds, connections):
    argv = ["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--latency", "--timeout", "10s"]
    for header in headers:
        argv += ["-H", header]
    argv.append("http://127.0.0.1:%d/" % port)
    return parse_wrk(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def start_router(hub_port, upstream_port, workdir):
    """Caddy with the Hub's sites for code.hub.test (plain HTTP on a free port) and alice's route token."""
    sys.path.insert(0, os.path.join(TOP, ".build", "collections"))
    from ansible_collections.lockbox.fleet.plugins.module_utils._core import tokens as _tokens
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_routes as _hub_routes
    port, admin, token = free_port(), free_port(), _tokens.random_token()
    routes_dir = os.path.join(workdir, "routes")
    os.makedirs(routes_dir)
    with open(os.path.join(routes_dir, "sessions.map"), "w") as out:
        out.write(_hub_routes.map_text({"alice": {"token": token, "address": "127.0.0.1"}}))
    sites = _hub_install.caddy_file({"code": upstream_port}, "hub.test", "internal", "127.0.0.1:%d" % hub_port,
                                    routes_dir)
    sites = sites.replace("code.hub.test {", "http://code.hub.test:%d {" % port).replace("\ttls internal\n", "")
    caddyfile = os.path.join(workdir, "Caddyfile")
    with open(caddyfile, "w") as out:
        out.write("{\n\tadmin 127.0.0.1:%d\n}\n%s" % (admin, sites))
    env = dict(os.environ, XDG_DATA_HOME=os.path.join(workdir, "data"), XDG_CONFIG_HOME=os.path.join(workdir, "cfg"))
    proc = subprocess.Popen(["caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, "%s=%s" % (_hub_routes.ROUTE_COOKIE, token)


def caddy_version():
    return subprocess.run(["caddy", "version"], capture_output=True, text=True, check=True).stdout.split()[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    options = parser.parse_args()
    upstream_port, hub_port, chp_port, chp_api = free_port(), free_port(), free_port(), free_port()
    procs = []
    workdir = tempfile.mkdtemp(prefix="hub-bench-")
    try:
        proc, _rest = start(["node", "upstream.js"], {"PORT": str(upstream_port)})
        procs.append(proc)
        collections = os.path.join(TOP, ".build", "collections")
        proc, cookie = start([sys.executable, "serve_hub.py", str(hub_port), str(upstream_port)],
                             {"PYTHONPATH": collections})
        procs.append(proc)
        procs.append(subprocess.Popen(
            [os.path.join(HERE, "node_modules", ".bin", "configurable-http-proxy"), "--ip", "127.0.0.1",
             "--port", str(chp_port), "--api-ip", "127.0.0.1", "--api-port", str(chp_api),
             "--default-target", "http://127.0.0.1:%d" % upstream_port, "--log-level", "error"],
            stdout=subprocess.DEVNULL, cwd=HERE))
        wait_port(chp_port)
        proc, router_port, route_cookie = start_router(hub_port, upstream_port, workdir)
        procs.append(proc)
        wait_port(router_port)
        host = "Host: code.hub.test"
        cases = {"direct": (upstream_port, [host]),
                 "hub": (router_port, [host, "Cookie: %s; %s" % (cookie, route_cookie)]),
                 "hub_first": (hub_port, [host, "Cookie: %s" % cookie]),
                 "chp": (chp_port, [host])}
        for name, (port, headers) in cases.items():  # each answers, then a short warm-up
            check = wrk(port, headers, 2, 10)
            if check["errors"] or not check["requests"]:
                raise RuntimeError("%s does not answer cleanly: %s" % (name, check))
        samples = {name: [] for name in cases}
        for round_number in range(options.rounds):
            for name, (port, headers) in cases.items():
                sample = wrk(port, headers, options.seconds, options.connections)
                log("round %d %-9s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d" % (
                    round_number + 1, name, sample["rps"], sample["p50_ms"], sample["p99_ms"], sample["errors"]))
                samples[name].append(sample)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {name: {key: round(statistics.median(s[key] for s in runs), 2)
                      for key in ("rps", "p50_ms", "p90_ms", "p99_ms")} for name, runs in samples.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=TOP, capture_output=True, text=True,
                            check=True).stdout
    result = {"benchmark": "hub", "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
              "commit": commit.strip(), "router": "caddy %s" % caddy_version(),
              "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
              "where": "this machine, loopback, no guest", "connections": options.connections,
              "seconds": options.seconds, "rounds": options.rounds, "samples": samples, "median": summary,
              "ratios": {"hub_rps_vs_chp": round(summary["hub"]["rps"] / summary["chp"]["rps"], 2),
                         "hub_p99_vs_chp": round(summary["hub"]["p99_ms"] / summary["chp"]["p99_ms"], 2),
                         "hub_first_rps_vs_chp": round(summary["hub_first"]["rps"] / summary["chp"]["rps"], 2),
                         "chp_rps_vs_direct": round(summary["chp"]["rps"] / summary["direct"]["rps"], 2)},
              # Programs each request passes through besides wrk: the proxy (one process) and the service.
              "processes_per_request": {"direct": 1, "hub": 2, "hub_first": 2, "chp": 2}}
    os.makedirs(os.path.join(HERE, "runs"), exist_ok=True)
    path = os.path.join(HERE, "runs", "%s.json" % result["time"])
    with open(path, "w") as out:
        json.dump(result, out, indent=2, sort_keys=True)
        out.write("\n")
    for name in ("hub", "hub_first", "chp", "direct"):
        print("%-9s %8.0f req/s  p99 %8.2f ms" % (name, summary[name]["rps"], summary[name]["p99_ms"]))
    print("hub / chp: %.2fx req/s (goal >= 1.2x), p99 %.2fx (goal <= 0.5x); raw: %s" % (
        result["ratios"]["hub_rps_vs_chp"], result["ratios"]["hub_p99_vs_chp"], os.path.relpath(path, TOP)))


if __name__ == "__main__":
    main()
