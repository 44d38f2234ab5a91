# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_transfer: a repository's encrypted image copied to another fleet host.

The source makes a read-only snapshot of the repository's subvolume (its filesystem frozen for
that instant if it is mounted) and streams ``btrfs send`` of it, whole or as the difference from
the newest snapshot both hosts hold, over SSH into the target's ``renet transfer serve``
(``receive`` below), which may run nothing else with the transfer key. The image is never
opened: what travels and what lands is the LUKS ciphertext.

Target side, three verbs, each a separate SSH call:

- ``offer``: may this repository come here? (refused: another repository of that name, the
  copy here open, or changed since it was received unless forced); which snapshots are here.
  Clears streams an earlier interrupted copy left half received.
- ``receive``: the stream into ``<datastore>/snapshots/<guid>/``, confined there (``btrfs
  receive -C``); its byte count and CRC-32 are kept for ``commit``. A result that is not one
  finished snapshot of this repository, or whose base is not one of its snapshots, is deleted.
- ``commit``: the counts must equal the source's; then a writable snapshot of the received one
  becomes the repository (the previous copy swapped out by rename), with the record (GUID, the
  networkId when free here), its secrets re-sealed under this host's store key. Older snapshots
  of the repository are removed: the received one is the base of the next difference.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import time
import zlib

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import transfer as _rules
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import btrfs as _btrfs
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import ssh as _ssh

PROGRESS_DIR = "/run/rediacc/transfers"
RECEIVING = "receiving"
# The fields of a record that travel; the target decides the networkId and the status.
_RECORD_FIELDS = ("name", "guid", "size", "key_kind", "created", "parent", "parent_guid", "tag", "is_fork")
REMOTE = ["renet", "transfer"]


def snapshots_dir(layout, guid):
    return layout.snapshots(_rules.check_guid(guid))


def list_snapshots(runner, directory):
    """(finished, unfinished) snapshots in ``directory``: finished ones are read-only (made here,
    or received whole); an unfinished one is what an interrupted ``btrfs receive`` left."""
    finished, unfinished = [], []
    if not os.path.isdir(directory):
        return finished, unfinished
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if not _btrfs.is_subvolume(path):
            continue
        shown = _btrfs.subvolume_show(runner, path)
        shown.update(name=entry, path=path, time=entry)
        done = shown["readonly"] and _is_snapshot_name(entry)
        (finished if done else unfinished).append(shown)
    return finished, unfinished


def _is_snapshot_name(name):
    try:
        _rules.check_snapshot_name(name)
    except InvalidInput:
        return False
    return True


class Meter:
    """Counts, checksums and paces a stream; writes its progress for ``renet transfer status``."""

    def __init__(self, name=None, *, total=None, limit=None, progress_dir=None, clock=time.monotonic, sleep=time.sleep):
        self.name, self.total, self.limit = name, total, limit
        self.path = os.path.join(progress_dir, "%s.json" % name.replace(":", "+")) if progress_dir and name else None
        self.clock, self.sleep = clock, sleep
        self.bytes = 0
        self.crc = 0
        self.started = clock()
        self._shown = self.started

    def __call__(self, chunk):
        self.bytes += len(chunk)
        self.crc = zlib.crc32(chunk, self.crc)
        now = self.clock()
        if self.limit:
            ahead = self.bytes / self.limit - (now - self.started)
            if ahead > 0:
                self.sleep(ahead)
                now = self.clock()
        if self.path and now - self._shown >= 1.0:
            self._shown = now
            self.write()

    def report(self):
        out = _rules.progress(self.bytes, self.total, self.clock() - self.started)
        out["line"] = _rules.progress_line(self.name or "stream", out)
        return out

    def write(self):
        # The writer's pid: a copy killed outright (SIGKILL, power loss) leaves its line, which
        # progress_lines then knows to be stale.
        write_atomic(self.path, json.dumps(dict(self.report(), pid=os.getpid())) + "\n", mode=0o600)

    def done(self):
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        report = self.report()
        report["seconds"] = round(self.clock() - self.started, 3)
        report["crc32"] = "%08x" % self.crc
        return report


# ---------------------------------------------------------------------------------------
# Source side: lockbox.fleet.repo_transfer


