"""Balancing and resilience: only ready instances get traffic; round-robin,
sticky hashing and p2c spread requests; backend connections are reused;
a killed instance, a scale-down and a drain lose no request; stats count it
all."""
import json
import os
import signal
import socket
import struct
import threading
import time

from conftest import SLOW, wait_for
from router_helpers import (ECHO, PYTHON, Load, conn, echo, echo_spec, get, header_values, request,
                            router_log_lines, stats)

HOST = "bal.test"


def deploy(daemon, n, balance=None, hash_on=None, state_dir=None, stop_timeout="5s",
           health="{http: /healthz, interval: 1s, timeout: 1s}"):
    extra = ""
    if balance:
        extra += f"    balance: {balance}\n"
    if hash_on:
        extra += f"    hash_on: \"{hash_on}\"\n"
    daemon.apply(echo_spec("bal", instances=n, routes=f"[{{host: {HOST}}}]", extra=extra,
                           state_dir=state_dir, stop_timeout=stop_timeout, health=health))
    ready = daemon.wait_ready("bal", n)
    # Every instance is in the routing table once each has answered through
    # the router (with hashing, for some key).
    seen = set()
    probe = iter(range(1_000_000))

    def all_seen():
        k = next(probe)
        doc = echo(daemon, "/", HOST, headers={"X-User": f"probe{k}", "Cookie": f"sid=probe{k}"})
        seen.add(doc["instance"])
        return len(seen) == n
    wait_for(all_seen, what=f"all {n} instances to get traffic")
    return ready


def spread(daemon, n, headers=None, path="/"):
    """n sequential requests on one keep-alive connection; requests per instance."""
    c = conn(daemon)
    counts = {}
    try:
        for _ in range(n):
            status, _, body = request(c, "GET", path, HOST, headers=headers)
            assert status == 200, body
            inst = json.loads(body)["instance"]
            counts[inst] = counts.get(inst, 0) + 1
    finally:
        c.close()
    return counts


