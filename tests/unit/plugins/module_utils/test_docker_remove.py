# SPDX-License-Identifier: GPL-3.0-or-later
"""docker.remove: a container the daemon is already removing is waited for; other conflicts are errors."""

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._tools import docker as _docker

SOCK = "/var/run/rediacc/docker-2880.sock"
HOST = "unix://" + SOCK
ID = "65941107e45906be20ea89e6f24360a1d19a0a01cd58d50336853788d01bcec6"
# dockerd 26's answer when it removes the container itself (recorded from a fork's new daemon).
IN_PROGRESS = {"message": "removal of container %s is already in progress" % ID}


def test_removed_and_missing_containers_need_one_call_each(fake_runner):
    fake_runner.answer_api(SOCK, "DELETE", "/containers/a?force=1", None, status=204)
    fake_runner.answer_api(SOCK, "DELETE", "/containers/b?force=1", {"message": "No such container: b"}, status=404)
    _docker.remove(fake_runner, HOST, ["a", "b"])
    assert [c[2:] for c in fake_runner.calls] == [["DELETE", "/containers/a?force=1"],
                                                  ["DELETE", "/containers/b?force=1"]]


def test_a_removal_already_in_progress_is_waited_for_until_the_container_is_gone(fake_runner):
    fake_runner.answer_api(SOCK, "DELETE", "/containers/%s?force=1" % ID, IN_PROGRESS, status=409)
    fake_runner.answer_api(SOCK, "GET", "/containers/%s/json" % ID, {"message": "No such container"}, status=404)
    _docker.remove(fake_runner, HOST, [ID])
    assert [c[2] for c in fake_runner.calls] == ["DELETE", "GET"]


def test_a_removal_in_progress_that_never_ends_is_an_error(fake_runner):
    fake_runner.answer_api(SOCK, "DELETE", "/containers/%s?force=1" % ID, IN_PROGRESS, status=409)
    fake_runner.answer_api(SOCK, "GET", "/containers/%s/json" % ID, {"Id": ID}, status=200)
    with pytest.raises(LockboxError, match=r"still being removed by its daemon after 0 s"):
        _docker.remove(fake_runner, HOST, [ID], wait=0)


def test_another_conflict_is_an_error_naming_it(fake_runner):
    fake_runner.answer_api(SOCK, "DELETE", "/containers/a?force=1", {"message": "conflict: something else"},
                           status=409)
    with pytest.raises(LockboxError, match=r"failed [(]HTTP 409[)]: conflict: something else"):
        _docker.remove(fake_runner, HOST, ["a"])
