# SPDX-License-Identifier: GPL-3.0-or-later
import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state


@pytest.mark.parametrize("name", ["marketing", "a", "db-1.prod_2", "marketing:staging", "a:b:c", "x" * 64])
def test_valid_names(name):
    assert _state.check_name(name) == name


@pytest.mark.parametrize("name, reason", [
    ("", "non-empty"), (None, "non-empty"), ("a/b", "not valid"), ("..", "not valid"), ("a..b", "not valid"),
    ("has space", "not valid"), ("nul\0byte", "NUL"), ("x" * 65, "too long"), ("-leading", "not valid"),
    (".hidden", "not valid"), ("a:", "non-empty"), (":b", "non-empty"), ("tab\tname", "not valid"),
    ("ünïcode", "not valid"),
])
def test_invalid_names(name, reason):
    with pytest.raises(InvalidInput) as err:
        _state.check_name(name)
    assert reason in err.value.msg


def test_fork_names_and_tags():
    assert _state.fork_name("marketing", "staging") == "marketing:staging"
    with pytest.raises(InvalidInput, match="tag"):
        _state.fork_name("marketing", "a" * 33)
    with pytest.raises(InvalidInput, match="too long"):
        _state.fork_name("m" * 60, "staging")
    with pytest.raises(InvalidInput, match="not valid"):
        _state.fork_name("marketing", "stag:ing")


@pytest.mark.parametrize("network_id, subnet", [
    (6336, "127.0.24.192/26"), (2816, "127.0.11.0/26"), (21760, "127.0.85.0/26"), (32704, "127.0.127.192/26"),
])
def test_subnet_of_network_id(network_id, subnet):
    assert _state.subnet(network_id) == subnet


def test_network_ids_are_compatible_and_reused_lowest_first():
    assert _state.allocate_network_id(set()) == 2816
    assert _state.allocate_network_id({2816, 2880}) == 2944
    assert _state.allocate_network_id({2880}) == 2816
    everything = set(range(2816, 32768, 64))
    assert len(everything) == 468
    with pytest.raises(LockboxError, match="no free networkId"):
        _state.allocate_network_id(everything)


def test_records_are_atomic_readable_json_under_the_lock(tmp_path):
    host = _state.HostState(str(tmp_path))
    with pytest.raises(LockboxError, match="without holding"):
        host.put({"name": "x"})
    with host:
        guid, network_id = host.new_identity()
        host.put({"name": "marketing", "guid": guid, "network_id": network_id})
        guid2, network_id2 = host.new_identity()
        host.put({"name": "marketing:staging", "guid": guid2, "network_id": network_id2, "parent_guid": guid})
    assert (network_id, network_id2) == (2816, 2880)
    assert guid != guid2
    stored = json.loads((tmp_path / "repos" / "marketing.json").read_text())
    assert stored["guid"] == guid
    assert oct(os.stat(tmp_path / "repos" / "marketing.json").st_mode & 0o777) == "0o600"
    assert [r["name"] for r in host.all()] == ["marketing", "marketing:staging"]
    assert host.children(guid) == ["marketing:staging"]
    assert not list((tmp_path / "repos").glob("*.tmp"))


def test_lock_is_exclusive(tmp_path):
    with _state.HostState(str(tmp_path)):
        with pytest.raises(LockboxError, match="holds"):
            with _state.HostState(str(tmp_path), lock_timeout=0.2):
                pass
