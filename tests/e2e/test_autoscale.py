"""The autoscaler against the real daemon: a process type with `autoscale`
in its spec is scaled up under load through the router (at once, in panic,
when a burst reaches twice the target), back down once the load has gone,
the panic has calmed and the scale-down delay has passed, never outside
[min, max], and not at all while its app is stopped; a process type scaled
to zero wakes on a request; a pending scale-down and the last scale survive
a daemon restart. Every wait is a bounded wait for a condition; the daemon
evaluates every second (the default) over a 4 s stable window (so a 1 s
panic window) and scales down after 3 s."""
import datetime
import os
import re
import sqlite3
import time

import pytest

from conftest import SLOW, Daemon, wait_for
from router_helpers import Load, echo_spec, get, wait_routed

DAEMON_FLAGS = ["--autoscale-stable-window", "4s", "--autoscale-scale-down-delay", "3s"]


def autoscaled(app, host, autoscale, instances=1):
    return echo_spec(app, instances=instances, routes=f"[{{host: {host}}}]",
                     extra=f"    autoscale: {autoscale}\n")


def web(daemon, app):
    """The app's web process as GET /v1/apps/NAME shows it."""
    doc = daemon.ok("GET", f"/v1/apps/{app}")
    return [p for p in doc["processes"] if p["name"] == "web"][0]


def autoscale_events(daemon, app):
    return [e for e in daemon.events(app) if e["type"] == "autoscale"]


SCALE = re.compile(r"^web \d+ -> \d+: ")


def scale_events(daemon, app):
    """The autoscale events that changed the count (not the panic ones)."""
    return [e for e in autoscale_events(daemon, app) if SCALE.match(e["reason"])]


def panic_events(daemon, app):
    return [e for e in autoscale_events(daemon, app) if " panic" in e["reason"]
            and not SCALE.match(e["reason"])]


def event_time(e):
    """An event's time as epoch seconds."""
    return datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def iso_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def metrics_text(daemon):
    status, text = daemon.request("GET", "/metrics")
    assert status == 200
    return text.decode() if isinstance(text, bytes) else str(text)


def wait_count(daemon, app, n, timeout):
    """Waits until web wants n instances and all n are ready."""
    return wait_for(lambda: (lambda p: p if p["instances"] == n and p["ready"] == n else None)(
        web(daemon, app)), timeout=timeout, what=f"{app} web at {n} ready instances")


def test_inflight_load_scales_up_to_max_then_back_to_min(daemon):
    daemon.apply(autoscaled("busy", "busy.test", "{min: 1, max: 3, metric: inflight, target: 2}"))
    daemon.wait_ready("busy", 1)
    wait_routed(daemon, "busy.test")
    status = web(daemon, "busy")["autoscale"]
    assert (status["min"], status["max"], status["metric"], status["target"]) == (1, 3, "inflight", 2)

    # ~8 requests always in flight, each 400 ms: 8 per instance at 1 instance.
    with Load(daemon, "busy.test", threads=8, path="/slow?ms=400") as load:
        wait_count(daemon, "busy", 3, timeout=60)
        # The new instances take traffic too, and nothing failed meanwhile.
        wait_for(lambda: len(load.by_instance) == 3, timeout=30, what="all 3 instances to answer")
    assert not load.failures, load.failures[:5]
    ups = scale_events(daemon, "busy")
    assert ups, daemon.events("busy")
    assert ups[0]["reason"].startswith("web 1 -> "), ups[0]
    assert "inflight" in ups[0]["reason"] and "above target 2" in ups[0]["reason"], ups[0]
    status = web(daemon, "busy")["autoscale"]
    assert status["last_scaled_at"], status

    # Idle: after the delay it steps down to min, and no lower.
    wait_count(daemon, "busy", 1, timeout=60)
    down = scale_events(daemon, "busy")[-1]
    assert " -> 1: " in down["reason"], down  # perhaps by way of 2, as the load drained
    assert "below target" in down["reason"], down
    wait_for(lambda: (lambda a: a if a["desired"] == 1 and a["current_value"] == 0 else None)(
        web(daemon, "busy")["autoscale"]), timeout=20, what="an idle evaluation wanting min")
    assert web(daemon, "busy")["instances"] == 1

    # The CLI shows the range, the metric and the target beside the count.
    out = daemon.cli("apps")
    assert out.returncode == 0, out.stderr
    assert "web=1(auto 1-3 inflight 0/2)" in out.stdout, out.stdout


