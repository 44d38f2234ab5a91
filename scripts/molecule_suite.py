# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the Molecule scenarios in the phases and lanes of molecule/suite.yml, and time them.

Usage: python3 scripts/molecule_suite.py

A phase starts when the previous one ended; the lanes of a phase run side by side, each on
its own guest with its own copy of Molecule's state (state file and inventory: two Molecule
processes rewriting one would race), and the guests of the shared state are destroyed at
the end, also after a failure or an interrupt. A lane that runs alone streams its output;
lanes side by side write their own logs (printed whole when the phase ends) and show their
step lines and failures as they happen, prefixed with the lane's name.

Timings: per scenario and step from Molecule's own "INFO [scenario > step] Executing"
lines, per phase and lane, the slowest tasks of every playbook (tests/callback_plugins/
task_timer.py through LOCKBOX_TIMINGS files) and a WARNING line for a scenario or the
whole suite over its budget (the run does not fail on time alone).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
STATE = TOP / ".build" / "molecule"
LOGS = TOP / ".build" / "logs"
STEP = re.compile(r"^INFO\s+\[(?P<scenario>[\w.-]+) > (?P<step>[\w-]+)\] Executing$")
# A step Molecule skipped (guests already created, destroy=never, ...) is not timed.
SKIPPED = re.compile(r"^(WARNING\s+\[[\w.-]+ > [\w-]+\] Skipping"
                     r"|INFO\s+\[[\w.-]+ > [\w-]+\] Executed: (Skipped|\d+ disabled))")
SHOWN_TASKS = 15
# A failed Ansible task, or a failed test in pytest's report (never Ansible's retries).
# Molecule's own errors (an idempotence or syntax failure) are logged as "CRITICAL ..." or "ERROR ...".
FAILURE = re.compile(r"^(fatal|failed): \[|^\[ERROR\]|^(ERROR|CRITICAL)\b|^_{5,} test_|^FAILED (?!- RETRYING)")
# The task a failure belongs to (Ansible prints its name before), until a play's recap.
TASK = re.compile(r"^(TASK|RUNNING HANDLER) \[")
# Ansible's line after a failure that ignore_errors let pass.
IGNORED = re.compile(r"^\.\.\.ignoring$")
FAILURE_LINES = 30
# Colour codes (CI may force colour on) would hide a failure from FAILURE and STEP.
COLOUR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The last failures of a failed lane: it stops at its first failed command, so its last
# failure is the cause; the ones before it are mostly failures the tests expect (a hostile
# input refused inside a block's rescue), which Ansible prints the same way.
SHOWN_FAILURES = 3
STARTED = time.monotonic()


def load_suite(path=TOP / "molecule" / "suite.yml"):
    with open(path) as handle:
        suite = yaml.safe_load(handle)
    for phase in suite["phases"]:
        for lane, entries in phase["lanes"].items():
            if not entries or not all(isinstance(entry, str) for entry in entries):
                raise SystemExit("molecule/suite.yml: lane %s of phase %s must list scenarios" % (lane, phase["name"]))
    return suite


def commands(entry):
    """The Molecule commands of one lane entry: a whole scenario, or some of its steps."""
    scenario, _colon, steps = entry.partition(":")
    scenario = scenario.strip()
    if not steps.strip():
        return [["molecule", "test", "-s", scenario, "--destroy=never"]]
    return [["molecule", step.replace("_", "-"), "-s", scenario] for step in steps.split()]


def lane_state(shared, name):
    """A lane's own copy of Molecule's shared state; the guests' directory stays shared."""
    own = shared.parent / ("lane-" + name)
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True)
    for entry in shared.iterdir():
        if entry.name == "inventory":
            shutil.copytree(entry, own / entry.name, symlinks=True)
        elif entry.is_dir():
            (own / entry.name).symlink_to(entry)
        else:
            shutil.copy2(entry, own / entry.name)
    return own


