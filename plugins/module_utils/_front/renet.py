# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``renet``: the host runtime's command line (installed by the machine role as /usr/local/bin/renet).

    renet compose [--unsafe] -- ARGS     docker compose against the repository's daemon, rewritten
    renet up NAME [--skip-checkpoint]    the Rediaccfile lifecycle of an opened repository (restoring
    renet down NAME [--checkpoint] [--unmount]   the checkpoint down --checkpoint left)
    renet checkpoint create|restore|delete NAME CHECKPOINT [--stop] | list NAME [--json]
                                         CRIU checkpoints of the rediacc.checkpoint=true services
    renet secret set NAME KEY [--mode env|file] [--current-file F | --rotate] < VALUE
    renet secret get NAME KEY | list NAME | unset NAME KEY [--json]
                                         write-only secrets (get shows the SHA-256 digest)
    renet sandbox --repo NAME [-- COMMAND...]
                                         a session in the repository's kernel sandbox (uid 7111,
                                         Landlock, its own daemon only); the forced command of its SSH key
    renet task run --repo NAME --key-file K [--keep] -- COMMAND...
                                         fork, run COMMAND in the fork's sandbox, print one JSON result,
                                         delete the fork (unless --keep)
    renet info [NAME] [--json]           info() of every Rediaccfile, as text (JSON with --json)
    renet hub install COMPOSE_FILE [--service S] [--check] | uninstall COMPOSE_FILE [--check]
                                         the repository's Hub (its rediacc.install_as=systemd service) as
                                         the host unit rediacc-hub.service, its labels and router files
    renet hub status | stop USER | hibernate USER
                                         the Hub's users' environments (through the running Hub);
                                         hibernate checkpoints one as idling does
    renet hub start --labels=F --listen=IP OPTIONS   the Hub's server (run by rediacc-hub.service)
    renet hub gc WORKSPACE_DIR [--max-age=30d] [--dry-run] [--json]
                                         remove users' data-roots unused longer than that whose daemon
                                         is no longer configured (workspaces stay)
    renet backup take NAME [--cold] | list NAME [--json] | verify NAME [--at AT] --key-file K
    renet backup restore NAME [--at AT] --as NEW
                                         backups of a repository on this host (docs/backup.md)
    renet backup run STRATEGY | check FILE|-
                                         a strategy of /etc/rediacc/backup (what its timer runs) | check
                                         a strategy file (-: a JSON list of strategies on stdin)
    renet status [--json]                the health of every repository (lockbox.fleet.machine_status)
    renet reconcile [--boot] [--check]   bring every repository wanted up back up (--boot: the autostart
                                         ones too; what rediacc-autostart.service and the timer run)
    renet watchdog [--interval S] [--once]
                                         start stopped containers per their saved restart policy,
                                         on each daemon's events; a safety pass every S seconds

Everything here calls the same library as the Ansible modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from ansible_collections.lockbox.fleet.plugins.module_utils._core import audit as _audit
from ansible_collections.lockbox.fleet.plugins.module_utils._core import procfs as _procfs
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _criu_checkpoint
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_task as _repo_task
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox as _sandbox
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import watchdog as _watchdog
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import agents as _agents

# renet compose subcommands that change nothing and run nothing in a container.
READ_ONLY_COMPOSE = frozenset(("ps", "logs", "config", "ls", "images", "top", "port", "version", "events"))


def _say(text, stream=None):
    # A command-line program: it talks on stdout/stderr (module_utils code never does otherwise).
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def packed_version():
    """The collection version the runtime was packed from (roles/machine/files/pack_runtime.py)."""
    import pkgutil
    try:
        data = pkgutil.get_data("ansible_collections.lockbox.fleet.plugins.module_utils._front", "VERSION")
    except OSError:
        data = None
    return data.decode().strip() if data else "unpacked"


