#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_autostart
short_description: Bring a repository up again after the host boots
version_added: 0.2.0
description:
  - O(state=present) marks the repository for autostart with a key file the operator placed on
    the host. The file must be a regular file owned by root with mode 0600 or stricter, and its
    content must open the repository (checked against its LUKS header when the mark is set).
  - At boot C(rediacc-autostart.service) (made by the machine role) runs C(renet reconcile --boot),
    which waits for the datastore, then opens, mounts and brings up every marked repository
    (guard, daemon, C(up()) of every Rediaccfile, routes). Repositories without the mark stay closed.
  - O(state=absent) removes the mark; the key file is left where it is.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
options:
  name:
    description: The repository.
    type: str
    required: true
  state:
    description: Whether it starts at boot.
    type: str
    choices: [present, absent]
    default: present
  key_file:
    description: The key file on the host (absolute path). Required with O(state=present).
    type: path
seealso:
  - module: lockbox.fleet.machine_status
"""

EXAMPLES = r"""
- name: The key where only root reads it
  ansible.builtin.copy:
    content: "{{ vault_marketing_key }}"
    dest: /root/keys/marketing.key
    owner: root
    group: root
    mode: "0600"

- name: Marketing comes back after a reboot
  lockbox.fleet.repo_autostart:
    name: marketing
    key_file: /root/keys/marketing.key
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken.
  returned: always
  type: list
  elements: dict
autostart:
  description: The mark now (C(key_file)), or null.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_autostart as _repo_autostart
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="str", required=True),
                           state=dict(type="str", choices=["present", "absent"], default="present"),
                           key_file=dict(type="path", no_log=False),
                           **_module.LAYOUT_ARGS),
        required_if=[("state", "present", ("key_file",))],
        supports_check_mode=True,
    )
    _module.run(module, _repo_autostart.run)


if __name__ == "__main__":
    main()
