#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: hub_install
short_description: Install a repository's Hub (its rediacc.install_as=systemd service) as a host service
version_added: 0.4.0
description:
  - Reads the repository's compose file (the repository must be opened), takes its one service
    labelled C(rediacc.install_as=systemd) whose command is C(hub start ...), checks every
    C(rediacc.hub.*) label and option against an allowlist, and writes
    C(/etc/systemd/system/rediacc-hub.service), C(/etc/rediacc/hub/hub.labels.yaml), the Traefik
    file-provider file C(/opt/rediacc/proxy/traefik/dynamic/rediacc-hub.yaml) and, on a host with
    the M(lockbox.fleet.routes) router, the Caddy sites C({prefix}.{domain}) in
    C(/etc/caddy/lockbox-hub.caddy); then enables and starts the unit (restarts it when any of them changed).
  - The Hub listens on its service's IP in the repository's /26 (a slot in the repository's service
    table). Its C(env_file) files are read by systemd where they are, inside the encrypted mount, so
    the OAuth client secret and session secret never reach the unit, the arguments or any file outside it.
    The unit requires the repository's mount.
  - A failed step puts back the files and the unit's state as they were.
  - C(state=absent) stops and removes all of it; users' data-roots under the workspace directory are kept.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.repo
attributes:
  diff_mode:
    description: The actions list what is written.
    support: none
options:
  state:
    description: C(present) installs or updates the Hub; C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  repository:
    description: The repository whose compose file holds the Hub service. Required with C(state=present).
    type: str
  compose_file:
    description:
      - The compose file, relative to the repository's mount or an absolute path inside it.
        A path that resolves outside the mount is refused. Required with C(state=present).
    type: str
  service:
    description: The Hub service, when the compose file has more than one C(rediacc.install_as=systemd) service.
    type: str
"""

EXAMPLES = r"""
- name: Install the Hub of repository devbox
  lockbox.fleet.hub_install:
    repository: devbox
    compose_file: hub/docker-compose.yml

- name: Remove it (users' data-roots stay)
  lockbox.fleet.hub_install:
    state: absent
"""

RETURN = r"""
actions:
  description: The steps planned (check mode) or taken.
  returned: always
  type: list
  elements: dict
unit:
  description: The systemd unit of the Hub.
  returned: always
  type: str
  sample: rediacc-hub.service
listen:
  description: The Hub's address, its service IP in the repository's /26.
  returned: when state is present
  type: str
  sample: 127.0.11.2
port:
  description: The Hub's port.
  returned: when state is present
  type: int
  sample: 7112
hosts:
  description: The host names that lead to the Hub (one per C(rediacc.hub.route.<prefix>) label).
  returned: when state is present
  type: list
  elements: str
  sample: [code.example.com, term.example.com]
templates:
  description: The environment templates the labels define.
  returned: when state is present
  type: list
  elements: str
workspace_dir:
  description: Where the users' workspaces and data-roots are (C(--workspace-dir) of the Hub).
  returned: when state is present
  type: str
ignored_labels:
  description: C(traefik.*) labels of the service that the Hub's Traefik file does not use.
  returned: when state is present
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            repository=dict(type="str"),
            compose_file=dict(type="str"),
            service=dict(type="str"),
            **_module.LAYOUT_ARGS),
        required_if=[("state", "present", ("repository", "compose_file"))],
        supports_check_mode=True,
    )
    _module.run(module, _hub_install.run)


if __name__ == "__main__":
    main()
