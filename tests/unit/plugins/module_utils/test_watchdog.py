# SPDX-License-Identifier: GPL-3.0-or-later
"""The watchdog's decisions: which daemons an event, a new socket or the safety pass sends it to."""

import queue

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import watchdog as _watchdog


def test_a_new_daemon_is_followed_and_looked_at_once():
    watch = _watchdog.Watch(safety=30, retry=5)
    assert watch.tick(0, {2816: "s"}) == ([2816], [2816], True)  # first tick: everything, once
    assert watch.tick(2, {2816: "s", 2880: "t"}) == ([2880], [2880], True)


def test_an_idle_host_is_not_looked_at_between_safety_passes():
    watch = _watchdog.Watch(safety=30, retry=5)
    watch.tick(0, {n: "s" for n in range(2816, 3456, 64)})
    for now in range(2, 30, 2):
        assert watch.tick(now, {n: "s" for n in range(2816, 3456, 64)}) == ([], [], False)
    follow, passes, routes = watch.tick(30, {n: "s" for n in range(2816, 3456, 64)})
    assert follow == [] and len(passes) == 10 and routes


def test_an_event_sends_the_watchdog_to_that_daemon_only_and_the_routes_follow():
    watch = _watchdog.Watch(safety=30, retry=5)
    watch.tick(0, {2816: "s", 2880: "t"})
    assert watch.tick(1, {2816: "s", 2880: "t"}, events=[2880, 2880]) == ([], [2880], True)
    # An event of a daemon that is gone since is dropped; its disappearance updates the routes.
    assert watch.tick(2, {2816: "s"}, events=[2880]) == ([], [], True)


def test_a_daemon_whose_stream_ended_is_followed_again_and_a_failed_start_is_retried():
    watch = _watchdog.Watch(safety=30, retry=5)
    watch.tick(0, {2816: "s"})
    assert watch.tick(1, {2816: "s"}, ended=[2816]) == ([2816], [2816], True)
    watch.outcome(1, 2816, failed=True)
    assert watch.tick(3, {2816: "s"}) == ([], [], False)
    assert watch.tick(6, {2816: "s"}) == ([], [2816], False)
    watch.outcome(6, 2816, failed=False)
    assert watch.tick(12, {2816: "s"}) == ([], [], False)


def test_following_a_daemon_queues_its_events_and_says_when_it_ended():
    class Streams:
        def api_stream(self, socket_path, path):
            assert socket_path == "/var/run/rediacc/docker-2816.sock"
            assert path.startswith("/events?filters=") and "die" in path
            yield {"Type": "container", "Action": "die"}
            yield {"Type": "container", "Action": "start"}
            raise LockboxError("the stream broke")
    events, ended = queue.Queue(), queue.Queue()
    _watchdog.follow_events(Streams(), 2816, "/var/run/rediacc/docker-2816.sock", events, ended)
    assert [events.get_nowait(), events.get_nowait()] == [2816, 2816] and events.empty()
    assert ended.get_nowait() == 2816


def test_containers_left_stopped_say_why():
    exited = {"state": "exited", "exit_code": 1, "service": "flaky"}
    assert _watchdog._held_back(exited, {"stopped": ["flaky"]}, "always", 0).startswith("stopped on purpose")
    assert _watchdog._held_back(exited, {}, "on-failure:3", 3) == "on-failure:3: 3 restart(s) done, the limit"
    assert _watchdog._held_back(exited, {}, "on-failure:3", 2) is None
    assert _watchdog._held_back(exited, {}, "no", 0) is None
    assert _watchdog._held_back(dict(exited, state="running"), {"stopped": ["flaky"]}, "always", 0) is None


def test_a_container_left_stopped_is_reported_once_until_it_ran_again():
    left = {"id": "c1", "container": "p-keeper-1", "network_id": 2816, "left": "stopped on purpose"}
    started = {"container": "p-web-1", "network_id": 2816, "policy": "always"}
    shown, held = _watchdog.worth_reporting({}, [left, started])
    assert shown == [left, started]
    shown, held = _watchdog.worth_reporting(held, [left])
    assert shown == []
    shown, held = _watchdog.worth_reporting(held, [])  # a pass while it ran
    assert _watchdog.worth_reporting(held, [left])[0] == [left]
