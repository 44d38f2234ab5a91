# SPDX-License-Identifier: GPL-3.0-or-later
"""repo_prune: what no record owns is removed; what a repository, another datastore or a Hub user holds is not."""

import json
import os

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_daemon as _repo_daemon
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_prune as _prune
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import systemd as _systemd

from ...conftest import FakeRunner, fixture_text

KNOWN = "11111111-1111-4111-8111-111111111111"
GONE = "22222222-2222-4222-8222-222222222222"
RECORD = {"name": "shop", "guid": KNOWN, "network_id": 2816, "status": "ready"}


@pytest.fixture
def host(tmp_path, monkeypatch):
    layout = _repository.Layout(str(tmp_path / "ds"), state_dir=str(tmp_path / "state"))
    monkeypatch.setattr(_repository.Layout, "check_datastore", lambda self: None)
    (tmp_path / "state" / "repos").mkdir(parents=True)
    (tmp_path / "state" / "repos" / "shop.json").write_text(json.dumps(RECORD))
    (tmp_path / "ds" / "repositories" / KNOWN).mkdir(parents=True)
    places = {"unit_dir": tmp_path / "units", "config_dir": tmp_path / "docker", "slices_dir": tmp_path / "cgroup"}
    for place in places.values():
        place.mkdir()
    return layout, places


def daemon(places, network_id, mount, unit=True, config=True):
    if config:
        (places["config_dir"] / ("%d.json" % network_id)).write_text(
            _repo_daemon.render_config(mount, network_id))
    if unit:
        (places["unit_dir"] / _repo_daemon.unit_name(network_id)).write_text(
            _repo_daemon.unit_content(mount, network_id, "/etc/rediacc/docker/%d.json" % network_id))


def test_only_what_no_repository_of_this_datastore_holds_is_stray(host):
    layout, places = host
    daemon(places, 2816, layout.mount(KNOWN))                       # shop's own
    daemon(places, 2880, layout.mount(GONE))                        # a repository deleted by hand
    daemon(places, 2944, "/srv/other/mounts/" + GONE)               # another datastore's
    daemon(places, 3008, layout.mount(KNOWN), config=False)         # names shop's mount: not ours to judge
    daemon(places, 3072, layout.mount(GONE), unit=False)            # only its configuration is left
    daemon(places, 32768, "/srv/hub/users/alice")                  # a Hub user's daemon
    daemon(places, 32832, layout.mount(GONE))                       # above the repositories' range
    (places["slices_dir"] / "rediacc-3136.slice").mkdir()           # a slice whose daemon is gone
    (places["slices_dir"] / "rediacc-2816.slice").mkdir()
    for odd in ("rediacc-docker-3200.service.bak", "rediacc-docker-x.service", "rediacc-docker-64.service"):
        (places["unit_dir"] / odd).write_text("")
    assert _prune.stray_network_ids(layout, [RECORD], **{k: str(v) for k, v in places.items()}) == \
        [2880, 3072, 3136]


def test_a_daemon_whose_files_cannot_be_read_is_judged_by_its_unit(host):
    layout, places = host
    (places["config_dir"] / "2880.json").write_text("not json")
    (places["unit_dir"] / _repo_daemon.unit_name(2880)).write_text(
        _repo_daemon.unit_content("/srv/other/mounts/x", 2880, "/etc/rediacc/docker/2880.json"))
    assert _prune.stray_network_ids(layout, [RECORD], **{k: str(v) for k, v in places.items()}) == []


def test_prune_removes_a_stray_daemon_and_snapshots_untouched_for_the_grace(host, monkeypatch):
    layout, places = host
    daemon(places, 2880, layout.mount(GONE))
    monkeypatch.setattr(_systemd, "UNIT_DIR", str(places["unit_dir"]))
    monkeypatch.setattr(_repo_daemon, "config_path", lambda network_id, config_dir=None: str(
        places["config_dir"] / ("%d.json" % network_id)))
    real = _prune.stray_network_ids
    monkeypatch.setattr(_prune, "stray_network_ids", lambda layout, records: real(
        layout, records, **{k: str(v) for k, v in places.items()}))
    old, fresh = layout.snapshots(GONE), layout.backups("33333333-3333-4333-8333-333333333333")
    for directory in (old, fresh, layout.snapshots(KNOWN)):
        os.makedirs(os.path.join(directory, "20261125T100000Z-a1b2c3"))
    now = os.stat(fresh).st_mtime + 10
    os.utime(old, (now - 7200, now - 7200))
    os.utime(os.path.join(old, "20261125T100000Z-a1b2c3"), (now - 7200, now - 7200))
    runner = FakeRunner()
    runner.answer(["systemctl", "show", "rediacc-docker-2880.service"], fixture_text("systemctl_show_missing.txt"))
    result = _prune.prune(runner, layout, check_mode=True, now=now)
    assert [a["detail"] for a in result["actions"]] == [
        "delete the stray transfer snapshots %s" % old,
        "remove rediacc-docker-2880.service (networkId 2880: no repository holds it)",
        "remove %s/2880.json (networkId 2880: no repository holds it)" % places["config_dir"]]
    assert runner.calls == [["systemctl", "show", "rediacc-docker-2880.service", "-p",
                             "LoadState,ActiveState,SubState,FragmentPath,UnitFileState"]]
    assert os.path.exists(places["config_dir"] / "2880.json") and os.path.isdir(old)  # check mode: nothing done
    image = os.path.join(old, "20261125T100000Z-a1b2c3", "image")  # a receive still writing the image
    open(image, "w").close()
    os.utime(image, (now - 5, now - 5))
    for directory in (old, os.path.dirname(image)):
        os.utime(directory, (now - 7200, now - 7200))
    assert "delete the stray transfer snapshots %s" % old not in [
        a["detail"] for a in _prune.prune(runner, layout, check_mode=True, now=now)["actions"]]
    assert [a["detail"] for a in _prune.prune(runner, layout, check_mode=True, now=now, snapshot_grace=0)[
        "actions"]][:2] == ["delete the stray transfer snapshots %s" % old, "delete the stray backups %s" % fresh]


@pytest.mark.parametrize("grace", [-1, "3600", 1.5, True])
def test_a_grace_that_is_no_count_of_seconds_is_refused(host, grace):
    with pytest.raises(InvalidInput, match="snapshot_grace"):
        _prune.prune(FakeRunner(), host[0], check_mode=True, snapshot_grace=grace)
