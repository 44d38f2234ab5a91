#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_info
short_description: Facts about the repositories of a host
version_added: 0.1.0
description:
  - Lists every repository of the host (or one, by O(name)) with its identity, network, size,
    space used, open and mounted state, parent and forks. Changes nothing.
  - The list is flat and keyed by plain names, so a fleet can be queried with
    C(community.general.json_query) or C(selectattr).
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
attributes:
  diff_mode:
    description: Changes nothing that a diff could show.
    support: none
options:
  name:
    description: Only this repository (an error if it does not exist).
    type: str
"""

EXAMPLES = r"""
- name: Every repository of the host
  lockbox.fleet.repo_info:
  register: info

- name: Names of the forks that are mounted
  ansible.builtin.debug:
    msg: "{{ info.repositories | selectattr('is_fork') | selectattr('mounted') | map(attribute='name') }}"
"""

RETURN = r"""
repositories:
  description: One entry per repository, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The repository's name (forks are C(<parent>:<tag>)), type: str}
    guid: {description: Its GUID, type: str}
    network_id: {description: Its networkId, type: int}
    subnet: {description: Its loopback /26, type: str, sample: 127.0.24.192/26}
    size: {description: Image size in bytes, type: int}
    allocated: {description: Bytes the sparse image really occupies, type: int}
    used: {description: Bytes used in the filesystem (null when not mounted), type: int}
    status:
      description: V(ready), or the operation that was interrupted.
      type: str
    opened: {description: Whether the LUKS mapping is open, type: bool}
    mounted: {description: Whether it is mounted, type: bool}
    mount_path: {description: Where it is (or would be) mounted, type: str}
    image: {description: The image file, type: str}
    mapper: {description: The device-mapper name, type: str}
    parent: {description: The parent's name for a fork, type: str}
    is_fork: {description: Whether it is a fork, type: bool}
    tag: {description: A fork's tag, type: str}
    children: {description: Names of its forks, type: list, elements: str}
    created:
      description: When it was created, in UTC, ISO 8601.
      type: str
    key_kind:
      description: V(key) for a random key (PBKDF2) or V(passphrase) (argon2id).
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_info as _repo_info
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="str"), **_module.LAYOUT_ARGS),
        supports_check_mode=True,
    )
    _module.run(module, _repo_info.run)


if __name__ == "__main__":
    main()
