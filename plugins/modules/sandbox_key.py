#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox_key
short_description: Give one repository an SSH key that opens only its kernel sandbox
version_added: 0.3.0
description:
  - Authorizes O(public_key) in root's C(authorized_keys) with the forced command
    C(renet sandbox --repo <name> --guid <guid>) and C(restrict,pty) (no port, agent or X11 forwarding).
    Whoever holds the private key gets a session in that repository's sandbox and nothing else.
  - A session runs as the unprivileged C(rediacc) user (uid 7111) with no supplementary groups and no new
    privileges, in a mount namespace of its own, in the repository's cgroup (its network guard applies), confined
    by Landlock to the system's read-only trees, the repository's mount and a home and TMPDIR of its own.
    Other repositories' mounts and the secrets tree are EACCES. C(DOCKER_HOST) is a socket only the session can
    open; its requests reach the repository's daemon only after the same allowlist as a compose file
    (no privileged containers, host paths outside the repository, host namespaces, plugins or networks).
  - The client's command (C(ssh root@host 'docker ps')) runs inside the sandbox; without one, a login shell.
    Each session ends with one JSON record in the host audit trail (C(journalctl -t lockbox-audit)).
  - A key that already logs in as root without the sandbox, or that opens another repository's sandbox, is
    refused (sshd uses the first line that matches a key). The key is pinned to the repository's GUID, so a
    later repository of the same name does not accept it.
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
  public_key:
    description:
      - One OpenSSH public key line, C(TYPE BASE64 [COMMENT]). Key options in it are refused, the comment is not
        kept. Required with O(state=present).
    type: str
  state:
    description: Whether the repository's sandbox key is authorized (one per repository; a new key replaces it).
    type: str
    choices: [present, absent]
    default: present
notes:
  - The hosts' sshd must accept root logins by key (Debian's default C(PermitRootLogin prohibit-password) does).
"""

EXAMPLES = r"""
- name: Let the agent's key into the fork shop:agent only
  lockbox.fleet.sandbox_key:
    repository: shop:agent
    public_key: "{{ lookup('ansible.builtin.file', 'agent_ed25519.pub') }}"

- name: Take it back
  lockbox.fleet.sandbox_key:
    repository: shop:agent
    state: absent
"""

RETURN = r"""
authorized_keys:
  description: The file that holds the line.
  returned: always
  type: str
forced_command:
  description: The command sshd runs for this key.
  returned: when state is present
  type: str
  sample: /usr/local/bin/renet sandbox --repo shop:agent --guid 6c1f0a52-0b53-4c55-a1f3-0f4a8c2e9d11
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox_key as _sandbox_key
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repository=dict(type="str", required=True),
            public_key=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            **_module.LAYOUT_ARGS),
        required_if=[("state", "present", ("public_key",))],
        supports_check_mode=True,
    )
    _module.run(module, _sandbox_key.run)


if __name__ == "__main__":
    main()