def push(runner, layout, name, target, *, bandwidth=None, force=False, check_mode=False,
         progress_dir=PROGRESS_DIR):
    layout.check_datastore()
    limit = _rules.parse_bandwidth(bandwidth)
    record = _state.ready_record(layout.state_dir, name)
    guid = record["guid"]
    offer = _ssh.call(runner, target, [*REMOTE, "offer"], {"name": name, "guid": guid, "check": bool(check_mode)})
    there = offer["repository"]
    if there["exists"] and there["written_since"] is not False and not force:
        raise InvalidInput("%s on %s was changed there since it was received%s: force=true replaces those "
                           "changes with this host's copy" % (name, offer["host"], "" if there["written_since"]
                                                              else " (or its received snapshot is gone)"))
    directory = snapshots_dir(layout, guid)
    local, _half = list_snapshots(runner, directory)
    base = _rules.common_base(local, offer["snapshots"])
    newest = max(local, key=lambda s: s["name"]) if local else None
    seen = _repository.Observed(layout, runner, record, deep=False)
    if (newest is not None and base is newest and there["exists"] and there["from"] == newest["name"]
            and not there["written_since"] and seen.image_size == there["image_size"]
            and not _btrfs.written_since(runner, layout.subvolume(guid), newest["generation"])):
        return {"changed": False, "actions": [], "transfer": {"mode": "none", "base": base["name"]},
                "target": {"host": offer["host"]}}
    stamp = _rules.snapshot_name(datetime.datetime.now(datetime.timezone.utc), os.urandom(3).hex())
    snapshot = "%s/%s" % (directory, stamp)
    mode = "delta" if base else "full"
    how = "the difference from " + base["name"] if base else "whole: the target holds no common base"
    actions = [
        {"action": "snapshot", "detail": "read-only snapshot %s of %s%s" % (
            snapshot, layout.subvolume(guid), " (filesystem frozen for the instant)" if seen.mount else "")},
        {"action": "send", "detail": "send it to %s (%s)" % (offer["host"], how)},
        {"action": "commit", "detail": "check it on %s and make it %s there" % (offer["host"], name)},
    ]
    stale = list(local)
    if stale:
        actions.append({"action": "prune-snapshots", "detail": "remove older snapshots %s" % ", ".join(
            s["name"] for s in stale)})
    result = {"changed": True, "actions": actions, "transfer": {"mode": mode, "base": base["name"] if base else None,
                                                                "snapshot": stamp}}
    if check_mode:
        result["target"] = {"host": offer["host"]}
        return result
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _btrfs.snapshot(runner, layout.subvolume(guid), snapshot, freeze=layout.mount(guid) if seen.mount else None,
                    readonly=True)
    allocated = os.stat(layout.image(guid)).st_blocks * 512
    meter = Meter(name, total=None if base else allocated, limit=limit, progress_dir=progress_dir)
    try:
        try:
            answer = runner.pipe(target.argv([*REMOTE, "receive", guid, stamp]),
                                 producer=_btrfs.send_argv(snapshot, base["path"] if base else None), meter=meter)
        except LockboxError as exc:
            raise (target.explain(exc) if exc.cmd and exc.cmd[0] == "ssh" else exc) from None
        sent = meter.done()
        received = json.loads(answer.stdout)
        shown = _btrfs.subvolume_show(runner, snapshot)
        secrets = _repo_secret.SecretStore(layout.state_dir, guid).values()
        payload = {"name": name, "guid": guid, "snapshot": stamp, "uuid": _rules.identity(shown),
                   "bytes": sent["sent"], "crc32": sent["crc32"], "network_id": record["network_id"],
                   "record": {k: record.get(k) for k in _RECORD_FIELDS},
                   "secrets": {k: list(v) for k, v in secrets.items()}}
        committed = _ssh.call(runner, target, [*REMOTE, "commit"], payload)
    except BaseException:
        meter.done()  # no stale line in renet transfer status
        _btrfs.subvolume_delete(runner, snapshot)  # nothing half-done here: the next run starts over
        raise
    for old in stale:
        _btrfs.subvolume_delete(runner, old["path"])
    result["transfer"].update(bytes=sent["sent"], seconds=sent["seconds"], rate=sent["rate"],
                              crc32=sent["crc32"], line=sent["line"], received_bytes=received["bytes"])
    result["target"] = dict(committed, host=offer["host"])
    return result


