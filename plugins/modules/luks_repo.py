#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: luks_repo
short_description: Manage a repository's LUKS2-encrypted volume on the datastore
version_added: 0.1.0
description:
  - A repository is a sparse, fixed-size LUKS2 image with ext4 inside, kept in its own BTRFS
    subvolume of the datastore (so it can be forked in constant time by M(lockbox.fleet.btrfs_fork)),
    opened through a loop device it owns and mounted at C(<mount_root>/<guid>).
  - Each repository gets a GUID and a networkId, allocated under a host-wide lock; networkId
    C(n) owns the loopback /26 at C(127.0.0.0 + n). Both live in a readable record in
    O(state_dir), outside the encrypted image.
  - Growing is online when the repository is open; a closed repository's filesystem grows
    the next time it is opened. Shrinking is refused.
  - An interrupted create is rolled back and redone by the next run; an interrupted delete is
    finished by it. M(lockbox.fleet.repo_prune) removes anything else that is left.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
  - lockbox.fleet.repo.KEY
options:
  name:
    description:
      - The repository's name, unique on the host. Letters, digits, C(.), C(_) and C(-), at most
        64 characters. Forks are named C(<parent>:<tag>).
    type: str
    required: true
  state:
    description:
      - V(present) creates the repository (needs O(size) and a key) and leaves it as it is.
      - V(opened) also attaches, opens and mounts it (needs a key unless already open).
      - V(closed) unmounts it, closes the mapping and detaches its loop device.
      - V(absent) deletes it, wiping the LUKS keyslots first; needs O(force=true).
    type: str
    choices: [present, opened, closed, absent]
    default: present
  size:
    description:
      - Size of the image (V(10G), V(512MiB)); sparse, so space is used only as data is written.
        At least 64 MiB. A larger value grows the repository; a smaller one is refused.
    type: str
  force:
    description: Needed for O(state=absent).
    type: bool
    default: false
  orphan_forks:
    description:
      - Let O(state=absent) delete a repository that still has forks; the forks stay, as
        independent repositories (their data never depended on the parent's subvolume).
    type: bool
    default: false
notes:
  - Keys are never in argv; cryptsetup reads them from stdin (C(--key-file=-)).
seealso:
  - module: lockbox.fleet.btrfs_fork
  - module: lockbox.fleet.repo_info
"""

EXAMPLES = r"""
- name: Create a 10 GiB repository with a random key kept in Vault
  lockbox.fleet.luks_repo:
    name: marketing
    size: 10G
    key: "{{ vault_marketing_key }}"

- name: Open and mount it
  lockbox.fleet.luks_repo:
    name: marketing
    state: opened
    key: "{{ vault_marketing_key }}"

- name: Grow it online to 20 GiB
  lockbox.fleet.luks_repo:
    name: marketing
    state: opened
    size: 20G
    key: "{{ vault_marketing_key }}"

- name: Close it (unmount, close, detach)
  lockbox.fleet.luks_repo:
    name: marketing
    state: closed

- name: A repository protected by a human passphrase (argon2id)
  lockbox.fleet.luks_repo:
    name: notes
    size: 1G
    passphrase: "{{ notes_passphrase }}"

- name: Delete it, with everything in it
  lockbox.fleet.luks_repo:
    name: marketing
    state: absent
    force: true
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "open", "detail": "attach a loop device and open the LUKS volume"}]
repository:
  description: The repository after the run, as M(lockbox.fleet.repo_info) describes it; null once deleted.
  returned: always
  type: dict
  sample:
    name: marketing
    guid: 0b6f3c2e-8f5d-4d8e-9a57-2f1f0f4c1a11
    network_id: 2816
    subnet: 127.0.11.0/26
    size: 10737418240
    opened: true
    mounted: true
    mount_path: /mnt/rediacc/mounts/0b6f3c2e-8f5d-4d8e-9a57-2f1f0f4c1a11
timings_ms:
  description: Milliseconds each step took, keyed by action name. Empty in check mode and when nothing changed.
  returned: always
  type: dict
  sample: {"open": 80.5, "mount": 12.0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import luks_repo as _luks_repo
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "opened", "closed", "absent"], default="present"),
            size=dict(type="str"),
            force=dict(type="bool", default=False),
            orphan_forks=dict(type="bool", default=False),
            **_module.LAYOUT_ARGS, **_module.KEY_ARGS),
        mutually_exclusive=_module.KEY_EXCLUSIVE,
        supports_check_mode=True,
    )
    _module.run(module, _luks_repo.run)


if __name__ == "__main__":
    main()
