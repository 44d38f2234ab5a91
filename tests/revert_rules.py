# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests that can fail: revert each rule in a copy of its source and check a unit test fails.

Each entry names a rule, the file holding it, the line(s) that implement it and what they
become without the rule. Each worker (one per core, up to 4) reverts in its own copy of the
tree, never in the checkout. Run by `make units`.
"""

import concurrent.futures
import os
import queue
import shutil
import subprocess
import sys
import tempfile

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VENV_PYTHON = os.path.abspath(os.path.join(".venv", "bin", "python"))
PYTHON = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
M = "plugins/module_utils/"
REVERTS = [
    ("bind allowlist (paths judged inside the mount)", M + "_rules/isolation.py",
     '        if is_under(resolved, self.mount):', '        if True:'),
    ("symlinks resolved (realpath) before judging", M + "_rules/isolation.py",
     '        resolved = self.realpath(path)\n', '        resolved = posixpath.normpath(path)\n'),
    ("service keys as an allowlist", M + "_rules/isolation.py",
     '                for key in service if key not in PLAIN_KEYS and key not in CHECKED_KEYS]',
     '                for key in service if False]'),
    ("cap_add limited to Docker's defaults", M + "_rules/isolation.py",
     '    extra = [c for c in _caps(service.get("cap_add")) if c not in allowed_caps]', '    extra = []'),
    ("stub resolver reachable on port 53 only", M + "_fleet/loopback_net.py",
     '        if not attach.startswith("bind"):\n            # The host', '        if False:\n            # The host'),
    ("user extra_hosts kept", M + "_rules/compose.py",
     '    return sorted(user) + sorted(', '    return [] + sorted('),
    ("deploy condition any = always", M + "_rules/compose.py",
     '    if condition == "any":\n        return "always"', '    if condition == "any":\n        return "any"'),
    ("on-failure:N honoured", M + "_fleet/watchdog.py",
     '        if limit.isdigit() and int(limit) > 0 and attempts >= int(limit):', '        if False:'),
    ("Rediaccfile sourced without set -e", M + "_tools/bash.py",
     "    script = ('source ./%s", "    script = ('set -e; source ./%s"),
    ("Rediaccfiles at any depth", M + "_fleet/project.py",
     '        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if depth < MAX_DEPTH else []',
     '        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if depth < 1 else []'),
    ("env_file/include checked before compose reads them", M + "_fleet/project.py",
     '    for what, written, base in referenced_host_files(files):', '    for what, written, base in []:'),
    ("service IPs repository-wide", M + "_fleet/project.py",
     '        table = claim_slots(repo.mount, ordered)', '        table = _compose.assign_slots(ordered, {})'),
    ("compose asked once when its services are known", M + "_fleet/project.py",
     '        if all(name in table for name in ordered):\n            break', '        if False:\n            break'),
    ("NET_RAW dropped", M + "_rules/compose.py",
     '            service["cap_drop"] = [*drop, "NET_RAW"]', '            service["cap_drop"] = drop'),
    ("a failure reports the steps already applied", M + "_core/plan.py",
     '            raise with_actions_taken(exc, reports[:index]) from None', '            raise'),
    ("watchdog stays inside the repository's mount", M + "_fleet/watchdog.py",
     '            if not _inside(container["project_dir"], mounts[network_id]):', '            if False:'),
    ("the after-report of an operation observes without commands", M + "_fleet/luks_repo.py",
     'record, deep=False) if not check_mode', 'record) if not check_mode'),
    ("the key is tested up front only for check mode or earlier steps", M + "_fleet/repository.py",
     '(self.check_mode or self.actions):', 'True:'),
    ("idle watchdog: no pass between safety passes", M + "_fleet/watchdog.py",
     'if self.last_full is None or now - self.last_full >= self.safety:', 'if True:'),
    ("an event sends the watchdog to its own daemon only", M + "_fleet/watchdog.py",
     'self.dirty |= new | (set(events) & present)', 'self.dirty |= new | (present if events else set())'),
    ("a new daemon unit needs no daemon-reload", M + "_fleet/repo_daemon.py",
     '        if self.current_unit is None:', '        if False:'),
    ("checkpoint names cannot leave the checkpoint directory", M + "_rules/checkpoint.py",
     'if not isinstance(name, str) or not NAME.fullmatch(name):', 'if not isinstance(name, str):'),
    ("runtime annotations refused", M + "_rules/isolation.py",
     'if key.startswith(RUNTIME_ANNOTATIONS)]', 'if False]'),
    ("CRIU config chosen by lockbox for every service", M + "_rules/compose.py",
     '                                      **{CRIU_CONFIG_ANNOTATION: criu_config(network_id)})',
     '                                      **{})'),
    ("restore-only CRIU options never reach a dump", M + "_fleet/criu_checkpoint.py",
     '                write("dump", options)\n                yield\n                return',
     '                write("dump", options + ["mntns-compat-mode"])\n                yield\n                return'),
    ("a restore puts the processes into the new container's cgroup", M + "_fleet/criu_checkpoint.py",
     '        with criu_mode(repo, restoring=True, cgroup=cgroup, foreign=',
     '        with criu_mode(repo, restoring=True, cgroup=None, foreign='),
    ("restore from the container's own checkpoint directory", M + "_fleet/criu_checkpoint.py",
     '    _link_tree(source, staged)', '    pass'),
    ("a failed restore starts the service fresh", M + "_fleet/criu_checkpoint.py",
     '            _docker.start(runner, host, entry["id"])\n        started', '            raise\n        started'),
    ("a failed dump brings stopped containers back", M + "_fleet/criu_checkpoint.py",
     '            _mark_stopped(repo, entries, stopped=False)\n        shutil', '            pass\n        shutil'),
    ("restore on up reads only this repository's checkpoints", M + "_fleet/criu_checkpoint.py",
     '    if os.path.dirname(directory) != os.path.realpath(root_of(repo.mount)) or \\',
     '    if False or \\'),
    ("a damaged checkpoint is never handed to CRIU", M + "_fleet/criu_checkpoint.py",
     '    return "its images differ from what was dumped (%s)" % ", ".join(changed[:5]) if changed else None',
     '    return None'),
    ("a fork is not up on its parent's stamp", M + "_fleet/repo_app.py",
     ' or \\\n            stamp.get("network_id") != repo.network_id:', ':'),
    ("a fork's alias maps its parent's addresses to its own", M + "_fleet/loopback_net.py",
     '                  (AND32_K, 2, 0, 0, _HOST_BITS26), (OR32_K, 2, 0, 0, own_base),', ''),
    ("connections of another repository's checkpoint are restored closed", M + "_fleet/criu_checkpoint.py",
     '            _start_from(runner, repo, entry, directory, foreign=taken_in != repo.network_id)',
     '            _start_from(runner, repo, entry, directory)'),
    ("the watchdog leaves a service being restored alone", M + "_fleet/criu_checkpoint.py",
     '    _mark_stopped(repo, ready, stopped=True)  # the watchdog', '    pass  # the watchdog'),
    ("a fork's record names the checkpoint its first up restores", M + "_fleet/criu_checkpoint.py",
     '    if name is None and record:', '    if False:'),
    ("two writers of one file each have their own temporary", M + "_core/files.py",
     '    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), '
     'suffix=".lockbox-tmp")',
     '    temporary = path + ".lockbox-tmp"\n'
     '    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)'),
    ("after a restore the CRIU config is a dump's again", M + "_fleet/criu_checkpoint.py",
     '                write("dump", options)\n\n\n# containerd', '                pass\n\n\n# containerd'),
    ("an agent is found in any ancestor's environment", M + "_rules/agents.py",
     '    marked = [i for i, env in enumerate(chain) if env is not None and marker_of(env)]',
     '    marked = [i for i, env in enumerate(chain[:1]) if env is not None and marker_of(env)]'),
    ("an override counts only from the environment the agent started with", M + "_rules/agents.py",
     '    if complete and repo_name in allowed_names(chain[root].get(OVERRIDE)):',
     '    if complete and repo_name in allowed_names(chain[0].get(OVERRIDE)):'),
    ("an unreadable ancestry honours no override", M + "_rules/agents.py",
     '    complete = all(env is not None for env in chain)', '    complete = True'),
    ("containerd's copies of our dumps are removed", M + "_fleet/criu_checkpoint.py",
     '        for name in sorted(copies() - before):', '        for name in []:'),
    ("overwriting a secret needs its current value or a rotation", M + "_rules/secrets.py",
     '    if current is None:\n        raise SecretConflict(', '    if False:\n        raise SecretConflict('),
    ("a secret's current value is compared", M + "_rules/secrets.py",
     '    if digest(current) != stored["digest"]:', '    if False:'),
    ("sealed values are bound to repository, key and mode", M + "_fleet/repo_secret.py",
     '    return ("lockbox-secret\\0%s\\0%s\\0%s" % (guid, key, mode)).encode()',
     '    return b"lockbox-secret"'),
    ("other repositories' secrets refused even unsafe", M + "_rules/compose.py",
     '    if foreign_secrets:\n        raise', '    if False:\n        raise'),
    ("own secrets only read", M + "_rules/isolation.py",
     '        return None if read_only else "the repository', '        return None if True else "the repository'),
    ("env secrets reach compose from tmpfs, placeholders in the repository", M + "_fleet/project.py",
     '{k: "[secret %s%s]" % (_secrets.ENV_PREFIX, k) for k in sentinels}',
     '{k: opened[k][1] for k in sentinels}'),
    ("check mode of a secret touches nothing", M + "_fleet/repo_secret.py",
     '    with contextlib.nullcontext() if check_mode else store.locked():', '    with store.locked():'),
    ("a missing file secret stops the up", M + "_fleet/project.py",
     '        if problems:\n            raise InvalidInput("; ".join(problems))',
     '        if False:\n            pass'),
    ("unknown repository on opened/closed", M + "_fleet/luks_repo.py",
     '        elif record is None and wanted_size is None and state in ("opened", "closed"):', '        elif False:'),
    ("sandbox: Docker endpoints as an allowlist", M + "_rules/sandbox.py",
     '    raise Refused("the repository sandbox does not allow', '    return "pass"\n    raise Refused("'),
    ("sandbox: a container create judged by the compose rule", M + "_rules/sandbox.py",
     '    problems = _isolation.service_problems(paths, "(container)", service, {}, own_volumes)',
     '    problems = []'),
    ("sandbox: MaskedPaths refused even empty", M + "_rules/sandbox.py",
     '        present = value is not None if key in ANY_VALUE_REFUSED else value',
     '        present = value'),
    ("sandbox: NET_RAW dropped from API containers", M + "_rules/sandbox.py",
     '    host["CapDrop"] = [*drops, "NET_RAW"]', '    host["CapDrop"] = drops'),
    ("sandbox: one request per connection", M + "_fleet/sandbox.py",
     '            kept.append(("Connection", "close"))', '            pass'),
    ("sandbox: chunked bodies forwarded to their last chunk only", M + "_fleet/sandbox.py",
     '                        yield line + b"\\r\\n" + trailer, b""\n                        return',
     '                        yield line + b"\\r\\n" + trailer, b""'),
    ("sandbox: ambiguous framing refused", M + "_fleet/sandbox.py",
     '    if length_text is not None and encoding is not None:', '    if False:'),
    ("sandbox key: a key that opens root is refused", M + "_fleet/sandbox_key.py",
     '            return lines, False, "this key cannot be', '            return lines, False, None and "'),
    ("sandbox key: options never taken from the key", M + "_fleet/sandbox_key.py",
     '    if kind not in KEY_TYPES:', '    if False:'),
    ("egress: a fork's connects beyond loopback judged by its allowlist", M + "_fleet/loopback_net.py",
     '(JNE32_K, 3, 0, "outside" if limited else "allow", _LOOPBACK_OCTET)',
     '(JNE32_K, 3, 0, "allow", _LOOPBACK_OCTET)'),
    ("egress: real IPv6 refused for a fork", M + "_fleet/loopback_net.py",
     '    foreign6 = "refuse" if limited else "allow"', '    foreign6 = "allow"'),
    ("egress: only forks are limited", M + "_fleet/loopback_net.py",
     'if record.get("is_fork") else None', 'if True else None'),
    ("task: kernel denials without noise", M + "_fleet/sandbox.py",
     '        if syscall in NOT_DENIALS:\n            continue\n', ''),
    ("task: a task needs a key before anything", M + "_fleet/repo_task.py",
     '    if key is None:\n        raise InvalidInput("a task opens',
     '    if False:\n        raise InvalidInput("a task opens'),
    ("sandbox: only attach and exec start become streams", M + "_fleet/sandbox.py",
     ' and _rules.hijacks(method, target)\n', '\n'),
    ("sandbox: a stream only after the daemon's 101", M + "_fleet/sandbox.py",
     '            if upgrade and not _switched(upstream, conn):', '            if False:'),
    ("sandbox: paths in plain form", M + "_rules/sandbox.py",
     'or _AMBIGUOUS.search(bare):', 'or False:'),
    ("hub: a host runs one Hub", M + "_fleet/hub_install.py",
     '    if installed and installed.get("guid") != record["guid"]:', '    if False:'),
    ("hub routes: a stop withdraws the user's route first", M + "_fleet/hub_environments.py",
     '        env = self._env(user)\n        self._leave(user)\n', '        env = self._env(user)\n'),
    ("hub routes: a grant to an address no longer ready is withdrawn", M + "_fleet/hub_routes.py",
     '(address_of is not None and address_of(u) != g["address"])', 'False'),
    ("hub routes: the router reloaded before the counters load", M + "_fleet/hub_routes.py",
     '            if self.enabled and _systemd.is_active(self.runner, ROUTER_UNIT) == "active":\n',
     '            _nft.load(self.runner, "")\n'
     '            if self.enabled and _systemd.is_active(self.runner, ROUTER_UNIT) == "active":\n'),
    ("hub idle: what the browser sent on a direct route counts", M + "_fleet/hub_environments.py",
     '            if env.user in active or _hub.still_working(', '            if _hub.still_working('),
    ("hub activity: only data segments (PSH) count", M + "_tools/nft.py",
     ' tcp flags & psh == psh counter comment', ' counter comment'),
    ("retention: one backup per period", M + "_rules/retention.py",
     '            if period not in seen:', '            if True:'),
    ("retention: a policy that keeps nothing is refused", M + "_rules/retention.py",
     '    if not any(policy.values()):', '    if False:'),
    ("transfer: a received snapshot is named by its received_uuid", M + "_rules/transfer.py",
     '    return snapshot.get("received_uuid") or snapshot.get("uuid")', '    return snapshot.get("uuid")'),
    ("transfer: snapshot names in full (no trailing newline)", M + "_rules/transfer.py",
     "_SNAPSHOT.fullmatch(name)", "_SNAPSHOT.match(name)"),
    ("transfer: ssh targets are addresses", M + "_tools/ssh.py",
     "_ADDRESS.fullmatch(address)", "_ADDRESS.match(address)"),
    ("transfer: receive confined to the snapshot directory", M + "_tools/btrfs.py",
     'return ["btrfs", "receive", "-C", directory]', 'return ["btrfs", "receive", directory]'),
    ("transfer: written since means after the snapshot's generation", M + "_tools/btrfs.py",
     "return any(g > generation for g in parse_find_new(listed))", "return bool(parse_find_new(listed))"),
    ("transfer: a copy whose counts differ is removed", M + "_fleet/repo_transfer.py",
     '        _btrfs.subvolume_delete(runner, received["path"])\n        raise LockboxError("verification failed',
     '        raise LockboxError("verification failed'),
    ("transfer: an open copy is never replaced", M + "_fleet/repo_transfer.py",
     "    if record is not None and os.path.exists(layout.mapper_device(record[\"guid\"])):",
     "    if False:"),
    ("transfer: another repository of that name is never replaced", M + "_fleet/repo_transfer.py",
     '    if record is not None and record.get("guid") != guid:', '    if False:'),
    ("transfer: the target serves three verbs", M + "_fleet/repo_transfer.py",
     '    if words[:2] != REMOTE or len(words) < 3:', '    if len(words) < 3:'),
    ("transfer: the meter paces to the limit", M + "_fleet/repo_transfer.py",
     '            if ahead > 0:\n                self.sleep(ahead)',
     '            if False:\n                self.sleep(ahead)'),
    ("takeover: a failed step puts the grand's data back", M + "_fleet/repo_takeover.py",
     '            if ctx.get("moved"):', '            if False:'),
    ("takeover: never into an open grand", M + "_fleet/repo_takeover.py",
     '        if grand_seen.mapper or grand_seen.mount:', '        if False:'),
    ("backup: one run per datastore", M + "_fleet/repo_backup.py",
     '            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)', '            pass'),
    ("backup: no second backup of unchanged data", M + "_fleet/repo_backup.py",
     '        current = _unchanged_since(runner, layout, guid, backups)', '        current = None'),
    ("backup: retention removes only the expired", M + "_fleet/repo_backup.py",
     '            for old in expired:\n                _delete_backup(runner, backups[old])',
     '            for old in backups:\n                _delete_backup(runner, backups[old])'),
    ("backup: a cold backup brings the services up after a failure", M + "_fleet/repo_backup.py",
     '    try:  # whatever fails here, up() runs: a backup never leaves the services down\n'
     '        _repo_app.down(runner, cold_repo, environ)\n'
     '        _btrfs.snapshot(runner, layout.subvolume(guid), target, freeze=freeze, readonly=True)\n'
     '    finally:',
     '    if True:\n'
     '        _repo_app.down(runner, cold_repo, environ)\n'
     '        _btrfs.snapshot(runner, layout.subvolume(guid), target, freeze=freeze, readonly=True)\n'
     '    if True:'),
    ("backup: verify compares the recorded checksum", M + "_fleet/repo_backup.py",
     '        if recorded is not None and recorded != digest:', '        if False:'),
    ("backup: the trial open is read-only", M + "_fleet/repo_backup.py",
     '    device = _losetup.attach(runner, image, readonly=True)', '    device = _losetup.attach(runner, image)'),
    ("backup: a failed restore leaves no repository", M + "_fleet/repo_backup.py",
     '            host.remove(as_name)\n', '            pass\n'),
    ("backup: only a fork of this repository holds its data", M + "_fleet/repo_backup.py",
     '        if as_name.split(":", 1)[0] != name:', '        if False:'),
    ("backup: strategy schedules are an allowlist", M + "_rules/backup.py",
     '    if not isinstance(schedule, str) or not _CALENDAR.fullmatch(schedule) or not schedule.strip():',
     '    if not isinstance(schedule, str):'),
    ("backup: copy_to is a checked SSH target", M + "_fleet/repo_backup.py",
     '        copy_target(strategy)\n    except InvalidInput', '        pass\n    except InvalidInput'),
    ("backup: a failed copy counts as a failure", M + "_fleet/repo_backup.py",
     '            failed += 1\n            say("renet backup %s: %s: copy',
     '            say("renet backup %s: %s: copy'),
    ("docker: a removal the daemon already runs is waited for", M + "_tools/docker.py",
     'answer = runner.api(socket_path, "DELETE", path, ok_statuses=(204, 404, 409))',
     'answer = runner.api(socket_path, "DELETE", path, ok_statuses=(204, 404))'),
    ("docker: another conflict on removal is an error", M + "_tools/docker.py",
     '        if "already in progress" not in str(detail):', '        if False:'),
    ("docker: a removal in progress is waited for until the container is gone", M + "_tools/docker.py",
     '        while inspect(runner, host, container_id) is not None:', '        while False:'),
    ("backup schedule: a running timer whose schedule changed is restarted", M + "_fleet/backup_schedule.py",
     '        elif os.path.join(_systemd.UNIT_DIR, unit) in written:', '        elif False:'),
    ("backup schedule: strategies no longer listed are removed", M + "_fleet/backup_schedule.py",
     '    stale = sorted(found - set(names)) if remove_others else []', '    stale = []'),
    ("backup schedule: files are root-only", M + "_fleet/backup_schedule.py",
     '    wanted = {strategy_path(s["name"]): (strategy_text(s), 0o600) for s in strategies}',
     '    wanted = {strategy_path(s["name"]): (strategy_text(s), 0o644) for s in strategies}'),
    ("backup schedule: a failed step puts the files back", M + "_fleet/backup_schedule.py",
     '        _roll_back(runner, before, exc)\n', '        pass\n'),
    ("backup schedule: all strategies checked before anything is read or written", M + "_fleet/backup_schedule.py",
     '    checked = _backup.check_strategies(runner, params["strategies"])\n',
     '    checked = [dict(s, mode="hot") for s in params["strategies"]]\n'),
    ("checkpoint: CRIU learns the kernel before a restore", M + "_fleet/criu_checkpoint.py",
     '        # has it probed here first (criu.learn_kernel).\n        _criu_tool.learn_kernel(runner)\n',
     '        # has it probed here first (criu.learn_kernel).\n'),
    ("prune: stray snapshots only after the grace", M + "_fleet/repo_prune.py",
     '            if now - _newest_change(path) < grace:', '            if False:'),
    ("prune: a daemon of another datastore or a known GUID is not stray", M + "_fleet/repo_prune.py",
     '        if mount is not None and (os.path.dirname(mount) != layout.mount_root or',
     '        if mount is not None and False and (os.path.dirname(mount) != layout.mount_root or'),
    ("prune: Hub users' networkIds are never stray", M + "_fleet/repo_prune.py",
     '_state.NETWORK_ID_FIRST <= int(matched.group(1)) < _state.NETWORK_ID_LIMIT', 'True'),
    ("transfer: a killed copy's progress line is dropped", M + "_fleet/repo_transfer.py",
     '        if isinstance(pid, int) and not os.path.exists("/proc/%d" % pid):', '        if False:'),
    ("checkpoint: a failure quotes CRIU's log", M + "_fleet/criu_checkpoint.py",
     '    errors = _criu_tool.log_errors(message)\n', '    errors = ""\n'),
    ("checkpoint: a dump CRIU failed is asked again", M + "_fleet/criu_checkpoint.py",
     '            if "criu failed" not in exc.msg or attempt == DUMP_ATTEMPTS:', '            if True:'),
    ("checkpoint: only CRIU's own failures are asked again", M + "_fleet/criu_checkpoint.py",
     '            if "criu failed" not in exc.msg or attempt == DUMP_ATTEMPTS:',
     '            if attempt == DUMP_ATTEMPTS:'),
    ("names matched in full (no trailing newline)", M + "_fleet/state.py",
     'not _SEGMENT.fullmatch(value)', 'not _SEGMENT.match(value)'),
    ("autostart: the key must open the repository", M + "_fleet/repo_autostart.py",
     '        _cryptsetup.check_key(runner, layout.image(record["guid"]), key.material)\n', '\n'),
    ("reconcile: only the wanted come up", M + "_fleet/machine_status.py",
     '            if not wanted:\n                continue', '            if False:\n                continue'),
    ("reconcile: a repository whose daemon answers is not brought up again", M + "_fleet/machine_status.py",
     '    if not mounted or _repo_daemon.server_version(runner, record["network_id"]) is None:',
     '    if True:'),
    ("reconcile: one failure does not stop the others", M + "_fleet/machine_status.py",
     '                failed += 1\n                say(', '                raise\n                say('),
    ("test suite: a failed lane reports its last failures", "scripts/molecule_suite.py",
     '    for block in lane.failures[-SHOWN_FAILURES:]:', '    for block in lane.failures[:SHOWN_FAILURES]:'),
    ("test suite: a failure ignore_errors let pass is no cause", "scripts/molecule_suite.py",
     '            self.failures.pop()\n', '            pass\n'),
]


def _copy_of_tree(where):
    """A copy of the project's files at ``where``, importable as the collection (conftest.py)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(name) and not name.startswith("benchmarks/"):
            os.makedirs(os.path.join(where, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(name, os.path.join(where, name))
    link = os.path.join(where, ".build", "collections", "ansible_collections", "lockbox")
    os.makedirs(link)
    os.symlink(where, os.path.join(link, "fleet"))


def _revert_one(tree, entry):
    """(what, first failing test or None), with ``entry``'s rule reverted in ``tree``."""
    what, path, old, new = entry
    source = os.path.join(tree, path)
    text = open(source).read()
    if old not in text:
        return what, "NOT FOUND"
    open(source, "w").write(text.replace(old, new, 1))
    try:
        # The test files that name the reverted file first (a second, not a whole suite, per
        # revert), then the whole suite only if none of them failed: the verdict is the same.
        failed = None
        for tests in (_tests_naming(tree, path), ["tests/unit"]):
            if tests:
                failed = _first_failure(tree, tests)
            if failed:
                break
    finally:
        open(source, "w").write(text)
    return what, failed


def _tests_naming(tree, path):
    """The unit test files whose text names the module or script at ``path`` (by its file name)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    found = []
    for directory, _dirs, files in os.walk(os.path.join(tree, "tests", "unit")):
        for name in sorted(files):
            if name.startswith("test_") and name.endswith(".py"):
                with open(os.path.join(directory, name)) as handle:
                    if stem in handle.read():
                        found.append(os.path.relpath(os.path.join(directory, name), tree))
    return sorted(found)


def _first_failure(tree, tests):
    out = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests],
                         check=False, capture_output=True, text=True, cwd=tree).stdout
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    return failed[0].split("::", 1)[1][:80] if failed else None


def main():
    # Each worker its own copy of the tree: two reverts never meet, and the checkout is never touched.
    workers = max(1, min(4, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="revert-rules-") as scratch:
        trees = queue.Queue()
        for number in range(workers):
            tree = os.path.join(scratch, str(number))
            _copy_of_tree(tree)
            trees.put(tree)

        def run(entry):
            tree = trees.get()
            try:
                return _revert_one(tree, entry)
            finally:
                trees.put(tree)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(run, REVERTS))
    ok = True
    for what, failed in results:
        print("revert %-52s -> %s" % (what, failed or "NO TEST FAILED"))
        ok = ok and failed not in (None, "NOT FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
