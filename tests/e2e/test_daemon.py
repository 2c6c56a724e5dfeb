"""The daemon's lifecycle: one daemon per data dir, graceful stop, recovery
after SIGKILL with no orphans, desired state across restarts."""
import os
import signal
import socket
import stat
import subprocess

from conftest import BIN, Daemon, hello_spec, pid_alive, wait_for


def test_socket_is_private(daemon):
    mode = stat.S_IMODE(os.stat(daemon.sock).st_mode)
    assert mode == 0o600


def test_second_daemon_on_same_data_dir_refuses_to_start(daemon):
    r = subprocess.run([BIN, "serve", "--data", daemon.data], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "already using data dir" in r.stderr
    assert daemon.request("GET", "/healthz")[0] == 200


def test_ports_in_use_are_refused_with_a_message_not_a_crash(daemon, tmp_path):
    # The router port of a running daemon: SO_REUSEPORT must not let a
    # second daemon share it and take half of its requests.
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "second"), "--http",
                        f"127.0.0.1:{daemon.http_port}"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "address already in use" in r.stderr.lower()
    # An API address that is taken: a clean exit 1, not an abort.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "third"), "--http", "127.0.0.1:0",
                            "--api", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"cannot listen on '127.0.0.1:{port}': address already in use" in r.stderr
    assert daemon.request("GET", "/healthz")[0] == 200


