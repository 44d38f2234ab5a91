# SPDX-License-Identifier: GPL-3.0-or-later
"""Print the README's speed tables from the committed raw runs (benchmarks/<name>/runs/*.json).

Usage: python3 benchmarks/table.py            the newest run of each benchmark that has a floor
Every figure printed comes from those files; nothing is typed in by hand.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def newest(name):
    runs = sorted((HERE / name / "runs").glob("*.json"))
    for path in reversed(runs):
        data = json.loads(path.read_text())
        if "machine" in data:  # runs made before the floor existed have no machine block
            return path, data
    return None, None


def operations_table(name):
    path, data = newest(name)
    if data is None or not data.get("operations"):
        return []
    machine = data["machine"]
    lines = ["`benchmarks/%s/runs/%s` (%s guest, %d vCPUs, %d MiB, on %s; commit %s; median of %d rounds):" % (
        name, path.name, machine["accel"].upper(), machine["guest_cpus"], machine["guest_memory_mib"],
        machine["host_kind"] or "?", machine.get("commit") or "?", data.get("rounds", 0)), "",
        "| operation | ours (ms) | floor (ms) | ours / floor | commands ours / floor |", "|---|---|---|---|---|"]
    for op_name, op in data["operations"].items():
        floor_commands = "-" if op.get("floor_commands") is None else op["floor_commands"]
        commands = "%s / %s" % (op["ours_commands"], floor_commands) if op.get("ours_commands") is not None else "-"
        lines.append("| %s | %.0f | %.0f | %.2f | %s |" % (op_name.replace("_", " "), op["ours_ms"], op["floor_ms"],
                                                           op["ratio"], commands))
    if "checkpoint_to_resident" in data:
        lines += ["", "Checkpoint size / resident memory of the service: %.2f; in restore vs cold start the floor "
                  "column is the cold start (the service warms up again)." % data["checkpoint_to_resident"]]
    if "pages_read_ms" in data:
        lines += ["", "Reading one dump's memory pages back from the encrypted volume (caches dropped), the I/O "
                  "every restore does first: %.0f ms." % data["pages_read_ms"]]
    if data.get("cases"):
        lines += ["", "| case | extents | clone ours / floor (ms) | clone ratio | fork ours / floor (ms) "
                      "| fork ratio |", "|---|---|---|---|---|---|"]
        for case in data["cases"]:
            lines.append("| %s | %d | %.0f / %.0f | %.2f | %.0f / %.0f | %.2f |" % (
                case["case"], case["extents"], case["clone"]["ours_ms"], case["clone"]["floor_ms"],
                case["clone"]["ratio"], case["fork"]["ours_ms"], case["fork"]["floor_ms"], case["fork"]["ratio"]))
        first, last = data["cases"][0]["clone"], data["cases"][-1]["clone"]
        lines += ["", "Clone step, %s / %s: ours %.2f, floor %.2f" % (
            data["cases"][-1]["case"], data["cases"][0]["case"], last["ours_ms"] / first["ours_ms"],
            last["floor_ms"] / first["floor_ms"])]
    sent = [(n, op) for n, op in data["operations"].items() if op.get("ours_bytes")]
    if sent:
        lines += ["", "| operation | bytes sent ours / floor (median) |", "|---|---|"]
        for op_name, op in sent:
            ours, floor = median(op["ours_bytes"]), median(op["floor_bytes"])
            lines.append("| %s | %d / %d |" % (op_name.replace("_", " "), ours, floor))
    if "changed_extents" in data:
        extents, delta = data["changed_extents"], data["operations"]["delta_push"]
        lines += ["", "Changed extents instead of `btrfs send -p`, in the same delta rounds (the image's extent maps "
                  "in both snapshots by FIEMAP, only the changed ranges over the same SSH, nothing verified): "
                  "%.0f ms and %d bytes of data, against send -p's %.0f ms and %d bytes (medians)." % (
                      extents["ms"], median(extents["bytes"]), delta["floor_ms"], median(delta["floor_bytes"]))]
    if "clone_16g_fragmented_vs_1g_fresh" in data and not data.get("cases"):
        lines += ["", "Clone step, 16 GiB fragmented / 1 GiB fresh: %.2f" % data["clone_16g_fragmented_vs_1g_fresh"]]
    return [*lines, ""]


def scale_table():
    path, data = newest("scale")
    if data is None:
        return []
    rounds = "; medians of %d rounds" % data["repeats"] if "repo_up_rounds_ms" in data["marks"]["1"] else ""
    title = "`benchmarks/scale/runs/%s` (%s guest, commit %s%s):" % (
        path.name, data["machine"]["accel"].upper(), data["machine"].get("commit") or "?", rounds)
    lines = [title, "", "| repositories up | that repo up (ms) | repo_info of all (ms) | route sync (ms) | "
             "watchdog CPU per idle minute (ms) |", "|---|---|---|---|---|"]
    for count, mark in sorted(data["marks"].items(), key=lambda item: int(item[0])):
        lines.append("| %s | %.0f | %.1f | %.1f | %.1f |" % (count, mark["repo_up_ms"], mark["repo_info_all_ms"],
                                                             mark["route_sync_ms"],
                                                             mark["watchdog_cpu_ms_per_idle_minute"]))
    growth = data["tenth_vs_first"]
    lines += ["", "10 / 1: " + ", ".join("%s %.2f" % (k, v) for k, v in growth.items() if v is not None), ""]
    return lines


def hub_table():
    path, data = newest("hub")
    if data is None:
        return []
    lines = ["`benchmarks/hub/runs/%s` (this machine, %d cores, no guest: loopback, wrk at %d connections; commit %s; "
             "median of %d rounds of %d s):" % (path.name, data["machine"]["cpus"], data["connections"],
                                                data["commit"], data["rounds"], data["seconds"]), "",
             "| path | requests/s | p50 (ms) | p99 (ms) |", "|---|---|---|---|"]
    for name, title in (("direct", "direct to the service"), ("chp", "configurable-http-proxy (floor)"),
                        ("hub", "the Hub: an established session (the router's direct route)"),
                        ("hub_first", "the Hub: a session's first request (the Hub's own proxy)")):
        if name not in data["median"]:
            continue
        row = data["median"][name]
        lines.append("| %s | %.0f | %.2f | %.2f |" % (title, row["rps"], row["p50_ms"], row["p99_ms"]))
    ratios = data["ratios"]
    lines += ["", "Hub / CHP: %.2fx requests/s (goal >= 1.2x), p99 %.2fx (goal <= 0.5x)." % (
        ratios["hub_rps_vs_chp"], ratios["hub_p99_vs_chp"]), ""]
    return lines


def main():
    out = []
    for name in ("fork", "app", "checkpoint"):
        out += operations_table(name)
    out += scale_table()
    out += hub_table()
    out += operations_table("hub_spawn")
    out += operations_table("transfer")
    out += operations_table("backup")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
