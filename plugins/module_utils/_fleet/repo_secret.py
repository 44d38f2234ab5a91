# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lockbox.fleet.repo_secret (``renet secret``): a repository's write-only secrets, and handing them to compose.

The store is one root-only file per repository GUID, ``<state_dir>/secrets/<guid>.json``,
outside the repository's LUKS image: a fork (a new GUID) starts with none, and the image
never holds them. Each value is sealed with AES-256-GCM under the host's store key
(``/etc/rediacc/secret-store.key``, 32 random bytes made on first use, root-only), bound to
its repository, key and mode (a sealed value copied to another entry does not open).

What the encryption protects: a copy of the state directory (a backup, a support bundle, a
file moved to another host) yields nothing without the key, which lives in /etc. What it
does not: whoever has root on the running host, or the whole root disk, has the key too
(the host must start repositories unattended). The SHA-256 digest ``get`` shows lets anyone
who may list secrets confirm a guessed value: use values with real entropy.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import tempfile

from ansible_collections.lockbox.fleet.plugins.module_utils._core import audit as _audit
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.files import write_atomic
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets

DEFAULT_KEY_FILE = "/etc/rediacc/secret-store.key"
STORE_DIR = "secrets"
KEY_BYTES = 32
NONCE_BYTES = 12
DIGEST_SHOWN = 12  # characters of a digest in the audit trail


def _aesgcm(key):
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise LockboxError("python3-cryptography is required on the host for repository secrets (the "
                           "lockbox.fleet.machine role installs it)") from None
    return AESGCM(key)


def _associated(guid, key, mode):
    return ("lockbox-secret\0%s\0%s\0%s" % (guid, key, mode)).encode()


