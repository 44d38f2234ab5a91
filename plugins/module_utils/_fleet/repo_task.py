# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One-shot tasks: try a command on a copy of a repository, in one call, with one JSON result.

``renet task run --repo shop --key-file K -- CMD`` (and ``lockbox.fleet.repo_task``) forks the
repository as ``shop:task-<id>``, brings the fork up (its own daemon and addresses, no secrets,
no egress beyond loopback), runs CMD in the fork's sandbox (``_fleet/sandbox``) with no terminal,
and returns the task id, the fork's name, the command, status, exit code, duration, stdout,
stderr, the Docker requests the sandbox refused and the kernel's refusals (EACCES/EPERM, through
strace when the host has it); then deletes the fork unless asked to keep it. Whatever fails,
the fork is deleted (unless kept) and the result says what happened.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time

from ansible_collections.lockbox.fleet.plugins.module_utils._core import audit as _audit
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import btrfs_fork as _btrfs_fork
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox as _sandbox
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state

MAX_OUTPUT = 64 << 10
WORK_ROOT = "/run/rediacc"


def _read_clipped(path):
    with open(path, "rb") as handle:
        data = handle.read(MAX_OUTPUT + 1)
    return data[:MAX_OUTPUT].decode("utf-8", "replace"), len(data) > MAX_OUTPUT


def _in_sandbox(runner, layout, fork, argv, say_error):
    """The session, in a child process: it takes a mount namespace of its own, the task goes on in the host's."""
    os.makedirs(WORK_ROOT, mode=0o755, exist_ok=True)
    work = tempfile.mkdtemp(prefix="task-", dir=WORK_ROOT)
    paths = {name: os.path.join(work, name) for name in ("stdout", "stderr", "outcome.json")}
    try:
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                with open(paths["stdout"], "wb") as out, open(paths["stderr"], "wb") as err:
                    outcome = _sandbox.session(runner, layout, fork, argv, environ={}, say_error=say_error,
                                               streams=(out.fileno(), err.fileno()))
                code = 0
            except BaseException as exc:  # reported to the task, never raised in a forked copy of it
                outcome = {"error": getattr(exc, "msg", None) or str(exc) or type(exc).__name__}
            finally:
                with open(paths["outcome.json"], "w") as handle:
                    json.dump(outcome, handle)
                os._exit(code)
        os.waitpid(pid, 0)
        with open(paths["outcome.json"]) as handle:
            outcome = json.load(handle)
        if "error" in outcome:
            raise _sandbox.SandboxError("the task's sandbox could not run: %s" % outcome["error"])
        outcome["stdout"], outcome["stdout_truncated"] = _read_clipped(paths["stdout"])
        outcome["stderr"], outcome["stderr_truncated"] = _read_clipped(paths["stderr"])
        return outcome
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_fork(runner, layout, fork):
    _repo_app.converge_app(runner, layout, fork, state="down", unmount=True)
    _luks_repo.converge_repo(runner, layout, fork, state="absent", force=True)


def run_task(runner, layout, repository, argv, *, key, keep=False, say_error=None):
    """Fork ``repository``, run ``argv`` in the fork's sandbox, delete the fork unless ``keep``; the result."""
    say_error = say_error or (lambda _text: None)
    if not argv:
        raise InvalidInput("a task needs a command (renet task run --repo NAME -- COMMAND)")
    _state.ready_record(layout.state_dir, repository)
    if key is None:
        raise InvalidInput("a task opens a fork of %s: give its key (key_file)" % repository)
    task_id = secrets.token_hex(4)
    tag = "task-" + task_id
    fork = _state.fork_name(repository, tag)
    result = {"task_id": task_id, "repository": repository, "fork": fork, "command": list(argv), "status": "error",
              "exit_code": None, "stdout": "", "stderr": "", "refused": [], "kernel_denials": None, "kept": keep}
    started = time.monotonic()
    try:
        _btrfs_fork.fork_repo(runner, layout, repository, tag, opened=True, key=key)
        _repo_app.converge_app(runner, layout, fork, state="up", key=key)
        outcome = _in_sandbox(runner, layout, fork, argv, say_error)
        result.update(outcome)
        result["status"] = "ok" if outcome["exit_code"] == 0 else "failed"
    except LockboxError as exc:
        result["error"] = exc.msg
    finally:
        if not keep and _state.HostState(layout.state_dir).get(fork) is not None:
            try:
                _remove_fork(runner, layout, fork)
            except LockboxError as exc:
                result["cleanup_error"] = "the fork %s stays: %s" % (fork, exc.msg)
                result["kept"] = True
        result["duration_s"] = round(time.monotonic() - started, 3)
        _audit.record("task", task_id=task_id, repository=repository, fork=fork, command=list(argv),
                      status=result["status"], exit_code=result["exit_code"], duration_s=result["duration_s"],
                      refused=result["refused"], kernel_denials=len(result["kernel_denials"] or []),
                      kept=result["kept"], error=result.get("error"))
    return result


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_task (check mode runs nothing and says what would happen)."""
    layout = _repository.layout_of(params)
    argv = params.get("command") or []
    if check_mode:
        _state.ready_record(layout.state_dir, params["repository"])
        return {"changed": True, "repository": params["repository"], "command": argv,
                "msg": "would fork %s, run the command in the fork's sandbox and %s the fork"
                % (params["repository"], "keep" if params.get("keep") else "delete")}
    result = run_task(runner, layout, params["repository"], argv, key=_repository.key_of(params),
                      keep=bool(params.get("keep")))
    result["changed"] = True
    if result["status"] == "error":
        result["failed"] = True
        result["msg"] = result.get("error") or "the task could not run"
    return result
