#!/usr/bin/python
# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: repo_task
short_description: Try one command on a copy of a repository, in its fork's sandbox, and get one result
version_added: 0.3.0
description:
  - Forks O(repository) as C(<repository>:task-<id>), brings the fork up (its own daemon and addresses, no
    secrets, no egress beyond loopback), runs O(command) in the fork's kernel sandbox (uid 7111, Landlock, its
    own daemon only, see M(lockbox.fleet.sandbox_key)) with no terminal, then deletes the fork unless
    O(keep=true). The repository itself is never touched.
  - Returns the task id, the fork's name, the command, C(status) (C(ok), C(failed) when the command exited
    non-zero, C(error) when the task could not run), the exit code, the duration, stdout and stderr (64 KiB each
    at most), the Docker requests the sandbox refused and the kernel's refusals (EACCES and EPERM, recorded
    through strace when the host has it).
  - The same as C(renet task run --repo NAME --key-file K -- COMMAND) on the host.
author:
  - lockbox.fleet developers (@lockbox-fleet)
extends_documentation_fragment:
  - lockbox.fleet.attributes
  - lockbox.fleet.attributes.ACTIONS_ONLY
  - lockbox.fleet.repo
  - lockbox.fleet.repo.KEY
attributes:
  check_mode:
    description: Can run in check mode.
    support: partial
    details: In check mode nothing is forked or run; the repository is checked and the result says what would be.
options:
  repository:
    description: The repository to fork (a grand repository or a fork).
    type: str
    required: true
  command:
    description: The command and its arguments (run without a shell; use C([bash, -c, "..."]) for one).
    type: list
    elements: str
    required: true
  keep:
    description: Keep the fork afterwards (for example to look at what the command left).
    type: bool
    default: false
notes:
  - The task changes the host (a fork is made and removed), so it always reports changed.
"""

EXAMPLES = r"""
- name: Try the migration on a copy of production
  lockbox.fleet.repo_task:
    repository: shop
    key_file: /etc/rediacc/keys/shop.key
    command: [bash, -c, "docker exec web-api-1 ./migrate --dry-run"]
  register: tried

- name: What it said
  ansible.builtin.debug:
    msg: "{{ tried.status }} {{ tried.exit_code }}: {{ tried.stdout }}"
"""

RETURN = r"""
task_id:
  description: The task's id (the fork is C(<repository>:task-<task_id>)).
  returned: always
  type: str
fork:
  description: The fork's name.
  returned: always
  type: str
status:
  description: C(ok), C(failed) (the command exited non-zero) or C(error) (the task could not run; see C(msg)).
  returned: always
  type: str
exit_code:
  description: The command's exit code (128 + N when signal N ended it; 126 when the sandbox could not start it).
  returned: always
  type: int
duration_s:
  description: Seconds from the fork to its removal.
  returned: always
  type: float
stdout:
  description: The command's standard output (at most 64 KiB; C(stdout_truncated) says when cut).
  returned: always
  type: str
stderr:
  description: The command's standard error (at most 64 KiB).
  returned: always
  type: str
refused:
  description: The Docker requests the sandbox refused, with why.
  returned: always
  type: list
  elements: str
kernel_denials:
  description: Each refused syscall (C(syscall), C(errno), C(target)), or null when the host has no strace.
  returned: always
  type: list
  elements: dict
kept:
  description: Whether the fork is still there.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_task as _repo_task
from ansible_collections.lockbox.fleet.plugins.module_utils._front import module as _module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repository=dict(type="str", required=True),
            command=dict(type="list", elements="str", required=True),
            keep=dict(type="bool", default=False),
            **_module.KEY_ARGS,
            **_module.LAYOUT_ARGS),
        mutually_exclusive=_module.KEY_EXCLUSIVE,
        supports_check_mode=True,
    )
    _module.run(module, _repo_task.run)


if __name__ == "__main__":
    main()