def test_rps_load_scales_up_and_is_exposed_on_metrics(daemon):
    daemon.apply(autoscaled("rate", "rate.test", "{min: 1, max: 2, metric: rps, target: 5}"))
    daemon.wait_ready("rate", 1)
    wait_routed(daemon, "rate.test")
    with Load(daemon, "rate.test", threads=2) as load:
        wait_count(daemon, "rate", 2, timeout=60)
    assert not load.failures, load.failures[:5]
    up = scale_events(daemon, "rate")[0]
    assert up["reason"].startswith("web 1 -> 2: rps "), up
    assert "/instance above target 5" in up["reason"], up
    status, text = daemon.request("GET", "/metrics")
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert status == 200
    assert 'paasops_autoscale_desired_instances{app="rate",process="web"}' in text, text[:2000]
    assert 'paasops_autoscale_value{app="rate",process="web",metric="rps"}' in text, text[:2000]


def test_min_is_respected_and_a_manual_scale_is_the_new_starting_point(daemon):
    # Started below min: the first evaluation brings it up to min.
    daemon.apply(autoscaled("floor", "floor.test", "{min: 2, max: 4, metric: inflight, target: 5}"))
    wait_count(daemon, "floor", 2, timeout=60)
    ev = autoscale_events(daemon, "floor")
    assert ev and ev[0]["reason"] == "web 1 -> 2: below min 2", ev
    # Scaled by hand above what is needed: allowed; it comes back to min
    # after the delay, never lower.
    daemon.ok("POST", "/v1/apps/floor/scale", {"processes": {"web": 4}})
    wait_count(daemon, "floor", 4, timeout=60)
    wait_count(daemon, "floor", 2, timeout=60)
    assert scale_events(daemon, "floor")[-1]["reason"].startswith("web 4 -> 2: inflight 0/instance below target 5")
    wait_for(lambda: web(daemon, "floor")["autoscale"]["desired"] == 2, timeout=20,
             what="desired to stay at min")
    assert web(daemon, "floor")["instances"] == 2


def test_a_stopped_app_is_not_scaled(daemon):
    # Parked: applied without autoscale, stopped, then given an autoscale
    # whose min it is below.
    daemon.apply(echo_spec("parked", instances=1, routes="[{host: parked.test}]"))
    daemon.wait_ready("parked", 1)
    daemon.ok("POST", "/v1/apps/parked/stop", {})
    wait_for(lambda: web(daemon, "parked")["running"] == 0, timeout=30, what="parked to stop")
    daemon.apply(autoscaled("parked", "parked.test", "{min: 2, max: 3, metric: inflight, target: 2}"))
    wait_for(lambda: not daemon.ok("GET", "/v1/apps/parked")["rolling_out"], timeout=30,
             what="the apply of a stopped app to finish")
    # A running app evaluated in the same ticks gets scaled to its min ...
    daemon.apply(autoscaled("live", "live.test", "{min: 2, max: 3, metric: inflight, target: 2}"))
    wait_count(daemon, "live", 2, timeout=60)
    # ... and one tick later, the stopped one still is not.
    seen = len(daemon.events("live"))
    daemon.ok("POST", "/v1/apps/live/scale", {"processes": {"web": 1}})
    wait_count(daemon, "live", 2, timeout=60)
    assert len(daemon.events("live")) > seen
    p = web(daemon, "parked")
    assert p["instances"] == 1 and p["running"] == 0, p
    assert not autoscale_events(daemon, "parked"), daemon.events("parked")


def test_cpu_and_memory_are_read_from_the_instances_samples(daemon):
    daemon.apply(autoscaled("cores", "cores.test", "{min: 1, max: 2, metric: cpu, target: 0.9}"))
    daemon.apply(autoscaled("bytes", "bytes.test", "{min: 1, max: 2, metric: memory, target: 4294967296}"))
    daemon.wait_ready("cores", 1)
    daemon.wait_ready("bytes", 1)
    # An idle echo server: a little CPU, some MB resident; neither is scaled.
    cores = wait_for(lambda: (lambda a: a if a["current_value"] is not None else None)(
        web(daemon, "cores")["autoscale"]), timeout=30, what="a cpu value")
    assert 0 <= cores["current_value"] < 0.9 and cores["desired"] == 1, cores
    mem = wait_for(lambda: (lambda a: a if a["current_value"] is not None else None)(
        web(daemon, "bytes")["autoscale"]), timeout=30, what="a memory value")
    assert 1 << 20 < mem["current_value"] < 1 << 30 and mem["desired"] == 1, mem
    assert mem["metric"] == "memory" and mem["target"] == 4 << 30, mem


