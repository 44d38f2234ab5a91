# SPDX-License-Identifier: GPL-3.0-or-later
"""Every allowlist matches the whole value: a trailing newline (which `$` lets through) is refused.

Names end up in file names, unit files, argv and JSON read by shells; "shop\\n" must never
pass for "shop".
"""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import routes as _routes
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import sandbox_key as _sandbox_key
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import hub as _hub
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import size as _size
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import bash as _bash

CHECKS = [
    (_state.check_name, "shop"), (_state.check_name, "shop:staging"), (_state.check_tag, "staging"),
    (_secrets.check_key, "DB_PASSWORD"), (_hub.check_username, "alice"),
    (lambda value: _routes.check_router_settings("node1", value), "example.com"),
]


@pytest.mark.parametrize("check, good", CHECKS)
def test_a_value_with_a_trailing_newline_is_refused(check, good):
    check(good)
    for bad in (good + "\n", good + "\n\n", "\n" + good):
        with pytest.raises(InvalidInput):
            check(bad)


def test_shell_function_names_and_key_data_are_matched_in_full():
    with pytest.raises(ValueError, match="not a shell function name"):
        _bash.call_function(None, "/nonexistent", "up\n", {})
    with pytest.raises(InvalidInput, match="one OpenSSH public key line"):
        _sandbox_key.parse_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\nssh-ed25519 AAAA")
    assert _routes._ports("80,443") == [80, 443] and _routes._ports("80\n") == []
    assert _size.parse_size("10M\n", "size") == 10 * 1024 * 1024  # surrounding blanks, as before
