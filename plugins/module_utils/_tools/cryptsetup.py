# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cryptsetup: LUKS2 images. Key material only ever travels on stdin (--key-file=-)."""

from __future__ import annotations

import json

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError

KEY_FROM_STDIN = "--key-file=-"
# A machine-generated random key has full entropy: a slow KDF adds nothing but time.
# cryptsetup's floor for PBKDF2 is 1000 iterations.
RANDOM_KEY_KDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256"]
PASSPHRASE_KDF = ["--pbkdf", "argon2id", "--iter-time", "1000"]
WRONG_KEY_RC = 2


def kdf_args(kind):
    return RANDOM_KEY_KDF if kind == "key" else PASSPHRASE_KDF


def is_luks(runner, image):
    return runner.run(["cryptsetup", "isLuks", "--type", "luks2", image], ok_rcs=(0, 1)).rc == 0


def parse_dump(text):
    """The LUKS2 JSON metadata: keyslots, segments and the KDF of each keyslot."""
    meta = json.loads(text)
    return {
        "keyslots": sorted(meta.get("keyslots", {})),
        "kdf": sorted({slot.get("kdf", {}).get("type") for slot in meta.get("keyslots", {}).values()}),
        "segments": len(meta.get("segments", {})),
    }


def dump(runner, image):
    return parse_dump(runner.run(["cryptsetup", "luksDump", "--dump-json-metadata", image]).stdout)


def luks_format(runner, image, key, kind):
    runner.run(["cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", *kdf_args(kind),
                KEY_FROM_STDIN, image], stdin=key)


def luks_open(runner, device, mapper, key, readonly=False):
    try:
        runner.run(["cryptsetup", "open", "--type", "luks2"] + (["--readonly"] if readonly else [])
                   + [KEY_FROM_STDIN, device, mapper], stdin=key)
    except LockboxError as exc:
        if exc.rc == WRONG_KEY_RC:
            raise LockboxError("wrong key: no keyslot of %s opens with the key given" % device,
                               cmd=exc.cmd, rc=exc.rc, stderr=exc.stderr) from None
        raise


def check_key(runner, image, key):
    """Test the key against the header without opening anything."""
    try:
        runner.run(["cryptsetup", "open", "--test-passphrase", "--type", "luks2", KEY_FROM_STDIN, image], stdin=key)
    except LockboxError as exc:
        if exc.rc == WRONG_KEY_RC:
            raise LockboxError("wrong key: no keyslot of %s opens with the key given" % image,
                               cmd=exc.cmd, rc=exc.rc, stderr=exc.stderr) from None
        raise


def luks_close(runner, mapper):
    runner.run(["cryptsetup", "close", mapper])


def resize(runner, mapper, key):
    runner.run(["cryptsetup", "resize", KEY_FROM_STDIN, mapper], stdin=key)


def set_uuid(runner, image, new_uuid):
    """A fork gets its own LUKS UUID so /dev/disk/by-uuid stays unambiguous."""
    runner.run(["cryptsetup", "luksUUID", "--batch-mode", "--uuid", new_uuid, image])


def erase(runner, image):
    """Wipe every keyslot: without them the data cannot be decrypted, key or not."""
    runner.run(["cryptsetup", "erase", "--batch-mode", image])
