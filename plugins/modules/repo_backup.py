#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_backup
short_description: Back up a repository on its host, apply retention, verify a backup, restore one
version_added: 0.2.0
description:
  - A backup is a read-only BTRFS snapshot of the repository's subvolume, kept in
    C(<datastore>/backups/<guid>/<UTC stamp>-<6 hex>). It is taken in constant time and the
    encrypted image is never opened.
  - O(action=backup) takes one. O(mode=hot) freezes a mounted repository's filesystem for the
    instant (crash-consistent, no downtime). O(mode=cold) runs C(down()) of every Rediaccfile,
    takes the snapshot and runs C(up()) again, and returns the outage in RV(outage_ms); a
    repository that is not up is simply snapshotted. No new backup is taken while the newest one
    holds the repository's current data (nothing was written since), and C(changed=false).
  - O(retention) (after a backup, or alone with O(action=prune)) removes exactly the backups that
    no rule keeps (the newest O(retention.last), and the newest of each of the last N hours, days,
    ISO weeks, months that have one; UTC).
  - O(action=verify) reads every byte of a backup (BTRFS checks each block's checksum as it is
    read), compares its SHA-256 with the one recorded at its first verify (recording it then,
    C(changed=true)), and opens it read-only with the key for a full C(e2fsck -n).
  - O(action=restore) makes a backup the repository O(restore_as), which is a fork of O(name) when
    that is C(<name>:<tag>) (then M(lockbox.fleet.repo_takeover) puts the data back in place, the
    repository keeping its identity), otherwise a new repository. Like a fork it gets its own
    GUID, networkId and LUKS UUID, and no secrets. It is left closed.
  - One backup, prune, verify or restore at a time per datastore; another is refused with an error.
  - Scheduled backups are systemd timers made by the role C(lockbox.fleet.backup).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
  - lockbox.fleet.repo.KEY
options:
  name:
    description: The repository.
    type: str
    required: true
  action:
    description: What to do.
    type: str
    choices: [backup, prune, verify, restore]
    default: backup
  mode:
    description: How O(action=backup) takes the snapshot.
    type: str
    choices: [hot, cold]
    default: hot
  retention:
    description:
      - Which backups to keep; the others are removed. At least one count above 0.
    type: dict
    suboptions:
      last:
        description: The newest N backups.
        type: int
        default: 0
      hourly:
        description: The newest backup of each of the last N hours that have one.
        type: int
        default: 0
      daily:
        description: The same per day.
        type: int
        default: 0
      weekly:
        description: The same per ISO week.
        type: int
        default: 0
      monthly:
        description: The same per month.
        type: int
        default: 0
  at:
    description:
      - For O(action=verify) and O(action=restore), the backup to use, by name, or a time
        (C(20261125T103000Z), C(2026-11-25T10:30:00Z), C(2026-11-25) for the end of that day)
        meaning the newest backup taken at or before it. Default the newest backup.
    type: str
  restore_as:
    description: For O(action=restore), the name of the repository the backup becomes.
    type: str
notes:
  - O(action=verify) needs the repository's key; it is passed to cryptsetup on stdin only.
  - Deleting a repository deletes its backups; copies on other hosts (M(lockbox.fleet.repo_transfer)) stay.
seealso:
  - module: lockbox.fleet.repo_takeover
  - module: lockbox.fleet.repo_transfer
"""

EXAMPLES = r"""
- name: A cold backup, keeping 24 hourly and 7 daily
  lockbox.fleet.repo_backup:
    name: marketing
    mode: cold
    retention: {hourly: 24, daily: 7}
  register: backup

- name: Print the outage
  ansible.builtin.debug:
    msg: "{{ backup.outage_ms }} ms"

- name: Verify the newest backup
  lockbox.fleet.repo_backup:
    name: marketing
    action: verify
    key: "{{ vault_marketing_key }}"

- name: Yesterday's data as a fork, to look at or to take over
  lockbox.fleet.repo_backup:
    name: marketing
    action: restore
    at: "2026-11-24"
    restore_as: marketing:yesterday
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
backup:
  description: The backup taken, verified or restored (for a backup that was not needed, the newest).
  returned: when action is backup, verify or restore
  type: str
  sample: 20261125T103000Z-a1b2c3
outage_ms:
  description: For a cold backup of a repository that was up, the milliseconds from down() to the end of up().
  returned: when action is backup
  type: float
backups:
  description: The backups there are after the run, oldest first.
  returned: when action is backup or prune
  type: list
  elements: str
kept:
  description: The backups kept, each with the retention rules that keep it.
  returned: when a retention policy was applied
  type: dict
expired:
  description: The backups removed (check mode, to be removed).
  returned: when a retention policy was applied
  type: list
  elements: str
sha256:
  description: The SHA-256 of the backup's image.
  returned: when action is verify
  type: str
checksum:
  description: C(recorded) (first verify) or C(matches).
  returned: when action is verify
  type: str
fsck:
  description: C(clean) when e2fsck -n found nothing.
  returned: when action is verify
  type: str
repository:
  description: The restored repository (as M(lockbox.fleet.repo_info) describes one).
  returned: when action is restore
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_backup as _repo_backup
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    count = dict(type="int", default=0)
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            action=dict(type="str", choices=list(_repo_backup.ACTIONS), default="backup"),
            mode=dict(type="str", choices=["hot", "cold"], default="hot"),
            retention=dict(type="dict", options=dict(last=count, hourly=count, daily=count, weekly=count,
                                                     monthly=count)),
            at=dict(type="str"),
            restore_as=dict(type="str"),
            **_module.LAYOUT_ARGS, **_module.KEY_ARGS),
        mutually_exclusive=_module.KEY_EXCLUSIVE,
        required_if=[("action", "restore", ("restore_as",)), ("action", "prune", ("retention",))],
        supports_check_mode=True,
    )
    _module.run(module, _repo_backup.run)


if __name__ == "__main__":
    main()