def test_a_burst_at_twice_the_target_panics_scales_up_at_once_and_holds_until_calm(daemon):
    daemon.apply(autoscaled("burst", "burst.test", "{min: 1, max: 4, metric: inflight, target: 2}"))
    daemon.wait_ready("burst", 1)
    wait_routed(daemon, "burst.test")
    assert web(daemon, "burst")["autoscale"]["panic"] is False

    # 8 in flight against 2 at 1 instance: 4x the target over the 1 s panic
    # window. Panic asks for 8 / 2 = 4 instances at once.
    with Load(daemon, "burst.test", threads=8, path="/slow?ms=400") as load:
        began = time.time()
        entered = wait_for(lambda: panic_events(daemon, "burst"), timeout=5,
                           what="the autoscaler to enter panic")[0]
        assert entered["reason"].startswith("web entered panic: inflight "), entered
        assert "over 1s is at least 2x target 2" in entered["reason"], entered
        up = wait_for(lambda: scale_events(daemon, "burst"), timeout=5, what="a scale-up")[0]
        assert up["reason"].startswith("web 1 -> 4: inflight "), up
        assert "(panic, over 1s)" in up["reason"], up
        assert event_time(up) - began < 5 * SLOW, (up, began)
        status = web(daemon, "burst")["autoscale"]
        assert status["panic"] is True and status["panic_since"], status
        assert abs(iso_time(status["panic_since"]) - event_time(entered)) < 1, (status, entered)
        assert 'paasops_autoscale_panic{app="burst",process="web"} 1' in metrics_text(daemon)
        out = daemon.cli("apps")
        assert out.returncode == 0, out.stderr
        assert re.search(r"web=4\(auto 1-4 inflight [0-9.]+/2 panic\)", out.stdout), out.stdout
        wait_count(daemon, "burst", 4, timeout=30)
        wait_for(lambda: len(load.by_instance) == 4, timeout=30, what="all 4 instances to answer")
    assert not load.failures, load.failures[:5]

    # Idle now: the count holds for as long as the panic lasts (a whole 4 s
    # stable window below the threshold), whatever the windows want.
    def calm():
        p = web(daemon, "burst")
        assert p["instances"] == 4, p
        return not p["autoscale"]["panic"]
    wait_for(calm, timeout=30, interval=0.2, what="the panic to end")
    left = panic_events(daemon, "burst")[-1]
    assert left["reason"] == "web left panic: inflight over 1s stayed below 2x target 2 for 4s", left
    assert 'paasops_autoscale_panic{app="burst",process="web"} 0' in metrics_text(daemon)
    # Then the ordinary way down: after the scale-down delay, to min.
    wait_count(daemon, "burst", 1, timeout=30)
    down = scale_events(daemon, "burst")[-1]
    assert down["reason"].startswith("web 4 -> 1: inflight 0/instance below target 2 for 3s"), down
    # The delay is counted from the tick that left panic, whose event is
    # stamped a moment after the tick itself: allow that moment.
    assert down["id"] > left["id"] and event_time(down) - event_time(left) >= 3 - 0.05, (left, down)


def test_panic_threshold_from_the_spec_raises_the_line(daemon):
    daemon.apply(autoscaled("steady", "steady.test",
                            "{min: 1, max: 4, metric: inflight, target: 2, panic_threshold: 5}"))
    daemon.wait_ready("steady", 1)
    wait_routed(daemon, "steady.test")
    assert web(daemon, "steady")["autoscale"]["panic_threshold"] == 5
    # 8 in flight against 2 at 1 instance: 4x the target, which panics at
    # the default 2x (the test above) but not under 5x: the stable window
    # scales it up instead.
    with Load(daemon, "steady.test", threads=8, path="/slow?ms=400") as load:
        up = wait_for(lambda: scale_events(daemon, "steady"), timeout=30, what="a scale-up")[0]
        assert up["reason"].startswith("web 1 -> "), up
        assert "panic" not in up["reason"], up
        assert web(daemon, "steady")["autoscale"]["panic"] is False
    assert not load.failures, load.failures[:5]
    assert not panic_events(daemon, "steady"), autoscale_events(daemon, "steady")


def test_p95_above_the_target_scales_up(daemon):
    daemon.apply(autoscaled("lat", "lat.test", "{min: 1, max: 2, metric: p95, target: 0.1}"))
    daemon.wait_ready("lat", 1)
    wait_routed(daemon, "lat.test")
    # Every request takes 300 ms: a p95 of 3x the 100 ms target.
    with Load(daemon, "lat.test", threads=2, path="/slow?ms=300") as load:
        wait_count(daemon, "lat", 2, timeout=30)
    assert not load.failures, load.failures[:5]
    up = scale_events(daemon, "lat")[0]
    assert up["reason"].startswith("web 1 -> 2: p95 "), up
    assert "/instance above target 0.1" in up["reason"], up
    value = float(up["reason"].split("p95 ")[1].split("/")[0])
    assert 0.25 <= value <= 1, up
    assert 'paasops_autoscale_value{app="lat",process="web",metric="p95"}' in metrics_text(daemon)


