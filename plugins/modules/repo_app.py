#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_app
short_description: Bring a repository's applications up or down (its Rediaccfiles)
version_added: 0.2.0
description:
  - C(state=up) opens and mounts the volume if needed (M(lockbox.fleet.luks_repo)), puts the network
    guard in place (M(lockbox.fleet.loopback_net)), starts the repository's dockerd
    (M(lockbox.fleet.repo_daemon)) and runs C(up()) of every Rediaccfile (the repository's root and its
    first-level directories) with C(REDIACC_WORKING_DIR), C(REDIACC_NETWORK_ID), C(REDIACC_REPOSITORY),
    C({SERVICE}_IP) and C(DOCKER_HOST) set. C(up()) runs again only when a Rediaccfile or compose file
    changed since the last run, the daemon was not running, or a container has failed.
  - C(state=down) runs C(down()) of every Rediaccfile and stops the daemon; O(unmount) also closes the volume.
  - Rediaccfiles call C(renet compose -- up -d), installed on hosts by the C(lockbox.fleet.machine) role.
  - After C(state=down) with O(checkpoint=true), C(state=up) starts the services the checkpointed ones
    depend on first (healthy when they have a healthcheck), then restores the checkpointed ones in
    C(depends_on) order. One whose restore fails starts fresh; the result (C(restored)) and a warning say so.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.attributes.ACTIONS_ONLY
  - lockbox.fleet.repo
  - lockbox.fleet.repo.KEY
  - lockbox.fleet.repo.NAME
options:
  state:
    description: Up or down.
    type: str
    choices: [up, down]
    default: up
  unmount:
    description: With C(state=down), also unmount and close the LUKS volume.
    type: bool
    default: false
  checkpoint:
    description:
      - With C(state=down), first checkpoint and stop the containers labelled C(rediacc.checkpoint=true)
        (see M(lockbox.fleet.criu_checkpoint)); the next C(state=up) restores them.
    type: bool
    default: false
  skip_checkpoint:
    description:
      - With C(state=up), start every service fresh even if C(state=down) left a checkpoint
        (the checkpoint is kept, and no longer restored by the next up).
    type: bool
    default: false
  info:
    description: Also run C(info()) of every Rediaccfile and return its output.
    type: bool
    default: false
  machine:
    description: The machine's name in route host names (C(https://{service}.{repo}.{machine}.{base_domain})).
    type: str
    default: ""
  base_domain:
    description: The base domain of route host names; no URLs are returned when empty.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Bring repository marketing up
  lockbox.fleet.repo_app:
    name: marketing
    key: "{{ vault_marketing_key }}"
    machine: server-1
    base_domain: example.com
  register: up

- name: Its URLs
  ansible.builtin.debug:
    var: up.urls

- name: Down, keeping the memory of the labelled services for the next up
  lockbox.fleet.repo_app:
    name: marketing
    state: down
    checkpoint: true

- name: Down, and lock the volume
  lockbox.fleet.repo_app:
    name: marketing
    state: down
    unmount: true
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken, prefixed by their layer (volume, network, daemon).
  returned: always
  type: list
  elements: dict
outputs:
  description: What each Rediaccfile function printed, keyed by Rediaccfile path (C(info:) prefix for info()).
  returned: always
  type: dict
containers:
  description: The repository's containers after C(up) (id, name, service, state, exit_code, service_ip, ...).
  returned: always
  type: list
  elements: dict
restored:
  description: After an up that restored a checkpoint, per container whether it came back from it (C(restored)) or
    started fresh, and why (C(error)).
  returned: when a checkpoint was restored
  type: dict
urls:
  description: Route URLs of the services labelled C(rediacc.service_port) (forks use C({service}-fork-{tag})).
  returned: always
  type: list
  elements: str
  sample: ["https://web.marketing.server-1.example.com"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_app as _repo_app
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["up", "down"], default="up"),
            unmount=dict(type="bool", default=False),
            checkpoint=dict(type="bool", default=False),
            skip_checkpoint=dict(type="bool", default=False),
            info=dict(type="bool", default=False),
            machine=dict(type="str", default=""),
            base_domain=dict(type="str", default=""),
            **_module.LAYOUT_ARGS, **_module.KEY_ARGS),
        mutually_exclusive=_module.KEY_EXCLUSIVE,
        supports_check_mode=True,
    )
    _module.run(module, _repo_app.run)


if __name__ == "__main__":
    main()