def _hub_parser(commands):
    hub = commands.add_parser("hub", help="the repository's Hub as a host service")
    hub.add_argument("verb", choices=("install", "uninstall", "status", "start", "gc", "stop", "hibernate"))
    hub.add_argument("compose_file", nargs="?", metavar="PATH",
                     help="install/uninstall: the compose file with the Hub service; gc: the workspace directory; "
                          "stop/hibernate: the user")
    hub.add_argument("--max-age", default="30d", help="gc: a data-root unused this long may go (default 30d)")
    hub.add_argument("--dry-run", action="store_true", help="gc: list what would be removed, remove nothing")
    hub.add_argument("--json", action="store_true", help="gc: print the report as JSON")
    hub.add_argument("--service", help="install: the Hub service, when the file has several host services")
    hub.add_argument("--check", action="store_true", help="install/uninstall: print the plan, change nothing")


def _backup_parser(commands):
    backup = commands.add_parser("backup", help="backups of repositories on this host (docs/backup.md)")
    backup.add_argument("verb", choices=("take", "list", "verify", "restore", "run", "check"))
    backup.add_argument("name", help="the repository (run: the strategy; check: the strategy file, - for a list "
                                     "on stdin)")
    backup.add_argument("--cold", action="store_true", help="take: down() for the snapshot, then up()")
    backup.add_argument("--at", help="verify, restore: a backup's name, or a time (the newest at or before it)")
    backup.add_argument("--as", dest="restore_as", metavar="NEW", help="restore: the new repository's name")
    backup.add_argument("--key-file", help="verify: the repository's key file (root-only)")
    backup.add_argument("--json", action="store_true", help="print the result as JSON")


def _machine_parser(commands):
    status = commands.add_parser("status", help="the health of every repository")
    status.add_argument("--json", action="store_true")
    reconcile = commands.add_parser("reconcile", help="bring every repository wanted up back up")
    reconcile.add_argument("--boot", action="store_true", help="also the repositories marked autostart")
    reconcile.add_argument("--check", action="store_true", help="say what would be done, do nothing")
    watchdog = commands.add_parser("watchdog", help="restart stopped containers per their saved policy")
    watchdog.add_argument("--interval", type=float, default=_watchdog.SAFETY_PASS)
    watchdog.add_argument("--once", action="store_true")


