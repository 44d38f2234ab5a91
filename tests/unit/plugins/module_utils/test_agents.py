# SPDX-License-Identifier: GPL-3.0-or-later
"""Agents work on forks: detection through the process tree, grand repositories refused, overrides from above only."""

import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core import procfs as _procfs
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import agents as _agents

GRAND = "'shop' is a grand (production) repository."


def fake_proc(tmp_path, tree):
    """tree: pid -> (parent pid, environment or None for unreadable)."""
    for pid, (parent, environ) in tree.items():
        where = tmp_path / str(pid)
        where.mkdir()
        (where / "stat").write_bytes(b"%d (we) ird) name) S %d 1 1" % (pid, parent))
        if environ is not None:
            (where / "environ").write_bytes(b"".join(b"%s=%s\0" % (k.encode(), v.encode())
                                                     for k, v in environ.items()))
    return str(tmp_path)


# user shell 10 -> agent 20 (started with the marker) -> bash 30 (unset it) -> env -i 40 -> renet (us, 50)
def agent_tree(agent_env=None, child_env=None):
    return {10: (1, {"HOME": "/root"}), 1: (0, {}),
            20: (10, dict({"CLAUDECODE": "1"}, **(agent_env or {}))),
            30: (20, dict(child_env or {})), 40: (30, {}), 50: (40, {})}


def test_ancestry_is_read_from_proc_to_the_top_even_with_odd_command_names(tmp_path):
    proc = fake_proc(tmp_path, agent_tree())
    found = _procfs.ancestors(50, proc)
    assert [pid for pid, _env in found] == [40, 30, 20, 10, 1]
    assert found[2][1] == {"CLAUDECODE": "1"}


def test_an_agent_that_unset_its_marker_and_cleared_its_environment_is_still_refused(tmp_path):
    ancestry = _procfs.ancestors(50, fake_proc(tmp_path, agent_tree()))
    with pytest.raises(_agents.AgentRefused) as refused:
        _agents.check("shop", False, {}, ancestry, "renet down")
    assert str(refused.value.msg).startswith(GRAND + " Agents cannot modify grand repositories directly")
    assert "Use a fork instead. Forks are safe, isolated sandbox copies." in refused.value.msg


def test_forks_are_the_agent_s_room_and_people_are_not_agents(tmp_path):
    ancestry = _procfs.ancestors(50, fake_proc(tmp_path, agent_tree()))
    _agents.check("shop:try", True, {}, ancestry, "renet down")
    (tmp_path / "human").mkdir()
    human = fake_proc(tmp_path / "human", {10: (1, {}), 1: (0, {}), 50: (10, {})})
    _agents.check("shop", False, {}, _procfs.ancestors(50, human), "renet down")


def test_renet_guards_mutating_and_shell_commands_and_lets_reading_ones_through(tmp_path, monkeypatch):
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
    from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
    from ansible_collections.lockbox.fleet.plugins.module_utils._front import renet as _renet
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    with _state.HostState(layout.state_dir) as host:
        host.put({"name": "shop", "guid": "g1", "network_id": 2816, "status": "ready", "is_fork": False})
        host.put({"name": "shop:try", "guid": "g2", "network_id": 2880, "status": "ready", "is_fork": True})
    monkeypatch.setattr(_renet._agents, "check", lambda *args: seen.append(args[0::4]))
    monkeypatch.chdir(tmp_path)
    env = {"REDIACC_NETWORK_ID": "2816"}
    seen = []
    for argv in (["up", "shop"], ["down", "shop:try"], ["checkpoint", "create", "shop", "v1"],
                 ["checkpoint", "list", "shop"], ["info"], ["compose", "--", "ps"], ["compose", "--", "logs"],
                 ["compose", "--", "-f", "x.yaml", "exec", "web", "sh"], ["up", "nosuch"]):
        _renet.guard_agents(layout, _renet._parser().parse_args(argv), env, ancestry=[])
    assert seen == [("shop", "renet up"), ("shop:try", "renet down"), ("shop", "renet checkpoint create"),
                    ("shop", "renet compose exec")]


def test_an_override_the_agent_sets_itself_is_not_accepted(tmp_path):
    ancestry = _procfs.ancestors(50, fake_proc(tmp_path, agent_tree(child_env={_agents.OVERRIDE: "shop"})))
    for environ in ({_agents.OVERRIDE: "shop"}, {}):
        with pytest.raises(_agents.AgentRefused) as refused:
            _agents.check("shop", False, environ, ancestry, "renet up")
        assert refused.value.msg == (GRAND + " Agent-initiated overrides are not accepted. Do not attempt to set "
                                     "REDIACC_ALLOW_GRAND_REPO. Only the user can authorize this before the agent "
                                     "starts.")


def test_an_override_set_before_the_agent_started_is_honoured_for_the_repositories_it_names_only(tmp_path):
    ancestry = _procfs.ancestors(50, fake_proc(tmp_path, agent_tree(agent_env={_agents.OVERRIDE: "shop, blog"})))
    _agents.check("shop", False, {}, ancestry, "renet up")
    _agents.check("blog", False, {}, ancestry, "renet up")
    with pytest.raises(_agents.AgentRefused, match="'nextcloud' is a grand"):
        _agents.check("nextcloud", False, {}, ancestry, "renet up")


def test_an_ancestry_that_cannot_be_read_to_its_top_honours_no_override(tmp_path):
    tree = agent_tree(agent_env={_agents.OVERRIDE: "shop"})
    tree[10] = (1, None)  # above the agent: unreadable, another agent may sit there
    ancestry = _procfs.ancestors(50, fake_proc(tmp_path, tree))
    with pytest.raises(_agents.AgentRefused, match="could not be read to its top"):
        _agents.check("shop", False, {}, ancestry, "renet up")


def test_the_marker_in_our_own_environment_is_enough(tmp_path):
    ancestry = _procfs.ancestors(50, fake_proc(tmp_path, {1: (0, {}), 50: (1, {})}))
    with pytest.raises(_agents.AgentRefused):
        _agents.check("shop", False, {"GEMINI_CLI": "1"}, ancestry, "renet compose exec")
    assert _agents.marker_of({"CLAUDECODE": ""}) is None  # set but empty is not a marker


def test_a_loop_in_proc_ends(tmp_path):
    proc = fake_proc(tmp_path, {7: (8, {}), 8: (7, {})})
    found = _procfs.ancestors(7, proc)
    assert len(found) == _procfs.MAX_DEPTH + 1 and found[-1][1] is None
    assert os.path.isdir(proc)
