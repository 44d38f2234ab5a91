#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_schedule
short_description: Install a host's backup strategies as systemd timers
version_added: 0.2.0
description:
  - Every strategy of O(strategies) is checked before anything is written (the rules of
    C(renet backup check); the schedule also by C(systemd-analyze calendar)). One bad strategy
    changes nothing on the host.
  - Each becomes C(/etc/rediacc/backup/<name>.json) (root-only) and a timer
    C(lockbox-backup-<name>.timer), enabled and started, that starts
    C(lockbox-backup@<name>.service), which runs C(renet backup run <name>). A running timer whose
    schedule changed is restarted.
  - With O(remove_others), the timers and files of strategies not listed are stopped and removed.
    Backups themselves are never removed here.
  - If a step fails, the files are put back as they were and systemd reloaded; the error says so.
  - The role C(lockbox.fleet.backup) calls this module with the strategies of a host, C(copy_to)
    already turned into the address and port of another fleet host.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.attributes.ACTIONS_ONLY
options:
  strategies:
    description:
      - The strategies of this host, each C({name, repositories, schedule, retention}) and
        optionally C(mode) (C(hot) or C(cold)), C(datastore) and C(copy_to) (C({address, port})).
      - C([]) leaves no strategy (with O(remove_others)).
    type: list
    elements: dict
    required: true
  remove_others:
    description: Stop and remove the timers and files of strategies not in O(strategies).
    type: bool
    default: true
seealso:
  - module: lockbox.fleet.repo_backup
"""

EXAMPLES = r"""
- name: Ledger backed up every hour, 24 hourly and 7 daily kept
  lockbox.fleet.backup_schedule:
    strategies:
      - name: ledger-hourly
        repositories: [ledger]
        mode: hot
        schedule: hourly
        retention: {hourly: 24, daily: 7}
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken.
  returned: always
  type: list
  elements: dict
strategies:
  description: The names of the strategies installed.
  returned: always
  type: list
  elements: str
removed:
  description: The names of the strategies whose timers and files were removed.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import backup_schedule as _backup_schedule
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(strategies=dict(type="list", elements="dict", required=True),
                           remove_others=dict(type="bool", default=True)),
        supports_check_mode=True,
    )
    _module.run(module, _backup_schedule.run)


if __name__ == "__main__":
    main()
