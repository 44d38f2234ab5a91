#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: machine_status
short_description: The health of every repository of a host
version_added: 0.2.0
description:
  - For each repository, whether it is marked for autostart, open, mounted, wanted up (its C(up())
    ran and no C(down()) since), whether its daemon answers, its containers and the failed
    ones, and whether it is up as wanted (C(healthy)).
  - Changes nothing. C(rediacc-reconcile.timer) (made by the machine role) runs
    C(renet reconcile), which repairs what this reports (C(renet status) prints the same).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
seealso:
  - module: lockbox.fleet.repo_autostart
"""

EXAMPLES = r"""
- name: Health of the fleet
  lockbox.fleet.machine_status:
  register: status

- name: Name what is not as wanted
  ansible.builtin.debug:
    msg: "{{ status.unhealthy }}"
"""

RETURN = r"""
repositories:
  description: One entry per repository, by name.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "marketing", "network_id": 2816, "autostart": true, "opened": true, "mounted": true,
            "wanted_up": true, "daemon": true, "containers": 3, "failed_containers": [], "up": true, "healthy": true}]
unhealthy:
  description: The repositories wanted up that are not.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import machine_status as _machine_status
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(argument_spec=dict(**_module.LAYOUT_ARGS), supports_check_mode=True)
    _module.run(module, _machine_status.run)


if __name__ == "__main__":
    main()