class SecretStore:
    """The secrets of one repository (by GUID). Writers hold ``locked()``."""

    def __init__(self, state_dir, guid, key_file=None):
        self.directory = os.path.join(state_dir, STORE_DIR)
        self.path = os.path.join(self.directory, "%s.json" % guid)
        self.guid = guid
        self.key_file = key_file or DEFAULT_KEY_FILE

    @contextlib.contextmanager
    def locked(self):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)  # closing releases the flock

    def _document(self):
        try:
            with open(self.path) as handle:
                document = json.load(handle)
        except FileNotFoundError:
            return {"guid": self.guid, "secrets": {}}
        except ValueError as exc:
            raise LockboxError("the secret store %s is damaged: %s" % (self.path, exc)) from None
        if document.get("guid") != self.guid:
            owner = document.get("guid")
            raise LockboxError("the secret store %s belongs to %s, not %s" % (self.path, owner, self.guid))
        return document

    def entries(self):
        """{key: {mode, digest, updated, rotations}}: everything but the sealed values."""
        return {key: {k: v for k, v in entry.items() if k not in ("nonce", "sealed")}
                for key, entry in sorted(self._document()["secrets"].items())}

    def _store_key(self, create):
        try:
            with open(self.key_file, "rb") as handle:
                material = handle.read()
        except FileNotFoundError:
            if not create:
                raise LockboxError("the secret store key %s is missing: the stored secrets cannot be opened "
                                   "(restore the key file, or unset and set the secrets again)" % self.key_file) \
                    from None
            os.makedirs(os.path.dirname(self.key_file), mode=0o700, exist_ok=True)
            material = os.urandom(KEY_BYTES)
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(material)
                handle.flush()
                os.fsync(handle.fileno())
        if len(material) != KEY_BYTES:
            raise LockboxError("the secret store key %s is not %d bytes" % (self.key_file, KEY_BYTES))
        return material

    def put(self, key, value, mode, rotation):
        document = self._document()
        previous = document["secrets"].get(key) or {}
        nonce = os.urandom(NONCE_BYTES)
        sealed = _aesgcm(self._store_key(create=True)).encrypt(nonce, value.encode(),
                                                               _associated(self.guid, key, mode))
        document["secrets"][key] = {
            "mode": mode, "digest": _secrets.digest(value), "updated": _state.now(),
            "rotations": int(previous.get("rotations") or 0) + (1 if rotation else 0),
            "nonce": base64.b64encode(nonce).decode(), "sealed": base64.b64encode(sealed).decode()}
        self._save(document)

    def remove(self, key):
        document = self._document()
        if document["secrets"].pop(key, None) is not None:
            self._save(document)

    def _save(self, document):
        write_atomic(self.path, json.dumps(document, indent=2, sort_keys=True) + "\n", mode=0o600)

    def values(self):
        """{key: (mode, value)} of every secret, opened (only for handing them to the repository's containers)."""
        document = self._document()
        if not document["secrets"]:
            return {}
        cipher = _aesgcm(self._store_key(create=False))
        opened = {}
        for key, entry in document["secrets"].items():
            try:
                plain = cipher.decrypt(base64.b64decode(entry["nonce"]), base64.b64decode(entry["sealed"]),
                                       _associated(self.guid, key, entry["mode"]))
            except Exception:  # InvalidTag, or a damaged entry: never say more about the value
                raise LockboxError("secret %s of repository %s cannot be opened with %s (another host's key, or "
                                   "a damaged store): set it again" % (key, self.guid, self.key_file)) from None
            opened[key] = (entry["mode"], plain.decode())
        return opened

    def replace(self, opened):
        """Make the store hold exactly ``opened`` ({key: (mode, value)}), sealed under this host's key
        (a repository copied from another host: its values were opened there)."""
        document = self._document()
        for key in set(document["secrets"]) - set(opened):
            del document["secrets"][key]
        self._save(document)
        for key, (mode, value) in sorted(opened.items()):
            self.put(key, value, mode, rotation=False)
        if not opened and not document["secrets"]:
            self.forget()

    def forget(self):
        """Remove the whole store of a repository that is deleted."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# ---------------------------------------------------------------------------------------
# Handing secrets to a repository's containers (renet compose)


def _own_directory(network_id, root):
    """``<root>/<networkId>``, root-only, as is ``root`` itself."""
    directory = _secrets.directory(network_id, root)
    for path in (root, directory):
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    return directory


def write_files(opened, network_id, root=_secrets.SECRETS_ROOT):
    """Write the file-mode secrets to ``<root>/<networkId>/<KEY>`` (tmpfs), remove stale ones; their keys.

    The directory is root-only; the files are readable by any user inside the containers
    they are mounted into (compose binds them read-only at /run/secrets/<name>).
    """
    wanted = {key: value for key, (mode, value) in opened.items() if mode == "file"}
    if not wanted and not os.path.isdir(_secrets.directory(network_id, root)):
        return []
    directory = _own_directory(network_id, root)
    for name in os.listdir(directory):
        if name not in wanted and not name.startswith("."):  # .compose-*: another compose call's live model
            os.unlink(os.path.join(directory, name))
    for key, value in sorted(wanted.items()):
        write_atomic(os.path.join(directory, key), value, mode=0o444)
    return sorted(wanted)


def write_live_model(model, network_id, root=_secrets.SECRETS_ROOT):
    """The compose model holding env secrets' values, as a root-only file on tmpfs; its path (the caller removes it)."""
    fd, path = tempfile.mkstemp(dir=_own_directory(network_id, root), prefix=".compose-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(model, handle, sort_keys=True)
    return path


def remove_files(network_id, root=_secrets.SECRETS_ROOT):
    """Remove a repository's file secrets (repo down with unmount, delete)."""
    directory = _secrets.directory(network_id, root)
    existed = os.path.isdir(directory)
    shutil.rmtree(directory, ignore_errors=True)
    return existed


# ---------------------------------------------------------------------------------------
# The module and renet secret


def run(_runner, params, check_mode=False, key_file=None):
    """Entry point of lockbox.fleet.repo_secret: state present (set), absent (unset) or listed (list / get)."""
    state_dir = params.get("state_dir") or _state.DEFAULT_STATE_DIR
    name = params["repository"]
    record = _state.ready_record(state_dir, name)
    state = params.get("state") or "present"
    key = params.get("key")
    if key is not None or state != "listed":
        _secrets.check_key(key)
    store = SecretStore(state_dir, record["guid"], key_file)
    if state == "listed":
        entries = store.entries()
        listed = [dict(e, key=k) for k, e in entries.items() if key is None or k == key]
        _audit.record("secret-get" if key else "secret-list", repository=name, key=key,
                      digest_prefix=entries[key]["digest"][:DIGEST_SHOWN] if key in entries else None)
        return {"changed": False, "repository": name, "secrets": listed,
                "secret": listed[0] if key and listed else None}
    if state not in ("present", "absent"):
        raise InvalidInput("state %r is not valid: present, absent or listed" % (state,))
    value, mode, current = params.get("value"), params.get("mode") or "env", params.get("current")
    if state == "present":  # every input is judged before anything on the host is touched
        if value is None:
            raise InvalidInput("setting secret %s needs its value" % key)
        _secrets.check_value(value)
        _secrets.check_secret_mode(mode)
        if current is not None:
            _secrets.check_value(current)
    # Check mode reads without the lock: taking it would create the store's directory.
    with contextlib.nullcontext() if check_mode else store.locked():
        stored = store.entries().get(key)
        if state == "absent":
            if stored and not check_mode:
                store.remove(key)
                _audit.record("secret-unset", repository=name, key=key,
                              digest_prefix=stored["digest"][:DIGEST_SHOWN])
            return {"changed": stored is not None, "repository": name, "key": key,
                    "outcome": "removed" if stored else "absent"}
        outcome = _secrets.decide(name, key, stored, value, mode, current=current, rotate=bool(params.get("rotate")))
        if outcome != _secrets.UNCHANGED and not check_mode:
            store.put(key, value, mode, rotation=outcome == _secrets.ROTATE)
            _audit.record("secret-rotate" if outcome == _secrets.ROTATE else "secret-set", repository=name,
                          key=key, mode=mode, outcome=outcome, digest_prefix=_secrets.digest(value)[:DIGEST_SHOWN])
        return {"changed": outcome != _secrets.UNCHANGED, "repository": name, "key": key, "mode": mode,
                "digest": _secrets.digest(value), "outcome": outcome}
