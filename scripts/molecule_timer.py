# SPDX-License-Identifier: GPL-3.0-or-later
"""Run Molecule, pass its output through, and print how long each scenario and step took.

Usage: python3 scripts/molecule_timer.py -- molecule test --all ...
Step boundaries are Molecule's own "INFO [scenario > step] Executing" lines. The budgets
of molecule/budgets.yml (docs/testing.md) are checked: a scenario over its budget gets a
WARNING line (the run does not fail on time alone). The slowest tasks of every playbook
come from tests/callback_plugins/task_timer.py through the LOCKBOX_TIMINGS file.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
STEP = re.compile(r"^INFO\s+\[(?P<scenario>[\w.-]+) > (?P<step>[\w-]+)\] Executing$")
SHOWN_TASKS = 15
# A failed Ansible task, or a failed test in pytest's report (never Ansible's retries).
FAILURE = re.compile(r"^(fatal|failed): \[|^\[ERROR\]|^ERROR! |^_{5,} test_|^FAILED (?!- RETRYING)")
FAILURE_LINES = 30
# Colour codes (CI may force colour on) would hide a failure from FAILURE and STEP.
COLOUR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SHOWN_FAILURES = 3


def budgets():
    with open(TOP / "molecule" / "budgets.yml") as handle:
        return yaml.safe_load(handle)["scenarios"]


def summarise(steps, timings_file, limits):
    """Lines of the summary: per scenario (with its steps), then the slowest tasks."""
    per_scenario = {}
    for scenario, step, seconds in steps:
        per_scenario.setdefault(scenario, []).append((step, seconds))
    lines = ["===== molecule timings ====="]
    warnings = []
    for scenario, scenario_steps in per_scenario.items():
        total = sum(seconds for _step, seconds in scenario_steps)
        limit = limits.get(scenario)
        lines.append("%-12s %6.0f s  (budget %s)  %s" % (
            scenario, total, "%d s" % limit if limit else "none",
            ", ".join("%s %.0f" % (step, s) for step, s in scenario_steps)))
        if limit is None:
            warnings.append("WARNING: scenario %s has no budget in molecule/budgets.yml" % scenario)
        elif total > limit:
            warnings.append("WARNING: scenario %s took %.0f s, over its budget of %d s" % (scenario, total, limit))
    tasks = []
    if timings_file.exists():
        for line in timings_file.read_text().splitlines():
            run = json.loads(line)
            tasks.extend((seconds, run["playbook"], name) for name, seconds in run["tasks"])
    if tasks:
        lines.append("slowest %d tasks:" % SHOWN_TASKS)
        for seconds, playbook, name in sorted(tasks, reverse=True)[:SHOWN_TASKS]:
            lines.append("  %6.1f s  %s: %s" % (seconds, playbook, name))
    return lines + warnings


def main(argv):
    if not argv or argv[0] != "--" or len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    limits = budgets()
    timings_file = TOP / ".build" / "logs" / "task-timings.jsonl"
    timings_file.parent.mkdir(parents=True, exist_ok=True)
    timings_file.unlink(missing_ok=True)
    env = dict(os.environ, LOCKBOX_TIMINGS=str(timings_file))
    steps, current = [], None
    failures, context = [], 0
    proc = subprocess.Popen(argv[1:], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    for raw in proc.stdout:
        sys.stdout.write(raw)
        sys.stdout.flush()
        line = COLOUR.sub("", raw)
        # A failed task, a failed test: kept for the end, where CI's short excerpt shows it.
        if FAILURE.search(line):
            context = FAILURE_LINES
            failures.append("--")
        if context:
            failures.append(line.rstrip()[:300])
            context -= 1
        match = STEP.match(line)
        if match:
            now = time.monotonic()
            if current is not None:
                steps.append((current[0], current[1], now - current[2]))
            current = (match["scenario"], match["step"], now)
    rc = proc.wait()
    if current is not None:
        steps.append((current[0], current[1], time.monotonic() - current[2]))
    failures_file = timings_file.parent / "molecule-failures.txt"
    failures_file.unlink(missing_ok=True)
    if rc and failures:
        # Also kept in a file: scripts/test prints it again as the run's last lines.
        text = "===== what failed in molecule (the first %d) =====\n%s\n" % (
            SHOWN_FAILURES, "\n".join(failures[:SHOWN_FAILURES * (FAILURE_LINES + 1)]))
        failures_file.write_text(text)
        print("\n" + text, end="")
    print("\n".join(summarise(steps, timings_file, limits)), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