def test_data_dir_is_used_under_its_canonical_name(tmp_path):
    # A relative --data with "." and ".." is printed, bound and handed on as
    # one absolute, normalised path.
    (tmp_path / "a").mkdir()
    d = Daemon(tmp_path)
    d.data = str(tmp_path / "var")
    d.sock = os.path.join(d.data, "paasops.sock")
    args = [BIN, "serve", "--data", "./a/.././var", "--http", "off", "--ports", f"{d.ports[0]}-{d.ports[1]}"]
    with open(d.log_path, "ab") as log:
        d.proc = subprocess.Popen(args, cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    d.log = open(d.log_path, "ab")
    try:
        wait_for(d._healthy, timeout=10, what="daemon to answer /healthz")
        assert f"serving data dir {d.data} on unix:{d.sock}" in d.read_log()
    finally:
        assert d.stop() == 0


def test_sigterm_stops_instances_and_exits_zero(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(hello_spec())
    pids = [i["pid"] for i in d.wait_ready("hello", 2)]
    assert d.stop(signal.SIGTERM) == 0
    assert not any(pid_alive(p) for p in pids)
    assert not os.path.exists(d.sock)


def test_sigkill_of_daemon_then_restart_restores_desired_state_without_orphans(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(hello_spec(instances=2))
    d.wait_ready("hello", 2)
    assert d.cli("scale", "hello", "web=3").returncode == 0
    old = [i["pid"] for i in d.wait_ready("hello", 3)]
    d.kill9()
    # The instances outlive the daemon for now...
    assert all(pid_alive(p) for p in old)
    d.start()
    try:
        # ...and the new daemon stops them, then starts the desired 3 again.
        wait_for(lambda: not any(pid_alive(p) for p in old), what="leftovers to be stopped")
        new = d.wait_ready("hello", 3)
        assert not {i["pid"] for i in new} & set(old)
        assert any(e["type"] == "cleanup" for e in d.events("hello"))
    finally:
        assert d.stop() == 0


def test_apps_are_listed_by_name_before_and_after_a_restart(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        for name in ("zeta", "alpha", "mid"):
            d.apply(hello_spec(app=name, instances=0))
        names = lambda: [a["name"] for a in d.ok("GET", "/v1/apps")["apps"]]  # noqa: E731
        assert names() == ["alpha", "mid", "zeta"]
        assert d.stop() == 0
        d.start()
        assert names() == ["alpha", "mid", "zeta"]
    finally:
        assert d.stop() == 0


def test_stopped_app_stays_stopped_after_restart(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(hello_spec(instances=1))
    d.wait_ready("hello", 1)
    assert d.cli("stop", "hello").returncode == 0
    wait_for(lambda: d.instances("hello")[0]["state"] == "stopped", what="stopped")
    assert d.stop() == 0
    d.start()
    try:
        assert d.ok("GET", "/v1/apps/hello")["stopped"] is True
        assert all(i["pid"] is None for i in d.instances("hello"))
        assert d.cli("start", "hello").returncode == 0
        d.wait_ready("hello", 1)
    finally:
        assert d.stop() == 0


def test_a_release_stored_by_an_earlier_version_still_runs_after_checks_were_added(tmp_path):
    """Specs refused today (a healthy_deadline within min_healthy, a dot
    segment in a route, an alert on a name paasops does not keep) may be in
    releases an earlier version stored: they load and run."""
    import sqlite3
    d = Daemon(tmp_path).start()
    d.apply(hello_spec(instances=1))
    d.wait_ready("hello", 1)
    assert d.stop() == 0
    legacy = hello_spec(instances=1, extra="""    routes: [{path: /x/../}]
    deploy: {healthy_deadline: 5s}
alerts:
  - {name: old, metric: paasops_instance_open_fd, op: ">", value: 1000}
""")
    con = sqlite3.connect(os.path.join(d.data, "state.db"))
    with con:
        assert con.execute("UPDATE releases SET spec_yaml = ? WHERE app = 'hello'", (legacy,)).rowcount == 1
    con.close()
    d.start()
    try:
        d.wait_ready("hello", 1)
        assert "healthy_deadline: 5s" in d.ok("GET", "/v1/apps/hello")["spec_yaml"]
        assert d.ok("GET", "/v1/apps/hello")["release"] == 1
        # A new spec with the same problems is refused.
        status, doc = d.request("POST", "/v1/apps", {"spec": legacy, "dir": str(d.tmp)})
        assert status == 422 and "healthy_deadline" in "\n".join(doc["error"]["details"]), doc
    finally:
        assert d.stop() == 0


def test_destroy_stops_everything_and_forgets_the_app(daemon):
    daemon.apply(hello_spec(instances=2))
    pids = [i["pid"] for i in daemon.wait_ready("hello", 2)]
    r = daemon.cli("destroy", "hello", "--yes")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not any(pid_alive(p) for p in pids), what="instances to stop")
    assert daemon.request("GET", "/v1/apps/hello")[0] == 404
    assert daemon.ok("GET", "/v1/apps")["apps"] == []


def test_reapply_with_changed_command_restarts_and_removed_process_stops(daemon, tmp_path):
    spec = """app: two
processes:
  a:
    command: sleep 1000
  b:
    command: sleep 1001
"""
    daemon.apply(spec)
    first = {i["id"]: i["pid"] for i in daemon.wait_ready("two", 2)}
    daemon.apply("""app: two
processes:
  a:
    command: sleep 1002
    deploy: {min_healthy: 500ms}
""")
    a = daemon.wait_ready("two", 1)[0]
    assert a["process"] == "a" and a["pid"] != first["two.a.1"] and a["release"] == 2
    wait_for(lambda: not pid_alive(first["two.b.1"]), what="removed process type to stop")
    app = daemon.ok("GET", "/v1/apps/two")
    assert [p["name"] for p in app["processes"]] == ["a"]


def test_scaled_count_survives_reapply_of_same_spec(daemon):
    daemon.apply(hello_spec(instances=1))
    daemon.wait_ready("hello", 1)
    assert daemon.cli("scale", "hello", "web=2").returncode == 0
    daemon.wait_ready("hello", 2)
    daemon.apply(hello_spec(instances=1))
    assert daemon.ok("GET", "/v1/apps/hello")["processes"][0]["instances"] == 2
    daemon.apply(hello_spec(instances=3))
    daemon.wait_ready("hello", 3)


def test_instances_started_by_a_rollout_restart_when_they_die(daemon):
    """After a rolling deploy the new instances may be numbered beyond the
    desired count (hello.web.3 and .4 of 2); they must still be restarted
    when they die, and `restart` must bring them back."""
    daemon.apply(hello_spec(instances=2, extra="    deploy: {min_healthy: 300ms}\n"))
    daemon.wait_ready("hello", 2)
    daemon.apply(hello_spec(instances=2, extra="    deploy: {min_healthy: 300ms}\n    env: {V: '2'}\n"))
    wait_for(lambda: daemon.ok("GET", "/v1/apps/hello")["release"] == 2 and
             len([i for i in daemon.instances("hello") if i["state"] == "ready" and i["release"] == 2]) == 2,
             what="v2 live on 2 instances")
    victim = [i for i in daemon.instances("hello") if i["state"] == "ready"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: [i for i in daemon.instances("hello")
                      if i["id"] == victim["id"] and i["state"] == "ready" and i["pid"] != victim["pid"]],
             what="the killed instance back")
    before = {i["pid"] for i in daemon.instances("hello")}
    r = daemon.cli("restart", "hello")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: (lambda insts: len(insts) == 2 and all(i["state"] == "ready" and i["pid"] not in before
                                                              for i in insts))(daemon.instances("hello")),
             what="both instances restarted and ready")