def test_only_ready_instances_get_traffic(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    deploy(daemon, 2, state_dir=state,
           health="{http: /healthz, interval: 200ms, timeout: 500ms, unhealthy: 2}")
    assert set(spread(daemon, 40)) == {"bal.web.1", "bal.web.2"}
    # web.2 fails its checks, stays failing across restarts, and leaves the pool.
    (state / "bal.web.2.sick").write_text("")
    wait_for(lambda: [i for i in daemon.instances("bal") if i["id"] == "bal.web.2" and i["state"] != "ready"],
             what="web.2 to stop being ready")
    # The restarted process answers HTTP but is not ready: it must get nothing.
    wait_for(lambda: [i for i in daemon.instances("bal") if i["id"] == "bal.web.2" and i["state"] == "starting"],
             what="web.2 to be restarted")
    assert spread(daemon, 200) == {"bal.web.1": 200}
    # Healthy again: back in the pool.
    (state / "bal.web.2.sick").unlink()
    daemon.wait_ready("bal", 2)
    wait_for(lambda: "bal.web.2" in spread(daemon, 20), what="web.2 to get traffic again")


def test_an_instance_answering_5xx_is_ejected_for_a_while(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    # Active checks lift an ejection: keep them rare once ready.
    deploy(daemon, 2, balance="round-robin", state_dir=state,
           health="{http: /healthz, interval: 60s, timeout: 1s}")
    (state / "bal.web.2.fail").write_text("")
    c = conn(daemon)
    answers = []
    for _ in range(6):  # round-robin: web.2 gets three of them
        status, _, body = request(c, "GET", "/", HOST)
        answers.append(status)
    assert answers.count(500) == 3, answers
    # Three 5xx in a row: web.2 is out, web.1 takes everything.
    t0 = time.monotonic()
    for _ in range(20):
        status, _, body = request(c, "GET", "/", HOST)
        assert status == 200 and json.loads(body)["instance"] == "bal.web.1"
    assert time.monotonic() - t0 < 1.0, "too slow to observe a 1 s ejection"
    assert stats(daemon, "bal")["ejections"] == 1
    # The ejection ends: web.2 is tried again.
    (state / "bal.web.2.fail").unlink()
    wait_for(lambda: "bal.web.2" in spread(daemon, 4), timeout=5, what="web.2 back after its ejection")
    c.close()


def test_round_robin_spreads_evenly(daemon):
    deploy(daemon, 3, balance="round-robin")
    counts = spread(daemon, 300)
    assert sorted(counts) == ["bal.web.1", "bal.web.2", "bal.web.3"]
    assert max(counts.values()) - min(counts.values()) <= 2, counts


def test_hash_on_a_header_is_sticky_and_spreads_keys(daemon):
    deploy(daemon, 3, balance="hash", hash_on="header:X-User")
    owner = {}
    for k in range(30):
        got = spread(daemon, 8, headers={"X-User": f"user-{k}"})
        assert len(got) == 1, f"user-{k} moved between instances: {got}"
        owner[k] = next(iter(got))
    assert len(set(owner.values())) == 3, owner
    # A key sticks across connections too.
    for k in range(5):
        assert echo(daemon, "/", HOST, headers={"X-User": f"user-{k}"})["instance"] == owner[k]
    # Without the key, requests still spread.
    assert len(spread(daemon, 60)) >= 2


def test_hash_on_a_cookie_is_sticky(daemon):
    deploy(daemon, 3, balance="hash", hash_on="cookie:sid")
    owners = set()
    for k in range(30):
        got = spread(daemon, 5, headers={"Cookie": f"theme=dark; sid=s{k}; lang=en"})
        assert len(got) == 1, got
        owners |= set(got)
        # Only the named cookie counts.
        other = spread(daemon, 3, headers={"Cookie": f"sid=s{k}; theme=light{k}"})
        assert other == {next(iter(got)): 3}
        # Nor which of several Cookie headers carries it.
        c = conn(daemon)
        try:
            c.putrequest("GET", "/", skip_host=True)
            c.putheader("Host", HOST)
            c.putheader("Cookie", "theme=dark")
            c.putheader("Cookie", f"sid=s{k}")
            c.endheaders()
            assert json.loads(c.getresponse().read())["instance"] == next(iter(got))
        finally:
            c.close()
    assert len(owners) == 3


def test_p2c_spreads_across_instances(daemon):
    deploy(daemon, 3)
    counts = spread(daemon, 300)
    assert sorted(counts) == ["bal.web.1", "bal.web.2", "bal.web.3"]
    assert min(counts.values()) >= 50, counts
    # Under concurrency every instance gets a share, though not an even one
    # when the machine is busy: p2c rightly sends less to a slower instance.
    with Load(daemon, HOST, threads=6) as load:
        load.wait_requests(600)
    assert not load.failures, load.failures[:5]
    assert len(load.by_instance) == 3, load.by_instance


def test_backend_connections_are_pooled_and_reused(daemon):
    deploy(daemon, 1)
    with Load(daemon, HOST, threads=4) as load:
        load.wait_requests(500)
        # Counts are read with nothing in flight, so they match exactly.
        load.pause()
        before, start = stats(daemon, "bal")["router"], load.ok
        load.resume()
        load.wait_requests(10_000, timeout=60)
        load.pause()
        after, done = stats(daemon, "bal")["router"], load.ok - start
    assert not load.failures, load.failures[:5]
    opened = after["backend_connections_opened"] - before["backend_connections_opened"]
    reused = after["backend_connections_reused"] - before["backend_connections_reused"]
    # Fewer than one new backend connection per 10,000 requests at steady state.
    assert opened * 10_000 < done, (opened, done)
    assert reused == done, (reused, done)


def test_kill9_of_an_instance_under_load_fails_no_request(daemon):
    ready = deploy(daemon, 2)
    victim = [i for i in ready if i["id"] == "bal.web.1"][0]
    with Load(daemon, HOST, threads=6) as load:
        load.wait_requests(300)
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: [i for i in daemon.instances("bal")
                          if i["id"] == "bal.web.1" and i["state"] == "ready" and i["pid"] != victim["pid"]],
                 what="web.1 to come back")
        seen = load.by_instance.get("bal.web.1", 0)
        try:
            wait_for(lambda: load.by_instance.get("bal.web.1", 0) > seen + 10, timeout=15,
                     what="web.1 to get traffic again")
        except AssertionError:
            raise AssertionError(f"web.1 gets no traffic: {load.by_instance} {load.failures[:5]} "
                                 f"{daemon.instances('bal')}\n{daemon.read_log()[-3000:]}")
    assert load.failures == [], load.failures[:10]
    assert load.ok > 400


def test_scale_down_under_load_fails_no_request(daemon):
    deploy(daemon, 3)
    with Load(daemon, HOST, threads=6) as load:
        load.wait_requests(300)
        r = daemon.cli("scale", "bal", "web=1")
        assert r.returncode == 0, r.stderr
        daemon.wait_ready("bal", 1)
        load.wait_requests(300)
        # Up again and down again, still under load.
        assert daemon.cli("scale", "bal", "web=3").returncode == 0
        daemon.wait_ready("bal", 3)
        load.wait_requests(300)
        assert daemon.cli("scale", "bal", "web=2").returncode == 0
        daemon.wait_ready("bal", 2)
        load.wait_requests(300)
    assert load.failures == [], load.failures[:10]


def restart_under_load(daemon, n):
    before = {i["id"]: i["pid"] for i in deploy(daemon, n)}
    with Load(daemon, HOST, threads=6) as load:
        load.wait_requests(300)
        r = daemon.cli("restart", "bal")
        assert r.returncode == 0, r.stderr
        # Every instance runs a new process, all of them ready, and none
        # of the old processes is left.
        def restarted():
            now = daemon.instances("bal")
            return (len(now) == n and all(i["state"] == "ready" for i in now) and
                    not {i["pid"] for i in now} & set(before.values()))
        wait_for(restarted, timeout=60, what=f"all {n} instances to be replaced and ready")
        load.wait_requests(300)
    assert load.failures == [], load.failures[:10]
    events = daemon.ok("GET", "/v1/events?app=bal")["events"]
    assert any("restart finished" in (e.get("reason") or "") for e in events), events[-10:]


def test_restart_under_load_fails_no_request(daemon):
    restart_under_load(daemon, 2)


def test_restart_of_a_single_instance_under_load_fails_no_request(daemon):
    restart_under_load(daemon, 1)


def test_draining_lets_an_in_flight_request_finish_before_the_signal(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    deploy(daemon, 2, balance="hash", hash_on="header:X-User", state_dir=state, stop_timeout="10s")
    # A key that lands on web.2, the instance a scale to 1 stops.
    key = next(k for k in (f"u{n}" for n in range(200))
               if echo(daemon, "/", HOST, headers={"X-User": k})["instance"] == "bal.web.2")
    result = {}

    def slow():
        t0 = time.monotonic()
        status, _, body = get(daemon, "/slow?ms=2000", HOST, headers={"X-User": key}, timeout=20)
        result.update(status=status, body=body, took=time.monotonic() - t0)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: stats(daemon, "bal")["inflight"] == 1, what="the slow request to be in flight")
    scaled = time.time()
    assert daemon.cli("scale", "bal", "web=1").returncode == 0
    # web.2 stops getting new requests at once...
    wait_for(lambda: all(i["state"] != "ready" for i in daemon.instances("bal") if i["id"] == "bal.web.2"),
             what="web.2 to leave the ready set")
    for _ in range(20):
        assert echo(daemon, "/", HOST, headers={"X-User": key})["instance"] == "bal.web.1"
    t.join(timeout=20 * SLOW)
    # ...but finishes the one it has, and is signalled only afterwards.
    assert result["status"] == 200, result
    assert json.loads(result["body"])["instance"] == "bal.web.2" and result["took"] >= 1.9
    events = state / "bal.web.2.events"
    line = wait_for(lambda: events.exists() and events.read_text().strip(), what="web.2's SIGTERM")
    assert line.startswith("sigterm inflight=0"), line
    signalled = float(line.split("time=")[1])
    assert signalled >= scaled + 1.5, (signalled - scaled)
    daemon.wait_ready("bal", 1)


def settled_stats(daemon):
    """The app's stats once no request is in flight and the counts hold still
    (a worker counts a request just after writing its answer)."""
    last = {}

    def cond():
        st = stats(daemon, "bal")
        same = st["inflight"] == 0 and st["requests"] == last.get("requests")
        last.update(st)
        return st if same else None
    return wait_for(cond, interval=0.1, what="stats to settle")


def backend_lines(daemon, text):
    return [l for l in daemon.ok("GET", "/v1/apps/bal/logs?lines=10000")["lines"]
            if l["stream"] == "stdout" and l["line"] == text]


def test_stats_of_an_app_without_routes_are_zero(daemon):
    # The only app has no route, so the router has counted nothing at all.
    daemon.apply(echo_spec("quiet", routes="[]"))
    daemon.wait_ready("quiet", 1)
    st = stats(daemon, "quiet")
    assert st["requests"] == 0 and st["inflight"] == 0, st
    assert st["routes"] == [] and st["processes"] == {}, st
    assert set(st["status"].values()) == {0}, st


def test_stats_count_status_classes_and_retries(daemon):
    deploy(daemon, 2)
    for path, n in (("/", 5), ("/status/404", 2), ("/status/302", 1), ("/status/500", 1)):
        for _ in range(n):
            get(daemon, path, HOST)
    before = settled_stats(daemon)
    # An instance that resets the connection before answering: an idempotent
    # request is retried once, on the other instance.
    status, _, body = get(daemon, "/reset", HOST)
    assert status == 502, body
    saw = wait_for(lambda: (lambda ls: ls if len(ls) >= 2 else None)(backend_lines(daemon, "GET /reset")),
                   what="both instances to log the request")
    assert sorted(l["instance"] for l in saw) == ["bal.web.1", "bal.web.2"]
    # A POST with a body is not retried.
    status, _, _ = get(daemon, "/reset", HOST, method="POST", body=b"payload")
    assert status == 502
    wait_for(lambda: backend_lines(daemon, "POST /reset"), what="the POST")
    st = settled_stats(daemon)
    base_2xx = before["status"]["2xx"]
    assert st["status"]["2xx"] == base_2xx
    assert st["status"]["3xx"] == 1 and st["status"]["4xx"] == 2
    assert st["status"]["5xx"] == 3
    assert st["retries"] - before["retries"] == 1
    assert st["requests"] == base_2xx + 1 + 2 + 3
    assert st["inflight"] == 0
    route = [r for r in st["routes"] if r["route"] == f"{HOST}/"][0]
    assert route["status"] == st["status"] and st["processes"]["web"]["retries"] == st["retries"]
    lines = wait_for(lambda: (lambda ls: ls if len([l for l in ls if 'path="/reset"' in l]) == 2 else None)(
        router_log_lines(daemon, "bal")), what="the access log lines")
    resets = [l for l in lines if 'path="/reset"' in l]
    assert all("status=502" in l for l in resets)
    assert len([l for l in resets if "retried=1" in l]) == 1, resets
    assert len(backend_lines(daemon, "POST /reset")) == 1
    # The CLI shows the same numbers.
    r = daemon.cli("stats", "bal")
    assert r.returncode == 0, r.stderr
    total = [l for l in r.stdout.splitlines() if l.startswith("total")][0].split()
    assert total[1] == str(st["requests"])
    assert total[2] == f"{base_2xx}/1/2/3"
    assert total[6] == str(st["retries"])
    r = daemon.cli("stats", "bal", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == st["status"]
    # p50/p99 are the metrics' estimate over the same histogram: linear
    # within the bucket that holds the rank, the first bucket from 0.
    st = settled_stats(daemon)
    hist = st["latency_histogram"]
    for q, key in ((0.5, "p50_seconds"), (0.99, "p99_seconds")):
        rank, prev_le, prev_n = q * hist[-1]["count"], 0.0, 0
        for b in hist:
            if b["count"] >= rank:
                break
            prev_le, prev_n = b["le"], b["count"]
        want = prev_le + (b["le"] - prev_le) * (rank - prev_n) / (b["count"] - prev_n)
        assert abs(st[key] - want) < 1e-9, (key, st[key], want, hist)
    p50 = [l for l in daemon.cli("stats", "bal").stdout.splitlines() if l.startswith("total")][0].split()[4]
    assert p50 == (f"{st['p50_seconds']:.3g}s" if st["p50_seconds"] >= 1 else f"{st['p50_seconds'] * 1000:.3g}ms")


def test_connections_are_spread_evenly_over_the_workers(daemon):
    # The kernel hands each worker's SO_REUSEPORT listener the connections
    # that hash to it: out of 60, four workers would get anything from ~8
    # to ~22. A worker with two more than another hands a new one over.
    daemon.stop()
    daemon.start(extra=["--router-workers", "4"])
    deploy(daemon, 1)
    base = stats(daemon, "bal")["router"]
    assert base["workers"] == 4
    conns = []
    try:
        for _ in range(60):
            c = conn(daemon)
            status, _, body = request(c, "GET", "/", HOST)
            assert status == 200, body
            conns.append(c)
        rt = stats(daemon, "bal")["router"]
        per = rt["client_connections_per_worker"]
        assert sum(per) == 60 and rt["client_connections"] == 60, rt
        assert max(per) - min(per) <= 2, per
        assert rt["connections_moved"] > base["connections_moved"], rt
        # A connection served by another worker than the one that accepted
        # it works like any other, keep-alive and all, with the right client.
        for c in conns:
            status, _, body = request(c, "GET", "/", HOST)
            assert status == 200
            assert header_values(json.loads(body), "X-Forwarded-For") == ["127.0.0.1"]
        # The same counts on /metrics (sampled each second), one series per worker.
        def sampled():
            status, text = daemon.request("GET", "/metrics")
            assert status == 200
            text = text.decode() if isinstance(text, bytes) else str(text)
            return {l.split()[0]: float(l.split()[1]) for l in text.splitlines()
                    if l.startswith("paasops_router_client_connections{")}
        series = wait_for(lambda: (lambda m: m if sum(m.values()) == 60 else None)(sampled()),
                          what="the connection gauges to be sampled")
        assert sorted(series) == [f'paasops_router_client_connections{{worker="{k}"}}' for k in range(4)]
        assert max(series.values()) - min(series.values()) <= 2, series
    finally:
        for c in conns:
            c.close()
    # Closed connections leave the counts of the workers that served them.
    wait_for(lambda: stats(daemon, "bal")["router"]["client_connections_per_worker"] == [0, 0, 0, 0],
             what="every worker's connection count to drop to 0")


def test_out_of_file_descriptors_the_router_pauses_and_recovers(daemon):
    # With few descriptors left, connections beyond them wait in the
    # listen backlog; the router says so in its log (once per worker), keeps its open
    # connections working, and accepts again when descriptors come back.
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
    daemon.stop()
    daemon.start(preexec_fn=low_limit)
    deploy(daemon, 1)
    first = conn(daemon)
    assert request(first, "GET", "/", HOST)[0] == 200
    used = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
    socks = []
    try:
        import socket
        for _ in range(160 - used + 40):
            s = socket.create_connection(("127.0.0.1", daemon.http_port), timeout=5)
            socks.append(s)
        wait_for(lambda: "cannot accept a connection" in daemon.read_log(),
                 what="the router to log that it cannot accept")
        # Once per worker, not once per try (it tries again every 100 ms).
        time.sleep(0.5)  # let several retries pass: none may log again
        assert 1 <= daemon.read_log().count("cannot accept a connection") <= 64
        # The connection opened before still works.
        status, _, body = request(first, "GET", "/", HOST)
        assert status == 200, body
    finally:
        for s in socks:
            s.close()
    first.close()
    # Descriptors are back: new connections are accepted and served.
    wait_for(lambda: get(daemon, "/", HOST)[0] == 200, what="the router to serve again")
    workers = stats(daemon, "bal")["router"]["workers"]
    assert daemon.read_log().count("cannot accept a connection") <= workers
    wait_for(lambda: stats(daemon, "bal")["router"]["client_connections"] == 0,
             what="every connection to be closed")


def test_a_request_outliving_its_stopped_instance_is_retried_on_one_still_routed(daemon, tmp_path):
    """A slow GET on an instance stopped under it (stop_timeout passes, the
    instance exits) is retried on an instance of the current routing table,
    never on one stopped since the request began."""
    state = tmp_path / "state"
    state.mkdir()
    deploy(daemon, 3, balance="round-robin", state_dir=state, stop_timeout="1s")
    results = []

    def slow():
        results.append(get(daemon, "/slow?ms=2500", HOST, timeout=30))

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: stats(daemon, "bal")["inflight"] == 3, what="three slow requests in flight")
    assert daemon.cli("scale", "bal", "web=1").returncode == 0
    for t in threads:
        t.join(timeout=30 * SLOW)
    assert len(results) == 3
    for status, _, body in results:
        assert status == 200, body
        assert json.loads(body)["instance"] == "bal.web.1"
    # Two of them were cut by their instance's exit and retried.
    assert len([l for l in (state / f"bal.web.{k}.events" for k in (2, 3)) if l.exists()]) == 2
    assert settled_stats(daemon)["retries"] >= 2


def test_a_post_whose_connection_is_refused_is_sent_to_another_instance(daemon, tmp_path):
    """No byte reached the refusing instance, so even a POST with a body
    goes to the other one, once."""
    script = tmp_path / "half.sh"
    script.write_text(f'#!/bin/sh\n[ "$PAASOPS_INSTANCE" = post.web.1 ] && exec sleep 1000\n'
                      f'exec {PYTHON} {ECHO}\n')
    script.chmod(0o755)
    daemon.apply(f"""app: post
processes:
  web:
    command: {script}
    instances: 2
    balance: round-robin
    health: {{cmd: "true", interval: 1s}}
    routes: [{{host: post.test}}]
""")
    daemon.wait_ready("post", 2)
    for k in range(4):
        status, _, body = get(daemon, f"/order-{k}", "post.test", method="POST", body=b"order=%d" % k)
        assert status == 200, body
        doc = json.loads(body)
        assert doc["instance"] == "post.web.2" and doc["body"] == f"order={k}"
    lines = [l["line"] for l in daemon.ok("GET", "/v1/apps/post/logs?lines=1000")["lines"]
             if l["stream"] == "stdout" and l["line"].startswith("POST /order-")]
    assert sorted(lines) == [f"POST /order-{k}" for k in range(4)]
    st = stats(daemon, "post")
    assert st["retries"] >= 2 and st["connect_errors"] >= 2, st


def test_a_stale_pooled_connection_is_retried_on_a_new_one(daemon, tmp_path):
    """An instance that drops a kept-alive connection just as a request
    comes (its keep-alive timeout) costs the request nothing, even with no
    other instance to go to."""
    state = tmp_path / "state"
    state.mkdir()
    deploy(daemon, 1, state_dir=state)
    for _ in range(5):
        echo(daemon, "/warm", HOST)
    before = settled_stats(daemon)["retries"]
    (state / "bal.web.1.stale").write_text("")
    try:
        doc = echo(daemon, "/after-stale", HOST)
        assert doc["instance"] == "bal.web.1"
    finally:
        (state / "bal.web.1.stale").unlink()
    assert settled_stats(daemon)["retries"] == before + 1
    assert len(backend_lines(daemon, "GET /after-stale")) == 1


def test_a_client_that_resets_before_its_answer_is_logged_499(daemon):
    deploy(daemon, 1)
    before = settled_stats(daemon)
    s = socket.create_connection(("127.0.0.1", daemon.http_port), timeout=10 * SLOW)
    s.sendall(f"GET /slow?ms=2000 HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: gone-1\r\n\r\n".encode())
    wait_for(lambda: stats(daemon, "bal")["inflight"] == 1, what="the slow request in flight")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    line = wait_for(lambda: next((l for l in router_log_lines(daemon, "bal") if "request_id=gone-1" in l), None),
                    what="the access log line")
    assert " status=499 " in line, line
    st = settled_stats(daemon)
    assert st["status"]["4xx"] == before["status"]["4xx"] + 1
    assert st["status"]["2xx"] == before["status"]["2xx"]