class Lane:
    """One lane of a phase: its Molecule commands in order, stopping at the first failure."""

    def __init__(self, phase, name, entries, state, alone):
        self.phase, self.name, self.state, self.alone = phase, name, state, alone
        self.commands = [argv for entry in entries for argv in commands(entry)]
        self.log = LOGS / ("molecule-%s-%s.log" % (phase, name))
        self.timings = LOGS / ("task-timings-%s-%s.jsonl" % (phase, name))
        self.steps, self.failures = [], []  # failures: blocks of lines, each from a FAILURE line on
        self.rc, self.seconds, self.process = None, 0.0, None
        self._current, self._context, self._task = None, 0, None

    def run(self, output_lock):
        started = time.monotonic()
        try:
            self._run(output_lock)
        except Exception as error:  # pylint: disable=broad-except
            # A lane that could not run its commands failed; the other lanes go on.
            self.rc = 1
            self.failures.append(["lane %s could not run: %s" % (self.name, error)])
        self.seconds = time.monotonic() - started

    def _run(self, output_lock):
        self.timings.unlink(missing_ok=True)
        env = dict(os.environ, MOLECULE_EPHEMERAL_DIRECTORY=str(self.state), LOCKBOX_TIMINGS=str(self.timings),
                   NO_COLOR="1")
        with open(self.log, "w") as log:
            for argv in self.commands:
                self._say(output_lock, "$ %s\n" % " ".join(argv), log)
                self.process = subprocess.Popen(argv, cwd=TOP, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                                start_new_session=True)
                for raw in self.process.stdout:
                    self._line(raw, output_lock, log)
                self.rc = self.process.wait()
                if self.rc:
                    break
        self._close_step()

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def _say(self, output_lock, text, log):
        log.write(text)
        log.flush()
        if self.alone:
            with output_lock:
                sys.stdout.write(text)
                sys.stdout.flush()

    def _line(self, raw, output_lock, log):
        line = COLOUR.sub("", raw)
        log.write(raw)
        log.flush()
        important = False
        if TASK.match(line):
            self._task = line.rstrip()[:300]
        elif line.startswith("PLAY RECAP"):
            self._task = None
        if FAILURE.search(line):
            self._context = FAILURE_LINES
            self.failures.append([self._task] if self._task else [])
            important = True
        elif IGNORED.match(line) and self.failures:
            self.failures.pop()
            self._context = 0
        if self._context:
            self.failures[-1].append(line.rstrip()[:300])
            self._context -= 1
        if SKIPPED.match(line):
            self._current = None
        match = STEP.match(line)
        if match:
            self._close_step()
            self._current = (match["scenario"], match["step"], time.monotonic())
            important = True
        with output_lock:
            if self.alone:
                sys.stdout.write(raw)
            elif important:
                sys.stdout.write("[%s %4.0fs] %s" % (self.name, time.monotonic() - STARTED, line))
            sys.stdout.flush()

    def _close_step(self):
        if self._current is not None:
            scenario, step, began = self._current
            self.steps.append((scenario, step, time.monotonic() - began))
            self._current = None


def run_phase(phase, shared):
    """Runs a phase's lanes side by side; returns them when all have ended."""
    lanes = phase["lanes"]
    alone = len(lanes) == 1
    output_lock = threading.Lock()
    running = [Lane(phase["name"], name, entries, shared if alone else lane_state(shared, name), alone)
               for name, entries in lanes.items()]
    print("\n===== phase %s: %s =====" % (phase["name"], "; ".join(
        "%s: %s" % (name, ", ".join(entries)) for name, entries in lanes.items())), flush=True)
    threads = [threading.Thread(target=lane.run, args=(output_lock,), name=lane.name) for lane in running]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(1)
    except BaseException:
        for lane in running:
            lane.stop()
        for thread in threads:
            thread.join()
        raise
    if not alone:
        for lane in running:
            heading = "lane %s of phase %s (rc=%s, %.0f s)" % (lane.name, phase["name"], lane.rc, lane.seconds)
            print("\n===== %s =====" % heading, flush=True)
            sys.stdout.write(lane.log.read_text(errors="replace"))
            sys.stdout.flush()
    return running


def failure_report(phase, lane):
    """What made a lane fail: its last failures (or its rc when it printed none), newest last."""
    lines = ["===== what failed in molecule: lane %s of phase %s, rc=%s (its last %d failures) =====" % (
        lane.name, phase, lane.rc, SHOWN_FAILURES)]
    for block in lane.failures[-SHOWN_FAILURES:]:
        lines += ["-- %s" % lane.name, *block]
    if not lane.failures:
        lines.append("(no failed task in its output: see %s)" % lane.log)
    return "\n".join(lines) + "\n"


