"""The supervisor through the real daemon: spawning, readiness, restarts with
backoff, crash loops, health checks, stop semantics, scale, output capture."""
import os
import signal
import time
import urllib.request

from conftest import HELLO, hello_spec, pid_alive, wait_for


def get(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.read().decode()


def state_events(d, instance):
    return [e for e in d.events(instance.split(".")[0]) if e["instance"] == instance and e["type"] == "state"]


def test_apply_starts_instances_that_serve_on_their_port(daemon):
    doc = daemon.apply(hello_spec())
    assert doc["created"] is True
    ready = daemon.wait_ready("hello", 2)
    ports = {i["port"] for i in ready}
    assert len(ports) == 2
    for i in ready:
        assert daemon.ports[0] <= i["port"] <= daemon.ports[1]
        status, body = get(i["port"])
        assert status == 200 and f"hello from {i['id']}" in body


def test_instance_gets_port_host_env_and_identity(daemon, tmp_path):
    spec = f"""app: envy
env: {{GREETING: hi, SHARED: app}}
processes:
  worker:
    command: echo "port=$PORT host=$HOST g=$GREETING s=$SHARED id=$PAASOPS_INSTANCE"; exec sleep 1000
    env: {{SHARED: proc}}
"""
    daemon.apply(spec)
    daemon.wait_ready("envy", 1)
    inst = daemon.instances("envy")[0]
    line = wait_for(lambda: [l for l in daemon.ok("GET", "/v1/apps/envy/logs")["lines"] if "port=" in l["line"]],
                    what="env line")[0]["line"]
    assert line == f"port={inst['port']} host=127.0.0.1 g=hi s=proc id=envy.worker.1"


def test_kill9_instance_is_respawned_and_events_record_it(daemon):
    daemon.apply(hello_spec(instances=1))
    first = daemon.wait_ready("hello", 1)[0]
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_for(lambda: [i for i in daemon.instances("hello")
                               if i["state"] == "ready" and i["pid"] != first["pid"]],
                      what="a new ready process")[0]
    assert second["restarts"] == 1
    assert get(second["port"])[0] == 200
    evs = state_events(daemon, "hello.web.1")
    exited = [e for e in evs if e["state"] == "exited"]
    assert exited and exited[-1]["signal"] == 9 and exited[-1]["pid"] == first["pid"]
    assert "killed by signal 9" in exited[-1]["reason"]


def test_repeated_crashes_back_off_then_crash_loop_stops_restarts(daemon):
    spec = """app: crashy
processes:
  web:
    command: echo starting; exit 3
"""
    daemon.apply(spec)
    inst = daemon.wait_state("crashy.web.1", "crashed", timeout=20)
    assert "5 starts within 10s" in inst["reason"]
    assert inst["exit_status"] == 3
    evs = state_events(daemon, "crashy.web.1")
    starts = [e for e in evs if e["state"] == "starting"]
    assert len(starts) == 5
    backoffs = [e["reason"] for e in evs if e["state"] == "backoff"]
    # 100 ms doubling: the delays grow.
    assert any("restarting in 100ms" in r for r in backoffs)
    assert any("restarting in 200ms" in r for r in backoffs)
    # No more starts once crashed.
    time.sleep(0.5)
    assert len([e for e in state_events(daemon, "crashy.web.1") if e["state"] == "starting"]) == 5
    # An explicit restart clears the crash loop and tries again.
    r = daemon.cli("restart", "crashy")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len([e for e in state_events(daemon, "crashy.web.1") if e["state"] == "starting"]) > 5,
             what="a fresh start after restart")


def test_unhealthy_instance_is_restarted(daemon):
    daemon.apply(hello_spec(instances=1, health="{http: /healthz, interval: 200ms, timeout: 500ms, unhealthy: 2}"))
    first = daemon.wait_ready("hello", 1)[0]
    get(first["port"], "/sick")
    wait_for(lambda: any(e["state"] == "unhealthy" for e in state_events(daemon, "hello.web.1")),
             what="unhealthy event")
    second = wait_for(lambda: [i for i in daemon.instances("hello")
                               if i["state"] == "ready" and i["pid"] != first["pid"]],
                      what="replacement")[0]
    assert get(second["port"], "/healthz")[0] == 200
    ev = [e for e in state_events(daemon, "hello.web.1") if e["state"] == "unhealthy"][0]
    assert "health check failed 2 times" in ev["reason"] and "503" in ev["reason"]


def test_instance_that_never_passes_its_check_is_restarted_at_the_boot_deadline(daemon):
    spec = """app: mute
processes:
  web:
    command: sleep 1000
    health: {tcp: true, interval: 1s, boot_deadline: 1s}
    stop_timeout: 1s
"""
    daemon.apply(spec)
    first = wait_for(lambda: [i for i in daemon.instances("mute") if i["pid"]], what="start")[0]
    wait_for(lambda: any("did not pass within 1s" in (e["reason"] or "")
                         for e in state_events(daemon, "mute.web.1")), what="boot deadline event")
    wait_for(lambda: [i for i in daemon.instances("mute") if i["pid"] and i["pid"] != first["pid"]],
             what="a new process after the deadline")
    assert not pid_alive(first["pid"])


