#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_secret
short_description: Write-only secrets of a repository, kept out of its encrypted image and its forks
version_added: 0.3.0
description:
  - A secret is written and never read back. Its value is stored sealed (AES-256-GCM) in a root-only file
    per repository outside the repository's LUKS image (C(<state_dir>/secrets/<guid>.json)), under the host's
    store key C(/etc/rediacc/secret-store.key); the host audit trail (C(journalctl -t lockbox-audit)) records
    every set, rotation, unset, get and list with who asked and the first characters of the digest.
  - A fork starts with no secrets, as it has a GUID of its own and the image it was copied from never held them.
  - C(mode=env) reaches containers as C(${REDIACC_SECRET_<KEY>}) in the compose file, interpolated by
    C(renet compose) when containers are created; the copy of the model the repository keeps
    (C(.rediacc/compose.json)) shows a placeholder. Docker keeps a container's environment in its
    configuration, inside the repository's data-root; for values a container should only read, use
    C(mode=file).
  - C(mode=file) reaches containers as a compose C(secrets:) file. Write
    the file C(${REDIACC_SECRETS_DIR}/<KEY>) in the compose file's top-level C(secrets); the file lives on tmpfs at
    C(/var/run/rediacc/secrets/<networkId>/<KEY>) and is seen at C(/run/secrets/<name>) in the container.
    M(lockbox.fleet.repo_app) with C(state=down) and C(unmount=true) removes the files. An up whose compose
    file needs a file secret the repository does not have fails and says which.
  - C(state=present) sets O(key). Overwriting a different value needs O(current) (the value it has now,
    compared by digest) or O(rotate=true); otherwise the task fails, changes nothing, and returns
    C(next.options) with the exact commands to run instead. Setting the value it already has changes nothing.
  - C(state=absent) removes O(key). C(state=listed) changes nothing and returns the keys with their modes and
    SHA-256 digests, or one of them with O(key) (the C(get) of the host's C(renet secret get)).
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
  key:
    description:
      - The secret's key, C(A-Z), C(0-9) and C(_), starting with a letter, at most 64 characters.
      - Required unless O(state=listed).
    type: str
  value:
    description: The value to set (UTF-8 text, at most 64 KiB, no NUL byte). Required with O(state=present).
    type: str
  mode:
    description: How the value reaches containers.
    type: str
    choices: [env, file]
    default: env
  current:
    description:
      - The value the secret has now, needed to overwrite it with a different one. Compared by digest.
      - Mutually exclusive with O(rotate).
    type: str
  rotate:
    description: Overwrite without the value it has now; recorded as a rotation.
    type: bool
    default: false
  state:
    description: Whether the secret is set, removed, or only listed.
    type: str
    choices: [present, absent, listed]
    default: present
notes:
  - O(value) and O(current) are never logged, returned or placed on a command line.
  - Anyone who may list secrets sees their SHA-256 digests and can test a guessed value against them; use
    values with real entropy.
"""

EXAMPLES = r"""
- name: Give repository shop its payment key (first time)
  lockbox.fleet.repo_secret:
    repository: shop
    key: STRIPE_KEY
    value: "{{ vault_stripe_key }}"

- name: Replace it, proving the value it has now
  lockbox.fleet.repo_secret:
    repository: shop
    key: STRIPE_KEY
    value: "{{ vault_stripe_key_new }}"
    current: "{{ vault_stripe_key }}"

- name: Replace it without the old value (audited as a rotation)
  lockbox.fleet.repo_secret:
    repository: shop
    key: STRIPE_KEY
    value: "{{ vault_stripe_key_new }}"
    rotate: true

- name: A database password the app reads from /run/secrets/db_password
  lockbox.fleet.repo_secret:
    repository: shop
    key: DB_PASSWORD
    value: "{{ vault_db_password }}"
    mode: file

- name: Which secrets shop has (names, modes, digests)
  lockbox.fleet.repo_secret:
    repository: shop
    state: listed
  register: listed

- name: The digest of one
  lockbox.fleet.repo_secret:
    repository: shop
    key: STRIPE_KEY
    state: listed
  register: stripe

- name: Remove a secret
  lockbox.fleet.repo_secret:
    repository: shop
    key: DB_PASSWORD
    state: absent
"""

RETURN = r"""
outcome:
  description: C(created), C(overwritten), C(rotated), C(unchanged), C(removed) or C(absent).
  returned: when state is present or absent
  type: str
digest:
  description: The SHA-256 digest of the value set.
  returned: when state is present
  type: str
mode:
  description: The secret's mode.
  returned: when state is present
  type: str
secrets:
  description: With O(state=listed), each secret's key, mode, digest, last update and rotation count.
  returned: when state is listed
  type: list
  elements: dict
secret:
  description: With O(state=listed) and O(key), that secret, or null when it is not set.
  returned: when state is listed
  type: dict
next:
  description: >-
    When an overwrite is refused, C(options), each with C(why), C(run) (a C(renet) command line) and C(ansible)
    (the task to use instead).
  returned: on failure of an overwrite
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repository=dict(type="str", required=True),
            key=dict(type="str", no_log=False),
            value=dict(type="str", no_log=True),
            mode=dict(type="str", choices=["env", "file"], default="env"),
            current=dict(type="str", no_log=True),
            rotate=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent", "listed"], default="present"),
            **_module.LAYOUT_ARGS),
        required_if=[("state", "present", ("key", "value")), ("state", "absent", ("key",))],
        supports_check_mode=True,
    )
    _module.run(module, _repo_secret.run)


if __name__ == "__main__":
    main()
