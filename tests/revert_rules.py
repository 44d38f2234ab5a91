# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests that can fail: revert each rule in a copy of its source and check a unit test fails.

Each entry names a rule, the file holding it, the line(s) that implement it and what they
become without the rule. The source is restored after each run. Run by `make units`.
"""

import os
import subprocess
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PYTHON = os.path.join(".venv", "bin", "python") if os.path.exists(os.path.join(".venv", "bin", "python")) \
    else sys.executable
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
]
ok = True
for what, path, old, new in REVERTS:
    text = open(path).read()
    if old not in text:
        print("NOT FOUND:", what)
        ok = False
        continue
    open(path, "w").write(text.replace(old, new, 1))
    try:
        out = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "tests/unit"],
                             check=False, capture_output=True, text=True).stdout
    finally:
        open(path, "w").write(text)
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    print("revert %-52s -> %s" % (what, failed[0].split("::", 1)[1][:80] if failed else "NO TEST FAILED"))
    ok = ok and bool(failed)
sys.exit(0 if ok else 1)