def test_command_health_check(daemon, tmp_path):
    flag = tmp_path / "healthy"
    spec = f"""app: cmdcheck
processes:
  web:
    command: sleep 1000
    health: {{cmd: "test -e {flag}", interval: 200ms}}
"""
    daemon.apply(spec)
    time.sleep(0.6)
    assert daemon.instances("cmdcheck")[0]["state"] == "starting"
    flag.write_text("")
    daemon.wait_ready("cmdcheck", 1)


def test_restart_policies(daemon):
    spec = """app: pol
processes:
  once:
    command: exit 0
    restart: on-failure
  never:
    command: exit 4
    restart: never
"""
    daemon.apply(spec)
    a = daemon.wait_state("pol.once.1", "exited")
    b = daemon.wait_state("pol.never.1", "exited")
    assert a["exit_status"] == 0 and b["exit_status"] == 4
    time.sleep(0.4)
    for iid in ("pol.once.1", "pol.never.1"):
        assert len([e for e in state_events(daemon, iid) if e["state"] == "starting"]) == 1


def test_scale_up_and_down(daemon):
    daemon.apply(hello_spec(instances=1))
    daemon.wait_ready("hello", 1)
    r = daemon.cli("scale", "hello", "web=3")
    assert r.returncode == 0, r.stderr
    three = daemon.wait_ready("hello", 3)
    assert sorted(i["id"] for i in three) == ["hello.web.1", "hello.web.2", "hello.web.3"]
    r = daemon.cli("scale", "hello", "web=1")
    assert r.returncode == 0, r.stderr
    one = daemon.wait_ready("hello", 1)
    assert one[0]["id"] == "hello.web.1"
    gone = [i["pid"] for i in three if i["id"] != "hello.web.1"]
    wait_for(lambda: not any(pid_alive(p) for p in gone), what="scaled-down processes to exit")


def test_a_stopped_process_type_is_not_counted_as_wanted(daemon):
    daemon.apply(hello_spec(instances=2, extra="""  worker:
    command: sleep 1000
    instances: 2
"""))
    daemon.wait_ready("hello", 4)
    assert daemon.cli("stop", "hello", "worker").returncode == 0
    wait_for(lambda: all(i["state"] == "stopped" for i in daemon.instances("hello") if ".worker." in i["id"]),
             what="the workers to stop")
    row = [l for l in daemon.cli("apps").stdout.splitlines() if l.startswith("hello ")][0]
    assert row.split() == ["hello", "web=2", "worker=stopped", "2/2", "running"], row
    r = daemon.cli("top", "--once")
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.split()[:1] == ["hello"]][0]
    assert "2/2" in line and "running" in line and "degraded" not in line, line


def test_restart_of_what_is_stopped_is_refused(daemon):
    daemon.apply(hello_spec(instances=1, extra="""  worker:
    command: sleep 1000
"""))
    daemon.wait_ready("hello", 2)
    assert daemon.cli("stop", "hello", "worker").returncode == 0
    r = daemon.cli("restart", "hello", "worker")
    assert r.returncode == 1, r
    assert "process type 'worker' of app 'hello' is stopped; start it with paasops start hello worker" in r.stderr
    assert daemon.cli("stop", "hello").returncode == 0
    wait_for(lambda: all(i["state"] == "stopped" for i in daemon.instances("hello")),
             what="every instance to stop")
    before = len(daemon.events("hello"))
    r = daemon.cli("restart", "hello")
    assert r.returncode == 1 and "app 'hello' is stopped; start it with paasops start hello" in r.stderr, r
    status, doc = daemon.request("POST", "/v1/apps/hello/restart", {})
    assert status == 409 and doc["error"]["code"] == "conflict", (status, doc)
    assert len(daemon.events("hello")) == before  # nothing recorded, nothing done


def test_a_start_that_cannot_spawn_backs_off_without_state_errors(daemon):
    # An environment larger than the kernel takes for one string: E2BIG.
    daemon.apply(f"""app: big
env: {{HUGE: "{'x' * 200000}"}}
processes:
  web:
    command: sleep 1000
""")
    wait_for(lambda: len([e for e in state_events(daemon, "big.web.1") if e["state"] == "backoff"]) >= 2,
             timeout=20, what="two backoffs")
    assert "refused transition" not in daemon.read_log()