def _parser():
    parser = argparse.ArgumentParser(prog="renet", description="lockbox host runtime (renet compatible)")
    parser.add_argument("--datastore", default=os.environ.get("LOCKBOX_DATASTORE", _repository.DEFAULT_DATASTORE))
    parser.add_argument("--version", action="version", version="renet (lockbox.fleet %s)" % packed_version())
    commands = parser.add_subparsers(dest="command", required=True)
    compose = commands.add_parser("compose", help="docker compose with the repository's isolation")
    compose.add_argument("--unsafe", action="store_true", help="allow privileged, host namespaces, system binds")
    compose.add_argument("args", nargs=argparse.REMAINDER, help="-- then docker compose arguments")
    for name in ("up", "down"):
        command = commands.add_parser(name, help="run %s() of every Rediaccfile" % name)
        command.add_argument("name")
        if name == "down":
            command.add_argument("--unmount", action="store_true", help="also close the LUKS volume")
            command.add_argument("--checkpoint", action="store_true",
                                 help="first checkpoint the rediacc.checkpoint=true services (the next up restores)")
        else:
            command.add_argument("--skip-checkpoint", action="store_true",
                                 help="start fresh, without the checkpoint down --checkpoint left")
    checkpoint = commands.add_parser("checkpoint", help="CRIU checkpoints of the rediacc.checkpoint=true services")
    checkpoint.add_argument("verb", choices=("create", "restore", "delete", "list"))
    checkpoint.add_argument("name", help="the repository")
    checkpoint.add_argument("checkpoint", nargs="?", help="the checkpoint's name (not for list)")
    checkpoint.add_argument("--stop", action="store_true", help="create: stop the containers after the checkpoint")
    checkpoint.add_argument("--json", action="store_true", help="list: print JSON")
    secret = commands.add_parser("secret", help="write-only secrets of a repository (values are never shown)")
    secret.add_argument("verb", choices=("set", "get", "list", "unset"))
    secret.add_argument("name", help="the repository")
    secret.add_argument("key", nargs="?", help="the secret's key (A-Z, 0-9, _), not for list")
    secret.add_argument("--mode", choices=("env", "file"), default="env",
                        help="set: env (${REDIACC_SECRET_<KEY>} in compose) or file (a compose secrets: file)")
    proof = secret.add_mutually_exclusive_group()
    proof.add_argument("--current-file", metavar="PATH",
                       help="set: a file holding the value it has now (needed to overwrite)")
    proof.add_argument("--rotate", action="store_true", help="set: overwrite without the value it has now")
    secret.add_argument("--json", action="store_true", help="print the result (or the error) as JSON")
    sandbox = commands.add_parser("sandbox", help="run a session in the repository's kernel sandbox")
    sandbox.add_argument("--repo", required=True, help="the repository")
    sandbox.add_argument("--guid", help="refuse unless the repository has this GUID (set by its SSH key)")
    sandbox.add_argument("args", nargs=argparse.REMAINDER,
                         help="-- then the command (default: the SSH client's command, else a login shell)")
    task = commands.add_parser("task", help="one-shot task: fork, run a command in the fork's sandbox, report")
    task_run = task.add_subparsers(dest="verb", required=True).add_parser(
        "run", help="fork the repository, run the command in the fork's sandbox, print one JSON result")
    task_run.add_argument("--repo", required=True, help="the repository to fork")
    task_run.add_argument("--key-file", required=True, help="the repository's key file (root-only), to open the fork")
    task_run.add_argument("--keep", action="store_true", help="keep the fork afterwards")
    task_run.add_argument("args", nargs=argparse.REMAINDER, help="-- then the command")
    info = commands.add_parser("info", help="print info() of every Rediaccfile (of every repository without NAME)")
    info.add_argument("name", nargs="?")
    info.add_argument("--json", action="store_true", help="print {repository: {Rediaccfile: output}} as JSON")
    transfer = commands.add_parser("transfer", help="copies of repositories between hosts (docs/transfer.md)")
    transfer.add_argument("verb", choices=("status", "serve", "offer", "receive", "commit"),
                          help="status: the copies under way here; serve: the target side, as the transfer "
                               "key's forced command (reads SSH_ORIGINAL_COMMAND)")
    transfer.add_argument("args", nargs="*", help="receive: GUID SNAPSHOT")
    _backup_parser(commands)
    _machine_parser(commands)
    _hub_parser(commands)
    return parser


def _info(runner, layout, options):
    if options.name:
        names = [options.name]
    else:
        names = [r["name"] for r in _state.HostState(layout.state_dir).all() if r.get("status") == _state.READY]
    report = {}
    for name in names:
        repo = _project.Repository.from_record(layout, _state.ready_record(layout.state_dir, name))
        if not os.path.ismount(repo.mount):
            report[name] = {}
            continue
        report[name] = _repo_app.info(runner, repo, dict(os.environ))
    if options.json:
        _say(json.dumps(report, indent=2, sort_keys=True))
        return 0
    for name in names:
        _say("== %s%s" % (name, "" if report[name] else " (not mounted or no Rediaccfile)"))
        for path, output in report[name].items():
            _say("-- %s\n%s" % (path, output))
    return 0


