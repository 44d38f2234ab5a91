# Copyright: lockbox.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument specs and the run wrapper shared by the repository modules."""

from __future__ import annotations

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._core.runner import Runner
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet.state import DEFAULT_STATE_DIR

LAYOUT_ARGS = dict(
    datastore=dict(type="path", default=_repository.DEFAULT_DATASTORE),
    mount_root=dict(type="path"),
    state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
)

KEY_ARGS = dict(
    key=dict(type="str", no_log=True),
    passphrase=dict(type="str", no_log=True),
    key_file=dict(type="path", no_log=False),
)

KEY_EXCLUSIVE = [("key", "passphrase", "key_file")]


def run(module, entry):
    """Call the domain entry point ``entry(runner, params, check_mode)``; report its result or its one typed error."""
    try:
        result = entry(Runner(module), module.params, module.check_mode)
    except LockboxError as exc:
        module.fail_json(**exc.as_result())
    if not module._diff:
        result.pop("diff", None)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    module.exit_json(**result)