def summarise(phases, budgets, wall):
    """Lines of the summary: per scenario (with its steps), per phase and lane, the slowest tasks."""
    per_scenario = {}
    for lanes in phases.values():
        for lane in lanes:
            for scenario, step, seconds in lane.steps:
                per_scenario.setdefault(scenario, []).append((step, seconds))
    lines = ["===== molecule timings ====="]
    warnings = []
    limits = budgets["scenarios"]
    for scenario, scenario_steps in per_scenario.items():
        total = sum(seconds for _step, seconds in scenario_steps)
        limit = limits.get(scenario)
        lines.append("%-12s %6.0f s  (budget %s)  %s" % (
            scenario, total, "%d s" % limit if limit else "none",
            ", ".join("%s %.0f" % (step, s) for step, s in scenario_steps)))
        if limit is None:
            warnings.append("WARNING: scenario %s has no budget in molecule/suite.yml" % scenario)
        elif total > limit:
            warnings.append("WARNING: scenario %s took %.0f s, over its budget of %d s" % (scenario, total, limit))
    for name, lanes in phases.items():
        lines.append("phase %-10s %6.0f s  %s" % (name, max(lane.seconds for lane in lanes), ", ".join(
            "lane %s %.0f s" % (lane.name, lane.seconds) for lane in lanes)))
    lines.append("suite        %6.0f s  (budget %d s)" % (wall, budgets["suite"]))
    if wall > budgets["suite"]:
        warnings.append("WARNING: the suite took %.0f s, over its budget of %d s" % (wall, budgets["suite"]))
    return lines + slowest_tasks(phases) + warnings


def slowest_tasks(phases):
    tasks = []
    for lanes in phases.values():
        for lane in lanes:
            if lane.timings.exists():
                for line in lane.timings.read_text().splitlines():
                    run = json.loads(line)
                    tasks.extend((seconds, run["playbook"], name) for name, seconds in run["tasks"])
    lines = ["slowest %d tasks:" % SHOWN_TASKS] if tasks else []
    for seconds, playbook, name in sorted(tasks, reverse=True)[:SHOWN_TASKS]:
        lines.append("  %6.1f s  %s: %s" % (seconds, playbook, name))
    return lines


def destroy(shared):
    print("\n===== destroy =====", flush=True)
    env = dict(os.environ, MOLECULE_EPHEMERAL_DIRECTORY=str(shared), NO_COLOR="1")
    return subprocess.run(["molecule", "destroy", "-s", "default"], check=False, cwd=TOP, env=env).returncode


def interrupted(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    # A CI timeout sends SIGTERM: stop the lanes and destroy the guests as after Ctrl-C.
    signal.signal(signal.SIGTERM, interrupted)
    suite = load_suite()
    LOGS.mkdir(parents=True, exist_ok=True)
    failures_file = LOGS / "molecule-failures.txt"
    failures_file.unlink(missing_ok=True)
    # A killed earlier run's state would say the guests exist: every run starts clean.
    shutil.rmtree(STATE, ignore_errors=True)
    shared = STATE / "shared"
    shared.mkdir(parents=True)
    started = time.monotonic()
    phases, failures, rc = {}, [], 0
    try:
        for phase in suite["phases"]:
            lanes = run_phase(phase, shared)
            phases[phase["name"]] = lanes
            failed = [lane for lane in lanes if lane.rc != 0]
            for lane in failed:
                failures.append(failure_report(phase["name"], lane))
            if failed:
                rc = failed[0].rc or 1
                print("\n===== phase %s failed in lane %s: later phases do not run =====" % (
                    phase["name"], ", ".join(lane.name for lane in failed)), flush=True)
                break
    finally:
        destroyed = destroy(shared)
    rc = rc or destroyed
    if rc and failures:
        # Also kept in a file: scripts/test prints it again as the run's last lines.
        text = "".join(failures)
        failures_file.write_text(text)
        print("\n" + text, end="")
    print("\n".join(summarise(phases, suite, time.monotonic() - started)), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
