# SPDX-License-Identifier: GPL-3.0-or-later
"""The Hub's direct routes: tokens granted and withdrawn, the map file, the activity counters, exact commands."""

import stat

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_install as _hub_install
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import hub_routes as _hub_routes
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import nft as _nft

from ...conftest import fixture_text

LIST = ["nft", "-j", "list", "table", "inet", "lockbox_hub_activity"]
LOAD = ["nft", "-f", "-"]
IS_ACTIVE = ["systemctl", "is-active", "caddy.service"]
RELOAD = ["systemctl", "reload", "caddy.service"]
EMPTY_TABLE = '{"nftables": [{"metainfo": {"version": "1.0.6"}}]}'


@pytest.fixture
def routes(tmp_path, fake_runner):
    router_file = tmp_path / "caddy" / "lockbox-hub.caddy"
    router_file.parent.mkdir()
    router_file.write_text("# the Hub's sites\n")
    fake_runner.answer(LIST, EMPTY_TABLE)
    fake_runner.silent(LOAD, RELOAD)
    fake_runner.answer(IS_ACTIVE, "active\n")
    table = _hub_routes.DirectRoutes(fake_runner, [8080, 7681, 8080], str(router_file),
                                     map_file=str(tmp_path / "routes" / "sessions.map"), group="no-such-group")
    table.start()
    return table, tmp_path / "routes" / "sessions.map"


def _map(path):
    return dict(line.split() for line in path.read_text().splitlines() if not line.startswith("#"))


def test_a_start_empties_the_map_and_the_counters_and_reloads_the_router(routes, fake_runner):
    table, map_file = routes
    assert fake_runner.calls == [LIST, IS_ACTIVE, RELOAD, LOAD]  # the router first: routing matters most
    assert _map(map_file) == {} and stat.S_IMODE(map_file.stat().st_mode) == 0o640
    assert stat.S_IMODE(map_file.parent.stat().st_mode) == 0o750
    assert fake_runner.stdins[3].decode() == _nft.activity_ruleset({})
    assert table.enabled


def test_a_grant_leads_one_token_to_one_address_and_never_into_argv(routes, fake_runner):
    table, map_file = routes
    token = table.grant("alice", "127.0.128.2", 2000.0)
    assert table.grant("alice", "127.0.128.2", 1000.0) == token  # the same address keeps the token
    assert table.grants["alice"]["expires"] == 2000.0  # and the latest session's end
    bob = table.grant("bob", "127.0.128.66", 1500.0)
    assert len({token, bob}) == 2 and len(token) >= 43  # 32 random bytes, base64url
    table.apply()
    assert _map(map_file) == {token: "127.0.128.2", bob: "127.0.128.66"}
    assert fake_runner.stdins[-1].decode() == _nft.activity_ruleset(
        {"alice": ("127.0.128.2", [7681, 8080]), "bob": ("127.0.128.66", [7681, 8080])})
    assert fake_runner.calls[-3:] == [IS_ACTIVE, RELOAD, LOAD]
    # A rebuilt environment at another address gets another token: the old one leads nowhere.
    moved = table.grant("alice", "127.0.129.2", 2000.0)
    table.apply()
    assert moved != token and _map(map_file) == {moved: "127.0.129.2", bob: "127.0.128.66"}
    for call, stdin in zip(fake_runner.calls, fake_runner.stdins, strict=True):
        assert not any(t in " ".join(call) + (stdin or b"").decode() for t in (token, bob, moved))
    calls = len(fake_runner.calls)
    table.apply()  # nothing new: nothing done
    assert len(fake_runner.calls) == calls


def test_withdraw_and_prune_take_the_route_away_before_they_return(routes, fake_runner):
    table, map_file = routes
    table.grant("alice", "127.0.128.2", 2000.0)
    bob = table.grant("bob", "127.0.128.66", 1000.0)
    table.withdraw("alice")
    assert _map(map_file) == {bob: "127.0.128.66"} and fake_runner.calls[-2:] == [RELOAD, LOAD]
    calls = len(fake_runner.calls)
    table.withdraw("alice")  # not granted: nothing to do
    assert len(fake_runner.calls) == calls
    assert table.prune(999.0) == [] and table.prune(999.0, {"bob": "127.0.128.66"}.get) == []
    assert table.prune(1000.0) == ["bob"]
    assert _map(map_file) == {} and fake_runner.calls[-2:] == [RELOAD, LOAD]
    # A grant that raced a stop (the user's environment is no longer at that address) goes too.
    table.grant("carol", "127.0.129.2", 5000.0)
    assert table.prune(1000.0, {"carol": "127.0.129.2"}.get) == []
    assert table.prune(1000.0, {"carol": None}.get) == ["carol"] and "carol" not in table.grants


