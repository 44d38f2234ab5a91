#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_takeover
short_description: A fork's data becomes its parent's; the parent keeps its identity, the old data a backup fork
version_added: 0.2.0
description:
  - The parent (the grand) of fork O(name) gets the fork's data. It keeps its name, GUID, networkId,
    key, secrets, routes and children; its old data becomes a new fork C(<grand>:takeover-<UTC stamp>)
    of its own (a new GUID, networkId and LUKS UUID, no secrets), renamed in constant time.
  - Revert by taking over from that backup fork.
  - The grand must be closed; the playbook C(repo_takeover.yml) brings it down, runs this module and
    brings it up again, and prints the downtime. The fork may be running; its filesystem is frozen for
    the instant of the snapshot.
  - A failure after the grand's data was moved puts it back before the error is reported; the grand
    is never left without its data.
  - Unchanged when the grand already holds the fork's data from a takeover and neither was written
    since.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
options:
  name:
    description: The fork whose data takes over, C(<grand>:<tag>).
    type: str
    required: true
seealso:
  - module: lockbox.fleet.btrfs_fork
"""

EXAMPLES = r"""
- name: Production takes the tested upgrade of its staging fork
  lockbox.fleet.repo_takeover:
    name: marketing:staging
  register: takeover

- name: Revert
  lockbox.fleet.repo_takeover:
    name: "{{ takeover.backup }}"
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, in order.
  returned: always
  type: list
  elements: dict
grand:
  description: The repository that took the fork's data.
  returned: always
  type: str
backup:
  description: The backup fork holding the grand's previous data (the one to take over from to revert).
  returned: always
  type: str
backup_guid:
  description: Its GUID.
  returned: when changed
  type: str
timings_ms:
  description: Milliseconds of each step.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_takeover as _repo_takeover
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="str", required=True), **_module.LAYOUT_ARGS),
        supports_check_mode=True,
    )
    _module.run(module, _repo_takeover.run)


if __name__ == "__main__":
    main()
