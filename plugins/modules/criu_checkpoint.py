#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: criu_checkpoint
short_description: Checkpoint and restore the process state of a repository's labelled services (CRIU)
version_added: 0.3.0
description:
  - Only containers labelled C(rediacc.checkpoint=true) are checkpointed; other services (databases,
    caches) never are, and recover by their own means.
  - The repository's own dockerd does the work (its experimental checkpoint API, CRIU underneath).
    Checkpoints live in C(<mount>/.rediacc/checkpoint/<name>/) with a C(manifest.json), inside the
    encrypted volume and root-only, so they are encrypted, forked and backed up with it.
  - C(state=present) creates checkpoint O(name) of every running labelled container, leaving them running
    unless O(leave_running=false). An existing checkpoint of that name is left as it is.
    A checkpoint that fails part-way leaves no checkpoint and every container as it was.
  - C(state=restored) stops the labelled containers and starts them from checkpoint O(name), in
    C(depends_on) order. A container whose restore fails (another kernel or image, a CRIU error) is
    started fresh instead; the result and a warning say so and the checkpoint is kept. Running it again
    while the containers still run from that restore changes nothing.
  - C(state=absent) deletes checkpoint O(name) (and any interrupted attempt of it).
  - C(state=listed) changes nothing and returns every checkpoint with its time, size and containers.
  - The repository must be up (M(lockbox.fleet.repo_app)). C(repo_app) with C(state=down) and
    C(checkpoint=true) checkpoints and stops the labelled containers, and the next C(state=up)
    restores them after the services they depend on are up (C(skip_checkpoint=true) starts fresh).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.attributes.ACTIONS_ONLY
  - lockbox.fleet.repo
options:
  repository:
    description: The repository, by name (a fork is C(<parent>:<tag>)).
    type: str
    required: true
  name:
    description:
      - The checkpoint's name; required unless O(state=listed).
      - 1 to 100 letters, digits, dots, underscores, colons and hyphens, starting with a letter or digit
        (C(daily-backup), C(v1.0.0), C(ckpt-2026-11-24T10:00)). C(repo-down) and C(fork-*) are the names
        lockbox gives its own checkpoints; they can be restored and deleted, not created here.
    type: str
  state:
    description: Whether the checkpoint exists, is restored into the running containers, or is only listed.
    type: str
    choices: [present, restored, absent, listed]
    default: present
  leave_running:
    description: With O(state=present), keep the containers running after the checkpoint (otherwise they stop).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Checkpoint the labelled services of repository shop, keep them running
  lockbox.fleet.criu_checkpoint:
    repository: shop
    name: daily-backup

- name: Checkpoint and stop them
  lockbox.fleet.criu_checkpoint:
    repository: shop
    name: pre_release_v2
    leave_running: false

- name: Bring them back from a checkpoint
  lockbox.fleet.criu_checkpoint:
    repository: shop
    name: pre_release_v2
    state: restored
  register: restore

- name: Which containers came back from memory
  ansible.builtin.debug:
    var: restore.restored

- name: Delete a checkpoint
  lockbox.fleet.criu_checkpoint:
    repository: shop
    name: daily-backup
    state: absent

- name: List the checkpoints of shop
  lockbox.fleet.criu_checkpoint:
    repository: shop
    state: listed
  register: listed
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken.
  returned: always
  type: list
  elements: dict
checkpoint:
  description: With O(state=present), the checkpoint (name, created, size_bytes, containers, services, kernel).
  returned: when state is present and not in check mode
  type: dict
restored:
  description: >-
    With O(state=restored), per container whether it came back from the checkpoint (C(restored)),
    the error that made it start fresh (C(error)), and when it started (C(started_at)).
  returned: when state is restored
  type: dict
checkpoints:
  description: With O(state=listed), every finished checkpoint, oldest first.
  returned: when state is listed
  type: list
  elements: dict
pending:
  description: With O(state=listed), the checkpoint the next repo up restores, if any.
  returned: when state is listed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import criu_checkpoint as _criu_checkpoint
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repository=dict(type="str", required=True),
            name=dict(type="str"),
            state=dict(type="str", choices=["present", "restored", "absent", "listed"], default="present"),
            leave_running=dict(type="bool", default=True),
            **_module.LAYOUT_ARGS),
        required_if=[("state", "present", ("name",)), ("state", "restored", ("name",)),
                     ("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    _module.run(module, _criu_checkpoint.run)


if __name__ == "__main__":
    main()