def test_without_the_router_s_sites_nothing_is_reloaded(tmp_path, fake_runner):
    fake_runner.answer(LIST, EMPTY_TABLE)
    fake_runner.silent(LOAD)
    table = _hub_routes.DirectRoutes(fake_runner, [8080], str(tmp_path / "absent.caddy"),
                                     map_file=str(tmp_path / "routes" / "sessions.map"), group="no-such-group")
    table.start()
    assert not table.enabled and fake_runner.calls == [LIST, LOAD]


def test_a_router_that_fails_to_reload_leaves_the_change_to_be_applied_again(routes, fake_runner):
    table, map_file = routes
    fake_runner.answer(RELOAD, rc=1)
    table.grant("alice", "127.0.128.2", 2000.0)
    with pytest.raises(LockboxError):
        table.apply()
    assert table.applied != table.wanted
    fake_runner.answer(RELOAD)
    table.apply()
    assert table.applied == table.wanted and len(_map(map_file)) == 1


def test_activity_is_what_the_counters_added_since_the_last_look(routes, fake_runner):
    table, _map_file = routes
    recorded = fixture_text("nft_activity.json")  # record_nft_activity.sh: alice sent 3 requests, bob nothing
    assert _nft.parse_activity(recorded) == {"alice": 3, "bob": 0}
    fake_runner.answer(LIST, recorded)
    assert table.active_users() == {"alice"}
    assert table.active_users() == set()  # the same counts: nobody sent anything since
    fake_runner.answer(LIST, "", rc=1)  # no table (nft answers 1): no activity, no error
    assert table.active_users() == set()


def test_activity_before_a_reload_is_not_lost(routes, fake_runner):
    table, _map_file = routes
    fake_runner.answer(LIST, fixture_text("nft_activity.json"))
    table.grant("carol", "127.0.129.2", 2000.0)
    table.apply()  # the table is loaded anew (its counters restart): what alice sent is carried over
    fake_runner.answer(LIST, EMPTY_TABLE)
    assert table.active_users() == {"alice"}
    assert table.active_users() == set()


def test_the_activity_table_counts_data_segments_to_the_route_ports_only():
    ruleset = _nft.activity_ruleset({"bob.b@x+y": ("127.0.128.66", [8080]), "alice": ("127.0.128.2", [9000, 80])})
    assert ruleset.splitlines()[:3] == ["table inet lockbox_hub_activity", "delete table inet lockbox_hub_activity",
                                        "table inet lockbox_hub_activity {"]
    assert '\t\tip daddr 127.0.128.2 tcp dport { 80, 9000 } tcp flags & psh == psh counter comment "alice"' in ruleset
    assert 'comment "bob.b@x+y"' in ruleset


def test_the_router_s_hub_sites_route_tokens_directly_and_the_rest_to_the_hub():
    text = _hub_install.caddy_file({"code": 8080, "term": 7681}, "hub.test", "internal", "127.0.11.2:7112")
    code = text.split("code.hub.test {")[1].split("\n}\n")[0]
    assert "\tmap {http.request.cookie.__Host-hub_route} {lockbox_hub_address} {" in code
    assert "\t\timport /run/rediacc/hub-routes/*.map" in code
    assert "\t\treverse_proxy {lockbox_hub_address}:8080 {" in code
    assert "\t\tnot path /_hub/*" in code and "\ttls internal" in code
    assert code.rstrip().endswith("\thandle {\n\t\treverse_proxy 127.0.11.2:7112\n\t}")
    assert "{lockbox_hub_address}:7681" in text.split("term.hub.test {")[1]
    assert "tls internal" not in _hub_install.caddy_file({"code": 8080}, "hub.test", "acme", "127.0.11.2:7112")