def _checkpoint_command(runner, layout, options):
    params = {"repository": options.name, "name": options.checkpoint, "leave_running": not options.stop,
              "state": {"create": "present", "restore": "restored", "delete": "absent", "list": "listed"}[options.verb],
              "datastore": layout.datastore, "mount_root": layout.mount_root, "state_dir": layout.state_dir}
    if options.verb != "list" and not options.checkpoint:
        raise InvalidInput("renet checkpoint %s needs the checkpoint's name" % options.verb)
    result = _criu_checkpoint.run(runner, params)
    if options.verb == "list":
        if options.json:
            _say(json.dumps(result["checkpoints"], indent=2, sort_keys=True))
            return 0
        for entry in result["checkpoints"]:
            pending = "  (restored by the next up)" if entry["name"] == result["pending"] else ""
            _say("%-30s %s %10d bytes  %s%s" % (entry["name"], entry["created"], entry["size_bytes"],
                                                ", ".join(entry["containers"]), pending))
        return 0
    for warning in result.get("warnings") or []:
        _say("renet: %s" % warning, sys.stderr)
    done = ", ".join(a["detail"] for a in result["actions"]) or "nothing to do"
    _say("renet checkpoint %s %s %s: %s" % (options.verb, options.name, options.checkpoint, done))
    return 0


def _without_final_newline(data):
    return data[:-1] if data.endswith("\n") else data


def _read_value(stream):
    """A secret's value from stdin (never argv): typed without echo on a terminal; one final newline dropped."""
    if stream.isatty():
        import getpass
        return getpass.getpass("value (not shown): ")
    return _without_final_newline(stream.read())


def _read_current(path):
    try:
        with open(path) as handle:
            return _without_final_newline(handle.read())
    except OSError as exc:
        raise InvalidInput("--current-file %s cannot be read: %s" % (path, exc.strerror)) from None


def _secret_command(layout, options, stdin):
    params = {"repository": options.name, "key": options.key, "state_dir": layout.state_dir,
              "state": {"set": "present", "unset": "absent"}.get(options.verb, "listed")}
    if options.verb != "list" and not options.key:
        raise InvalidInput("renet secret %s needs the secret's key" % options.verb)
    if options.verb == "set":
        params.update(mode=options.mode, rotate=options.rotate, value=_read_value(stdin),
                      current=_read_current(options.current_file) if options.current_file else None)
    result = _repo_secret.run(None, params)
    if options.json:
        _say(json.dumps(result, indent=2, sort_keys=True))
        return 0
    if options.verb == "set":
        _say("renet secret set %s %s: %s (%s, sha256 %s)"
             % (options.name, options.key, result["outcome"], result["mode"], result["digest"]))
    elif options.verb == "unset":
        _say("renet secret unset %s %s: %s" % (options.name, options.key, result["outcome"]))
    elif options.verb == "get":
        if result["secret"] is None:
            raise InvalidInput("%s has no secret %s" % (options.name, options.key))
        _say(result["secret"]["digest"])
    else:
        for entry in result["secrets"]:
            _say("%-32s %-4s sha256 %s  %s" % (entry["key"], entry["mode"], entry["digest"], entry["updated"]))
    return 0


def _after_dashes(args):
    """The arguments given after ``--`` (argparse's REMAINDER keeps the ``--`` itself)."""
    return args[1:] if args[:1] == ["--"] else args


def _operation(layout, options, environ):
    """(repository, what is asked) of a mutating or shell command, or (None, None) for the others."""
    verb = getattr(options, "verb", None)
    guarded = {"up": True, "down": True, "sandbox": True, "checkpoint": verb != "list",
               "secret": verb in ("set", "unset"), "backup": verb in ("take", "restore")}
    if guarded.get(options.command):
        name = options.repo if options.command == "sandbox" else options.name
        return name, " ".join(["renet", options.command, *([verb] if verb else [])])
    if options.command == "hub" and verb in ("install", "uninstall", "gc"):
        return _hub_repository(layout, options, environ).name, "renet hub %s" % verb
    if options.command == "compose":
        args = _after_dashes(options.args)
        command = _project.split_compose_args(args)[1]
        if command and command[0] in READ_ONLY_COMPOSE:
            return None, None
        repo = _project.repository_for(layout, environ, os.getcwd())
        return repo.name, "renet compose %s" % (command[0] if command else "")
    return None, None