def test_output_after_a_scaled_down_slot_is_gone_is_dropped(daemon):
    # A process that left its instance's group keeps the output pipe open
    # and writes after the leader exited and the slot was removed: the
    # daemon drops those lines (before, it wrote them into the freed slot).
    spec = """app: late
processes:
  web:
    command: setsid sh -c 'sleep 3; echo late' & exec sleep 1000
    instances: 2
    stop_timeout: 2s
"""
    daemon.apply(spec)
    wait_for(lambda: len([i for i in daemon.instances("late") if i["pid"]]) == 2,
             what="two instances running")
    assert daemon.cli("scale", "late", "web=1").returncode == 0
    wait_for(lambda: [i["id"] for i in daemon.instances("late")] == ["late.web.1"],
             what="the second slot removed")
    wait_for(lambda: "late" in daemon.cli("logs", "late").stdout, timeout=10,
             what="the first instance's late line")
    time.sleep(0.5)
    assert daemon.proc.poll() is None
    assert daemon.cli("ps", "late").returncode == 0


def test_stop_sends_sigterm_then_sigkill_after_stop_timeout(daemon):
    spec = """app: stubborn
processes:
  web:
    command: trap '' TERM; while true; do sleep 0.1; done
    stop_timeout: 700ms
"""
    daemon.apply(spec)
    inst = daemon.wait_ready("stubborn", 1)[0]
    t0 = time.monotonic()
    assert daemon.cli("stop", "stubborn").returncode == 0
    st = daemon.wait_state("stubborn.web.1", "stopped")
    assert time.monotonic() - t0 >= 0.6
    assert st["signal"] == 9
    assert not pid_alive(inst["pid"])


def test_stop_leaves_no_orphans_of_the_process_tree(daemon, tmp_path):
    marker = tmp_path / "child.pid"
    spec = f"""app: tree
processes:
  web:
    command: sleep 1000 & echo $! > {marker}; wait
"""
    daemon.apply(spec)
    daemon.wait_ready("tree", 1)
    child = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), what="child pid"))
    assert pid_alive(child)
    assert daemon.cli("stop", "tree").returncode == 0
    wait_for(lambda: not pid_alive(child), what="grandchild to be stopped")
    assert daemon.instances("tree")[0]["state"] == "stopped"
    assert daemon.cli("start", "tree").returncode == 0
    daemon.wait_ready("tree", 1)


def test_output_is_captured_and_long_lines_are_split(daemon):
    spec = """app: chatty
processes:
  web:
    command: python3 -c "import sys,time; print('x'*25000); print('err line', file=sys.stderr); sys.stdout.flush(); time.sleep(1000)"
"""
    daemon.apply(spec)
    lines = wait_for(lambda: (lambda ls: ls if len(ls) >= 4 else None)(
        daemon.ok("GET", "/v1/apps/chatty/logs?lines=100")["lines"]), what="log lines")
    out = [l["line"] for l in lines if l["stream"] == "stdout"]
    assert [len(l) for l in out] == [10000, 10000, 5000]
    assert [l["line"] for l in lines if l["stream"] == "stderr"] == ["err line"]
    # The CLI reads the durable store, where lines are committed within 250 ms.
    r = wait_for(lambda: (lambda r: r if "err line" in r.stdout else None)(
        daemon.cli("logs", "chatty", "-n", "5")), what="the line in `paasops logs`")
    assert r.returncode == 0


def test_memory_limit_is_enforced_or_reported(daemon):
    spec = """app: limited
processes:
  web:
    command: sleep 1000
    resources: {memory: 64M, cpu: 0.5}
"""
    daemon.apply(spec)
    inst = daemon.wait_ready("limited", 1)[0]
    assert inst["memory_limit"] == 64 * 1024 * 1024 and inst["cpu_limit"] == 0.5
    assert isinstance(inst["limits_enforced"], bool)
    if inst["limits_enforced"]:
        with open(f"/proc/{inst['pid']}/cgroup") as f:
            groups = f.read()
        assert "limited.web.1" in groups
    r = daemon.cli("ps", "limited")
    assert r.returncode == 0 and "limited.web.1" in r.stdout


def test_destroying_apps_whose_instances_flood_output_keeps_the_daemon_up(daemon):
    # Output still in the pipes when an instance exits is read up to EOF; the
    # app may be gone by then, and that output must not reach a freed instance.
    for k in range(3):
        daemon.apply(f"""app: flood{k}
processes:
  web:
    command: "yes flooding-line-with-enough-text-to-fill-pipes-quickly-abcdefghijklmnopqrstuvwxyz"
    instances: 2
    stop_timeout: 2s
""")
        wait_for(lambda: len(daemon.ok("GET", f"/v1/apps/flood{k}/instances")["instances"]) == 2
                 and daemon.ok("GET", f"/v1/logs?app=flood{k}&limit=1")["lines"],
                 what="a flooding app")
        r = daemon.cli("destroy", f"flood{k}", "--yes")
        assert r.returncode == 0, r.stderr
        assert daemon.proc.poll() is None, daemon.read_log()[-2000:]
    assert daemon.request("GET", "/healthz")[0] == 200
    assert daemon.proc.poll() is None