def progress_lines(directory=PROGRESS_DIR):
    """The lines of the copies under way on this host (``renet transfer status``); the files of
    copies whose process is gone (killed outright) are removed instead."""
    lines = []
    for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        path = os.path.join(directory, entry)
        try:
            with open(path) as handle:
                progress = json.load(handle)
        except (OSError, ValueError):
            continue
        pid = progress.get("pid")
        if isinstance(pid, int) and not os.path.exists("/proc/%d" % pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        lines.append(progress.get("line") or entry)
    return lines


def target_of(params):
    return _ssh.Target(params["to"], port=params.get("port") or 22, user=params.get("user") or "root",
                       identity=params.get("identity") or _ssh.IDENTITY,
                       known_hosts=params.get("known_hosts") or _ssh.KNOWN_HOSTS)


def run(runner, params, check_mode=False):
    """Entry point of lockbox.fleet.repo_transfer."""
    return push(runner, _repository.layout_of(params), _state.check_name(params["name"]), target_of(params),
                bandwidth=params.get("bandwidth"), force=params.get("force", False), check_mode=check_mode)


# ---------------------------------------------------------------------------------------
# Target side: renet transfer serve


def _where(host, name, guid):
    """The record of ``name`` here, refusing another repository of that name or this one under another."""
    _state.check_name(name)
    record = host.get(name)
    if record is not None and record.get("guid") != guid:
        raise InvalidInput("another repository named %s (GUID %s) is on %s: delete it there, or push another "
                           "repository" % (name, record.get("guid"), socket.gethostname()))
    for other in host.all():
        if other.get("guid") == guid and other.get("name") != name:
            raise InvalidInput("this repository (GUID %s) is on %s as %s" % (guid, socket.gethostname(),
                                                                             other.get("name")))
    return record


def _state_here(runner, layout, record, finished):
    """The copy here: open? changed since its newest snapshot (the one it was received as, or made
    here for a copy from here, whichever came last)? None: not known (no snapshot)."""
    if record is None:
        return {"exists": False, "open": False, "from": None, "written_since": None, "image_size": None}
    seen = _repository.Observed(layout, runner, record, deep=False)
    reference = max((s["name"] for s in finished), default=None)
    received = next((s for s in finished if s["name"] == reference), None)
    written = None
    if received is not None and seen.subvolume:
        written = _btrfs.written_since(runner, layout.subvolume(record["guid"]), received["generation"])
    return {"exists": record.get("status") == _state.READY, "open": bool(seen.mapper), "from": reference,
            "written_since": written, "image_size": seen.image_size}


def _refuse_open(layout, record):
    if record is not None and os.path.exists(layout.mapper_device(record["guid"])):
        raise InvalidInput("%s is open on %s: close it there (repo_down, then state=present) before a copy "
                           "replaces it" % (record["name"], socket.gethostname()))


def offer(runner, layout, request):
    guid = _rules.check_guid(request.get("guid"))
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        record = _where(host, request.get("name"), guid)
        _refuse_open(layout, record)
        finished, unfinished = list_snapshots(runner, snapshots_dir(layout, guid))
        if not request.get("check"):
            for half in unfinished:
                _btrfs.subvolume_delete(runner, half["path"])
        return {"host": socket.gethostname(), "repository": _state_here(runner, layout, record, finished),
                "snapshots": [{"name": s["name"], "uuid": s["uuid"], "received_uuid": s["received_uuid"]}
                              for s in finished]}


def receive(runner, layout, guid, name, stream, *, progress_dir=PROGRESS_DIR):
    directory = snapshots_dir(layout, guid)
    _rules.check_snapshot_name(name)
    layout.check_datastore()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    before, half = list_snapshots(runner, directory)
    if any(s["name"] == name for s in before + half):
        raise InvalidInput("snapshot %s of %s is already here" % (name, guid))
    known = {s["uuid"] for s in before}
    meter = Meter("receive-" + name, progress_dir=progress_dir)
    failure = None
    try:
        runner.pipe(_btrfs.receive_argv(directory), source=stream, meter=meter)
    except LockboxError as exc:
        failure = exc
        meter.done()  # no stale line in renet transfer status
    after, half = list_snapshots(runner, directory)
    made = [s for s in after + half if s["uuid"] not in known]
    good = [s for s in made if s["name"] == name and s["readonly"] and s["received_uuid"]
            and (s["parent_uuid"] is None or s["parent_uuid"] in known)]
    for bad in [s for s in made if s not in good] if failure is None else made:
        _btrfs.subvolume_delete(runner, bad["path"])
    if failure is not None:
        raise failure
    if len(good) != 1 or len(made) != 1:
        raise LockboxError("the stream for %s was not one snapshot named %s based on one of its own snapshots: "
                           "removed what it made" % (guid, name))
    report = meter.done()
    receipt = {"bytes": report["sent"], "crc32": report["crc32"]}
    write_atomic("%s/.%s.receipt" % (directory, name), json.dumps(receipt) + "\n", mode=0o600)
    return receipt


def _checked_receipt(runner, directory, request):
    """The snapshot received for ``request``, once its byte count and CRC-32 equal the source's."""
    name = _rules.check_snapshot_name(request.get("snapshot"))
    finished, _half = list_snapshots(runner, directory)
    received = next((s for s in finished if s["name"] == name), None)
    try:
        with open("%s/.%s.receipt" % (directory, name)) as handle:
            receipt = json.load(handle)
    except (OSError, ValueError):
        receipt = None
    if received is None or receipt is None:
        raise LockboxError("snapshot %s of %s was not received here" % (name, request["guid"]))
    if received["received_uuid"] != request.get("uuid") or receipt != {"bytes": request.get("bytes"),
                                                                       "crc32": request.get("crc32")}:
        _btrfs.subvolume_delete(runner, received["path"])
        raise LockboxError("verification failed: %s received %s bytes (CRC-32 %s), the source sent %s bytes "
                           "(CRC-32 %s); removed the copy" % (socket.gethostname(), receipt["bytes"],
                                                              receipt["crc32"], request.get("bytes"),
                                                              request.get("crc32")))
    return received, finished


def _network_id_here(host, record, guid, wanted):
    """The copy's networkId here: the one it has; else the source's when free and valid here; else a new one."""
    if record is not None:
        return record["network_id"]
    used = {r["network_id"] for r in host.all() if r.get("guid") != guid}
    valid = isinstance(wanted, int) and not isinstance(wanted, bool) and \
        _state.NETWORK_ID_FIRST <= wanted < _state.NETWORK_ID_LIMIT and \
        (wanted - _state.NETWORK_ID_FIRST) % _state.NETWORK_ID_STEP == 0
    return wanted if valid and wanted not in used else _state.allocate_network_id(used)


def _swap_in(runner, layout, guid, received):
    """A writable snapshot of ``received`` becomes the repository's subvolume; the previous one goes."""
    subvolume = layout.subvolume(guid)
    incoming, outgoing = subvolume + ".incoming", subvolume + ".previous"
    for leftover in (incoming, outgoing):
        if _btrfs.is_subvolume(leftover):
            _btrfs.subvolume_delete(runner, leftover)
    os.makedirs(layout.repositories, mode=0o700, exist_ok=True)
    _btrfs.snapshot(runner, received["path"], incoming)
    if _btrfs.is_subvolume(subvolume):
        os.rename(subvolume, outgoing)
    os.rename(incoming, subvolume)
    if _btrfs.is_subvolume(outgoing):
        _btrfs.subvolume_delete(runner, outgoing)


def commit(runner, layout, request):
    guid = _rules.check_guid(request.get("guid"))
    directory = snapshots_dir(layout, guid)
    layout.check_datastore()
    with _state.HostState(layout.state_dir) as host:
        record = _where(host, request.get("name"), guid)
        _refuse_open(layout, record)
        received, finished = _checked_receipt(runner, directory, request)
        fields = {k: (request.get("record") or {}).get(k) for k in _RECORD_FIELDS}
        if fields["guid"] != guid or fields["name"] != request.get("name"):
            raise InvalidInput("the record sent is not that of %s" % guid)
        network_id = _network_id_here(host, record, guid, request.get("network_id"))
        new = dict(record or {}, **fields)
        new.update(network_id=network_id, subnet=_state.subnet(network_id), received_snapshot=received["name"],
                   received=_state.now(), status=record["status"] if record else RECEIVING)
        host.put(new)
        _swap_in(runner, layout, guid, received)
        store = _repo_secret.SecretStore(layout.state_dir, guid)
        with store.locked():
            store.replace({k: tuple(v) for k, v in (request.get("secrets") or {}).items()})
        new["status"] = _state.READY
        host.put(new)
        for old in finished:
            if old["name"] != received["name"]:
                _btrfs.subvolume_delete(runner, old["path"])
        for entry in os.listdir(directory):
            if entry.endswith(".receipt"):
                os.unlink(os.path.join(directory, entry))
        return {"network_id": network_id, "network_id_kept": network_id == request.get("network_id"),
                "subnet": new["subnet"], "replaced": record is not None}


def serve(runner, layout, words, stdin, stdout):
    """One verb of the target side: ``words`` as the source sent them (SSH_ORIGINAL_COMMAND)."""
    if words[:2] != REMOTE or len(words) < 3:
        raise InvalidInput("this key may only run renet transfer offer|receive|commit, not %r" % " ".join(words))
    verb, args = words[2], words[3:]
    if verb == "receive" and len(args) == 2:
        answer = receive(runner, layout, _rules.check_guid(args[0]), args[1], stdin)
    elif verb in ("offer", "commit") and not args:
        try:
            request = json.loads(stdin.read(1 << 20) or b"{}")
        except ValueError:
            raise InvalidInput("the request to %s is not JSON" % verb) from None
        if not isinstance(request, dict):
            raise InvalidInput("the request to %s is not a JSON object" % verb)
        answer = (offer if verb == "offer" else commit)(runner, layout, request)
    else:
        raise InvalidInput("unknown transfer request %r" % " ".join(words))
    stdout.write(json.dumps(answer) + "\n")
    return answer
