#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: btrfs_fork
short_description: Fork a repository in constant time by BTRFS snapshot
version_added: 0.1.0
description:
  - Creates the repository C(<parent>:<tag>) as a copy-on-write snapshot of the parent's
    subvolume. No data is copied, so the clone takes the same time whatever the size or
    fragmentation of the image.
  - The parent may be running. If it is mounted, its filesystem is frozen (fsfreeze) only for
    the instant of the snapshot, so the fork is clean; the freeze, snapshot and thaw run in a
    session of their own, so the parent is thawed even if this module is killed.
  - The fork gets a new GUID, networkId and LUKS UUID, the same key, and a record that names
    its parent. Parent and fork can be mounted at the same time.
  - If the fork exists, nothing is cloned again (its open state is converged) unless
    O(force=true), which replaces it with a fresh fork. A repository of that name that is not
    a fork of this parent is an error unless O(force=true).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
  - lockbox.fleet.repo.KEY
options:
  parent:
    description: The repository to fork.
    type: str
    required: true
  tag:
    description:
      - Names the fork C(<parent>:<tag>); routes use C({service}-fork-{tag}). Letters, digits,
        C(.), C(_) and C(-), at most 32 characters.
    type: str
    required: true
  opened:
    description: Open and mount the fork (needs the key, which is the parent's).
    type: bool
    default: true
  force:
    description: Replace an existing fork of that name with a fresh one.
    type: bool
    default: false
  checkpoint:
    description:
      - Fork with process state. The parent's running services labelled
        C(rediacc.checkpoint=true) are checkpointed while they keep running, right before the
        snapshot, so the fork holds the checkpoint (the parent keeps no copy). The fork's first
        C(repo up) restores them on the fork's own addresses; a service whose restore fails
        starts fresh, and the result says so.
      - The fork's processes may still name the parent's addresses (listening sockets, memory);
        the fork's kernel guard turns those into the same offsets in the fork's own /26, so they
        never reach the parent. Connections that were established at the checkpoint are
        restored closed.
      - A parent that is not up or has no labelled running service forks without a checkpoint,
        with a warning.
    type: bool
    default: false
seealso:
  - module: lockbox.fleet.criu_checkpoint
  - module: lockbox.fleet.luks_repo
"""

EXAMPLES = r"""
- name: Fork production for a test, opened and mounted
  lockbox.fleet.btrfs_fork:
    parent: marketing
    tag: staging
    key: "{{ vault_marketing_key }}"

- name: A closed fork, e.g. as a point-in-time copy
  lockbox.fleet.btrfs_fork:
    parent: marketing
    tag: before-upgrade
    opened: false

- name: Refresh the staging fork from the parent's current data
  lockbox.fleet.btrfs_fork:
    parent: marketing
    tag: staging
    force: true
    key: "{{ vault_marketing_key }}"

- name: Fork with the running state of the labelled services (restored by the fork's repo up)
  lockbox.fleet.btrfs_fork:
    parent: marketing
    tag: live
    checkpoint: true
    key: "{{ vault_marketing_key }}"

- name: Delete a fork like any repository
  lockbox.fleet.luks_repo:
    name: marketing:staging
    state: absent
    force: true
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
repository:
  description: The fork, as M(lockbox.fleet.repo_info) describes it.
  returned: always
  type: dict
timings_ms:
  description:
    - Milliseconds each step took (keys are the action names); C(clone) is the clone step alone
      (freeze, snapshot, thaw). Empty in check mode and when nothing changed.
  returned: always
  type: dict
  sample: {"record": 2.1, "clone": 31.4, "new-luks-uuid": 40.2, "open": 80.5, "mount": 12.0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import btrfs_fork as _btrfs_fork
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            parent=dict(type="str", required=True),
            tag=dict(type="str", required=True),
            opened=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            checkpoint=dict(type="bool", default=False),
            **_module.LAYOUT_ARGS, **_module.KEY_ARGS),
        mutually_exclusive=_module.KEY_EXCLUSIVE,
        supports_check_mode=True,
    )
    _module.run(module, _btrfs_fork.run)


if __name__ == "__main__":
    main()