def guard_agents(layout, options, environ, ancestry=None):
    """Agents work on forks: refuse an agent's mutating or shell command on a grand repository (rules/agents)."""
    name, operation = _operation(layout, options, environ)
    if name is None:
        return
    record = _state.HostState(layout.state_dir).get(name)
    if record is None:
        return  # the command itself says the repository is unknown
    ancestry = _procfs.ancestors() if ancestry is None else ancestry
    try:
        _agents.check(name, bool(record.get("is_fork")), environ, ancestry, operation)
    except _agents.AgentRefused as refused:
        _audit.record("agent-refused", repository=name, operation=operation, marker=refused.marker)
        raise


def _transfer_command(runner, layout, options):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_transfer as _transfer
    if options.verb == "status":
        _say("\n".join(_transfer.progress_lines()) or "no copy under way")
        return 0
    if options.verb == "serve":
        words = shlex.split(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    else:
        words = ["renet", "transfer", options.verb, *options.args]
    _transfer.serve(runner, layout, words, sys.stdin.buffer, sys.stdout)
    return 0


def _backup_command(runner, layout, options):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_backup as _backup
    if options.verb == "check":
        if options.name == "-":  # the role's whole list, before any file is written
            try:
                strategies = json.load(sys.stdin)
            except ValueError as exc:
                raise InvalidInput("the backup strategies on stdin are not JSON: %s" % exc) from None
            _say("renet backup: %d valid strategies" % len(_backup.check_strategies(runner, strategies)))
            return 0
        _backup.load_strategy(runner, options.name, check_calendar=True)
        _say("renet backup: %s is a valid strategy" % options.name)
        return 0
    if options.verb == "run":
        return _backup.run_strategy(runner, options.name, say=_say)
    if options.verb == "list":
        result = _backup.listing(layout, options.name)
    elif options.verb == "take":
        result = _backup.backup(runner, layout, options.name, mode="cold" if options.cold else "hot")
    elif options.verb == "verify":
        result = _backup.verify(runner, layout, options.name, _repository.key_from(key_file=options.key_file),
                                at=options.at)
    else:
        if not options.restore_as:
            raise InvalidInput("restore needs --as NEW: the name of the repository the backup becomes")
        result = _backup.restore(runner, layout, options.name, options.restore_as, at=options.at)
    _say(json.dumps(result, indent=2, sort_keys=True) if options.json or options.verb != "list" else
         "\n".join("%s  %s" % (b["name"], "sha256 " + b["sha256"] if b["sha256"] else "not verified yet")
                   for b in result) or "no backups of %s" % options.name)
    return 0


def _status_command(runner, layout, options):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import machine_status as _machine_status
    if options.command == "reconcile":
        return _machine_status.reconcile(runner, layout, _say, boot=options.boot, check_mode=options.check)
    found = _machine_status.status(runner, layout)
    if options.json:
        _say(json.dumps(found, indent=2, sort_keys=True))
        return 0
    for repo in found["repositories"]:
        state = "up" if repo["up"] else "mounted" if repo["mounted"] else "open" if repo["opened"] else "closed"
        problem = "" if repo["healthy"] else "  NOT HEALTHY: wanted up%s" % (
            ", failed: " + ", ".join(repo["failed_containers"]) if repo["failed_containers"] else
            ", daemon down" if not repo["daemon"] else "")
        _say("%-40s %-8s%s%s" % (repo["name"], state, "  autostart" if repo["autostart"] else "", problem))
    return 0


def _hub_repository(layout, options, environ):
    if not options.compose_file:
        raise InvalidInput("renet hub %s needs the compose file of the Hub" % options.verb)
    path = os.path.abspath(options.compose_file)
    return _project.repository_for(layout, {k: v for k, v in environ.items() if k != "REDIACC_NETWORK_ID"},
                                   path if options.verb == "gc" else os.path.dirname(path))


def _hub_gc(options):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_environments as _environments
    from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
    if not options.compose_file or not os.path.isdir(options.compose_file):
        raise InvalidInput("renet hub gc needs the Hub's workspace directory (--workspace-dir of hub start)")
    max_age = _hub.parse_duration(options.max_age, "--max-age")
    report = _environments.gc(os.path.realpath(options.compose_file), max_age, options.dry_run)
    if options.json:
        _say(json.dumps(report, indent=2, sort_keys=True))
        return 0
    for entry in report:
        verb = "removed" if entry["removed"] else ("would remove" if entry["eligible"] else "keeps")
        _say("renet hub gc: %s %s (%s)" % (verb, entry["path"], entry["reason"]))
    _say("renet hub gc: %d of %d data-roots %s" % (sum(e["eligible"] for e in report), len(report),
                                                   "eligible (dry run)" if options.dry_run else "removed"))
    return 0


def _hub_command(runner, layout, options):
    if options.verb == "gc":
        return _hub_gc(options)
    if options.verb in ("stop", "hibernate"):
        if not options.compose_file:
            raise InvalidInput("renet hub %s needs the user" % options.verb)
        _say(json.dumps(_hub_install.stop_user(runner, options.compose_file, options.verb), sort_keys=True))
        return 0
    if options.verb == "status":
        _say(json.dumps(_hub_install.status(runner), indent=2, sort_keys=True))
        return 0
    repo = _hub_repository(layout, options, dict(os.environ))
    state = "present" if options.verb == "install" else "absent"
    result = _hub_install.converge(runner, layout, state, repository=repo.name,
                                   compose_file=os.path.abspath(options.compose_file), service=options.service,
                                   check_mode=options.check)
    for action in result["actions"]:
        _say("%s%s" % ("would " if options.check else "", action["detail"]))
    if state == "present":
        _say("renet hub install: %(unit)s listens on %(listen)s:%(port)d for %(names)s"
             % dict(result, names=", ".join(result["hosts"])))
        for label in result["ignored_labels"]:
            _say("renet hub install: warning: label %s is not used" % label, sys.stderr)
    _say("renet hub %s: %s" % (options.verb, "changed" if result["changed"] else "nothing to do"))
    return 0


def _compose_command(runner, layout, options):
    args = _after_dashes(options.args)
    return _project.compose(runner, layout, args, dict(os.environ), os.getcwd(), unsafe=options.unsafe,
                            warn=lambda text: _say("renet: warning: %s" % text, sys.stderr))


def _watchdog_command(runner, layout, options):
    def report(event):
        if "left" in event:
            _say("renet watchdog: left %(container)s stopped (networkId %(network_id)d): %(left)s" % event)
        elif "error" in event:
            _say("renet watchdog: could not start %(container)s (networkId %(network_id)d): %(error)s"
                 % event, sys.stderr)
        else:
            _say("renet watchdog: started %(container)s (networkId %(network_id)d, restart: %(policy)s)" % event)

    def sync_routes():
        try:
            _routes.sync(runner, layout.state_dir)
        except (LockboxError, OSError) as exc:
            _say("renet watchdog: routes not updated: %s" % exc, sys.stderr)
    _watchdog.serve(runner, layout, report=report, sync_routes=sync_routes, safety=options.interval,
                    once=options.once)
    return 0


def _lifecycle_command(runner, layout, options):
    result = _repo_app.converge_app(runner, layout, options.name, state=options.command,
                                    unmount=getattr(options, "unmount", False),
                                    checkpoint=getattr(options, "checkpoint", False),
                                    skip_checkpoint=getattr(options, "skip_checkpoint", False))
    for path, output in result["outputs"].items():
        _say("== %s\n%s" % (path, output))
    for container, outcome in sorted((result.get("restored") or {}).items()):
        _say("%s: %s" % (container, "restored from its checkpoint" if outcome["restored"]
                         else "started fresh (%s)" % outcome["error"]))
    _say("renet %s %s: %s" % (options.command, options.name,
                              ", ".join(a["action"] for a in result["actions"]) or "nothing to do"))
    return 0


def _sandbox_command(runner, layout, options):
    args = _after_dashes(options.args)
    return _sandbox.run(runner, layout, options.repo, args, environ=dict(os.environ), guid=options.guid,
                        say_error=lambda text: _say(text, sys.stderr))


def _task_command(runner, layout, options):
    args = _after_dashes(options.args)
    result = _repo_task.run_task(runner, layout, options.repo, args,
                                 key=_repository.key_from(key_file=options.key_file), keep=options.keep,
                                 say_error=lambda text: _say(text, sys.stderr))
    _say(json.dumps(result, indent=2, sort_keys=True))
    return 0 if result["status"] == "ok" else 1


COMMANDS = {
    "compose": _compose_command, "watchdog": _watchdog_command, "info": _info, "checkpoint": _checkpoint_command,
    "secret": lambda _runner, layout, options: _secret_command(layout, options, sys.stdin),
    "up": _lifecycle_command, "down": _lifecycle_command, "sandbox": _sandbox_command,
    "task": _task_command, "hub": _hub_command, "transfer": _transfer_command,
    "backup": _backup_command, "status": _status_command, "reconcile": _status_command,
}


def hub_start(argv, environ):
    """``renet hub start``: checked options, labels, provider settings; then serve until stopped."""
    from ansible_collections.lockbox.fleet.plugins.module_utils._core import tokens as _tokens
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_audit as _hub_audit
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_environments as _environments
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_routes as _hub_routes
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_server as _hub_server
    from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
    if not _hub_server.HAS_AIOHTTP:
        raise LockboxError("the Hub needs python3-aiohttp (the lockbox.fleet.hub role installs it)")
    options = _hub.parse_start(argv)
    config = _hub_server.load_labels(options["labels"] or _hub_install.LABELS_FILE)
    environ = dict(environ)
    for given in options["env_file"]:
        path, optional = (given[1:], True) if given.startswith("?") else (given, False)
        try:
            with open(path) as handle:
                environ.update(_hub.parse_env_file(handle.read()))
        except FileNotFoundError:
            if not optional:
                raise InvalidInput("the Hub's env file %s does not exist" % path) from None
    oauth = _hub.oauth_settings(environ)
    secret = _tokens.secret_from_hex(environ.get("HUB_SESSION_SECRET"))
    if secret is None:
        secret = os.urandom(32)
        _say("renet hub: HUB_SESSION_SECRET is not 32+ bytes of hex: sessions end when the Hub restarts", sys.stderr)
    audit_log = _hub_audit.AuditLog()
    runner = Runner()
    environments = _environments.Environments(runner, config, options, audit_log=audit_log)
    routes = _hub_routes.DirectRoutes(runner, config["routes"].values(), _hub_install.CADDY_FILE)
    environments.leaving = routes.withdraw
    hub = _hub_server.Hub(config, options, oauth, secret, environments, audit=audit_log.hub_event, routes=routes)
    hosts = ", ".join(sorted(_hub.route_hosts(config["routes"], options["base_domain"])))
    _say("renet hub: serving %s on %s:%d" % (hosts, options["listen"] or config["listen"], options["port"]))
    _hub_server.serve(hub, options["listen"] or config["listen"], options["port"])
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["hub", "start"]:
        try:
            return hub_start(argv[2:], dict(os.environ))
        except LockboxError as exc:
            _say("renet: %s" % exc.msg, sys.stderr)
            return 1
    options = _parser().parse_args(argv)
    layout = _repository.Layout(options.datastore)
    runner = Runner()
    try:
        guard_agents(layout, options, dict(os.environ))
        return COMMANDS[options.command](runner, layout, options)
    except LockboxError as exc:
        if getattr(options, "json", False) and options.command == "secret":
            # Agents read the error, and what to do next, from one JSON document.
            _say(json.dumps(dict(exc.as_result(), error=exc.msg), indent=2, sort_keys=True))
        _say("renet: %s" % exc.msg, sys.stderr)
        if exc.stderr:
            _say(exc.stderr.strip(), sys.stderr)
        return 1