def test_a_process_type_scaled_to_zero_wakes_on_a_request(daemon):
    daemon.apply(autoscaled("nap", "nap.test", "{min: 0, max: 2, metric: rps, target: 50}",
                            instances=0))
    wait_for(lambda: web(daemon, "nap")["autoscale"]["desired"] is None, timeout=5,
             what="the autoscaler to know nap")
    assert web(daemon, "nap")["instances"] == 0
    # Nothing is ready: the router answers 503 at once; the request counts
    # as demand, and the next evaluation starts an instance.
    status, _, body = get(daemon, "/", "nap.test")
    assert status == 503, (status, body)
    assert b"no ready instance" in body, body
    wait_count(daemon, "nap", 1, timeout=15)
    wake = scale_events(daemon, "nap")[0]
    assert re.match(r"web 0 -> 1: \d+ requests while scaled to zero$", wake["reason"]), wake
    assert wait_routed(daemon, "nap.test")["instance"].startswith("nap.web.")
    # Idle again: back to zero after the scale-down delay.
    wait_count(daemon, "nap", 0, timeout=30)
    assert scale_events(daemon, "nap")[-1]["reason"].startswith("web 1 -> 0: rps 0/instance below")


@pytest.fixture
def slow_down_daemon(tmp_path):
    """A daemon whose scale-down delay (12 s) leaves time to restart it
    while a scale-down is pending; stopped at the end like `daemon`."""
    d = Daemon(tmp_path)
    d.flags = ["--autoscale-stable-window", "2s", "--autoscale-scale-down-delay", "12s"]
    d.start(extra=d.flags)
    yield d
    if d.proc.poll() is None:
        d.instances()
        assert d.stop() == 0, d.read_log()


def autoscale_rows(d):
    db = sqlite3.connect(f"file:{os.path.join(d.data, 'state.db')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT app, process FROM autoscale ORDER BY app, process").fetchall()
    finally:
        db.close()


def test_a_pending_scale_down_keeps_its_clock_across_a_daemon_restart(slow_down_daemon):
    d = slow_down_daemon
    d.apply(autoscaled("keep", "keep.test", "{min: 2, max: 3, metric: inflight, target: 5}"))
    wait_count(d, "keep", 2, timeout=30)  # brought up to min: the autoscaler's own scale
    last = web(d, "keep")["autoscale"]["last_scaled_at"]
    assert last, web(d, "keep")
    # Scaled by hand above need: a scale-down to 2 is pending from then on.
    d.ok("POST", "/v1/apps/keep/scale", {"processes": {"web": 3}})
    wait_count(d, "keep", 3, timeout=30)
    pending = wait_for(lambda: (lambda a: a if a["scale_down_since"] else None)(
        web(d, "keep")["autoscale"]), timeout=10, what="a pending scale-down")
    assert pending["scale_down_to"] == 2, pending
    since = iso_time(pending["scale_down_since"])
    # Well into the delay, and still pending.
    wait_for(lambda: time.time() - since >= 5, timeout=10, what="5 s into the delay")
    assert web(d, "keep")["autoscale"]["scale_down_since"] == pending["scale_down_since"]
    assert web(d, "keep")["instances"] == 3

    assert d.stop() == 0, d.read_log()
    d.start(extra=d.flags)
    status = web(d, "keep")["autoscale"]
    assert status["last_scaled_at"] == last, status
    assert status["scale_down_since"] == pending["scale_down_since"], status
    assert status["scale_down_to"] == 2, status
    # It fires on the original clock: not before 12 s from `since`, and long
    # before 12 s from the restart would have.
    wait_count(d, "keep", 2, timeout=30)
    down = scale_events(d, "keep")[-1]
    assert down["reason"].startswith("web 3 -> 2: inflight 0/instance below target 5 for 12s"), down
    assert since + 12 <= event_time(down) < since + 15, (since, down)
    assert web(d, "keep")["autoscale"]["scale_down_since"] is None

    # The saved state goes with the autoscale key, and with the app.
    d.apply(autoscaled("gone", "gone.test", "{min: 2, max: 3, metric: inflight, target: 5}"))
    wait_for(lambda: ("gone", "web") in autoscale_rows(d), timeout=10, what="a row for gone")
    assert ("keep", "web") in autoscale_rows(d)
    d.apply(echo_spec("keep", instances=2, routes="[{host: keep.test}]"))
    wait_for(lambda: ("keep", "web") not in autoscale_rows(d), timeout=10,
             what="keep's row to go with its autoscale key")
    d.ok("DELETE", "/v1/apps/gone")
    wait_for(lambda: ("gone", "web") not in autoscale_rows(d), timeout=10,
             what="gone's row to go with the app")
