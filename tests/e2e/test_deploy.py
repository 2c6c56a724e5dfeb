"""Releases and deploys through the real daemon and CLI: `paasops deploy`
packing and streaming a directory, rolling and canary rollouts under
continuous load, rollbacks (by request, after a rollout that never gets
healthy, and after a regression in 5xx), config changes, build and
release-phase failures, hostile archives, one deploy at a time, SIGKILL of
the daemon in the middle of a deploy, and the release list with pruning.

The app is a small standard-library HTTP server written into each test's
directory; it answers "VERSION INSTANCE GREETING" so the load can tell which
release served each request."""
import collections
import gzip
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zlib

from conftest import SLOW, pid_alive, wait_for

PYTHON = sys.executable

APP_PY = r'''
import http.server, itertools, os, signal, threading
HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
INSTANCE = os.environ.get("PAASOPS_INSTANCE", "?")
FAIL_EVERY = int(os.environ.get("FAIL_EVERY") or 0)
NEVER_HEALTHY = os.environ.get("NEVER_HEALTHY") == "1" or (
    bool(os.environ.get("NEVER_HEALTHY_IF")) and os.path.exists(os.environ["NEVER_HEALTHY_IF"]))
counter = itertools.count(1)
lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            code, body = (503, b"never\n") if NEVER_HEALTHY else (200, b"ok\n")
        else:
            with lock:
                n = next(counter)
            if FAIL_EVERY and n % FAIL_EVERY == 0:
                code, body = 500, b"boom\n"
            else:
                code = 200
                body = f"{VERSION} {INSTANCE} {os.environ.get('GREETING', '-')}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
srv.daemon_threads = False  # server_close() waits for requests in flight
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown, daemon=True).start())
print(f"{VERSION} {INSTANCE} listening", flush=True)
srv.serve_forever(poll_interval=0.05)
srv.server_close()
'''


def write_app(d, version, app="web", instances=2, deploy="{min_healthy: 300ms}", env=None,
              top="", spec_name="paasops.yaml"):
    """Writes the app into directory d: app.py, VERSION and the spec."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write(APP_PY)
    with open(os.path.join(d, "VERSION"), "w") as f:
        f.write(version)
    env_line = "env: {" + ", ".join(f'{k}: "{v}"' for k, v in (env or {}).items()) + "}\n" if env else ""
    with open(os.path.join(d, spec_name), "w") as f:
        f.write(f"""app: {app}
{top}{env_line}processes:
  web:
    command: {PYTHON} app.py
    instances: {instances}
    health: {{http: /healthz, interval: 250ms, timeout: 1s}}
    stop_timeout: 5s
    routes: [{{path: /}}]
    deploy: {deploy}
""")
    return str(d)


def get(daemon, timeout=5):
    """One GET through the router: (status, body text)."""
    c = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=timeout * SLOW)
    try:
        c.request("GET", "/", headers={"Host": "app.test"})
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def served_versions(daemon, n=20):
    """The versions that answer n requests in a row (any failure shows as 'status N')."""
    out = collections.Counter()
    for _ in range(n):
        status, body = get(daemon)
        out[body.split()[0] if status == 200 else f"status {status}"] += 1
    return out


def wait_serving(daemon, version, timeout=20):
    return wait_for(lambda: served_versions(daemon, 10) == {version: 10}, timeout=timeout,
                    what=f"only {version} to answer")


class Load:
    """A few threads doing GETs through the router until stopped; counts the
    answers by version and keeps every failure (a non-200 or an error)."""

    def __init__(self, daemon, threads=3, pause=0.004):
        self.daemon, self.n, self.pause = daemon, threads, pause
        self.lock = threading.Lock()
        self.ok = 0
        self.versions = collections.Counter()
        self.failures = []
        self.stopping = threading.Event()
        self.threads = []

    def _run(self):
        while not self.stopping.is_set():
            try:
                status, body = get(self.daemon, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                status, body = None, repr(e)
            with self.lock:
                if status == 200:
                    self.ok += 1
                    self.versions[body.split()[0]] += 1
                else:
                    self.failures.append((time.monotonic(), status, body[:200]))
            time.sleep(self.pause)

    def __enter__(self):
        for _ in range(self.n):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)

    def count(self):
        with self.lock:
            return self.ok


def cli_ok(daemon, *args, timeout=90):
    r = daemon.cli(*args, timeout=timeout)
    assert r.returncode == 0, f"paasops {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def deploy_status(daemon, app="web"):
    return daemon.ok("GET", f"/v1/apps/{app}/deploy")


def releases(daemon, app="web"):
    return {r["version"]: r for r in daemon.ok("GET", f"/v1/apps/{app}/releases")["releases"]}


def wait_deploy_done(daemon, app="web", timeout=60):
    return wait_for(lambda: (lambda s: s if s.get("result") else None)(deploy_status(daemon, app)),
                    timeout=timeout, what="the deploy to end")


def pids_of(daemon, app="web"):
    return {i["pid"] for i in daemon.instances(app) if i.get("pid")}


def tar_bytes(members, gz=True):
    """A tar (gzipped) from (TarInfo, data or None) pairs, written as given:
    tarfile does not clean names or link targets on the way out."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name, data=b"", type=tarfile.REGTYPE, linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = type
    info.mode = mode
    info.linkname = linkname
    if type == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def upload(daemon, app, body, sha=None, spec="paasops.yaml"):
    import hashlib
    h = {"Content-Type": "application/gzip",
         "X-Content-SHA256": sha or hashlib.sha256(body).hexdigest()}
    return daemon.request("POST", f"/v1/apps/{app}/releases?spec={spec}", raw=body, headers=h)


# ---------------------------------------------------------------- (a)


def test_rolling_deploys_rollbacks_and_config_changes_under_load_drop_no_request(daemon, tmp_path):
    # The full sequence: 20 rolling deploys, 5 rollbacks and 5
    # config changes under continuous load, not one failed request. It takes
    # well under a minute (each rollout waits min_healthy per instance).
    d = write_app(tmp_path / "src", "v1")
    cli_ok(daemon, "deploy", d, "--wait", "-m", "first")
    wait_serving(daemon, "v1")
    live, versions_made, greetings = "v1", 1, 0
    with Load(daemon) as load:
        for k in range(2, 22):
            write_app(tmp_path / "src", f"v{k}")
            r = cli_ok(daemon, "deploy", d, "--wait", "-m", f"deploy {k}")
            versions_made += 1
            assert f"release v{versions_made} of app 'web' created" in r.stdout
            assert f"v{versions_made} of app 'web' is live" in r.stdout
            live = f"v{k}"
            if k % 4 == 1:
                r = cli_ok(daemon, "rollback", "web", "--wait")
                assert "rolling back app 'web' from" in r.stdout
                live = f"v{k - 1}"
            if k % 4 == 3:
                greetings += 1
                cli_ok(daemon, "config", "set", "web", f"GREETING=hi{greetings}", "--wait")
                versions_made += 1
            status, body = get(daemon)
            assert status == 200 and body.split()[0] == live, body
        before = load.count()
        wait_for(lambda: load.count() > before + 20, what="load to go on after the last deploy")
    assert load.failures == [], load.failures[:10]
    assert load.ok > 500
    assert len(load.versions) > 15  # the load really saw the releases change
    body = get(daemon)[1].split()
    assert body[2] == f"hi{greetings}"
    rel = releases(daemon)
    statuses = collections.Counter(r["status"] for r in rel.values())
    assert statuses["active"] == 1
    assert statuses["rolled-back"] == 5
    assert len(rel) == versions_made
    r = cli_ok(daemon, "releases", "web")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "STATUS", "AUTHOR", "AGE", "MESSAGE"]
    assert len(lines) == 1 + versions_made


# ---------------------------------------------------------------- (b)


def test_release_that_never_gets_healthy_is_rolled_back_and_wait_fails(daemon, tmp_path):
    d = write_app(tmp_path / "src", "v1", deploy="{min_healthy: 300ms, healthy_deadline: 3s}")
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    old = pids_of(daemon)
    write_app(tmp_path / "src", "v2", deploy="{min_healthy: 300ms, healthy_deadline: 3s}",
              env={"NEVER_HEALTHY": "1"})
    with Load(daemon) as load:
        r = daemon.cli("deploy", d, "--wait", "-m", "broken health")
        assert r.returncode == 1, r
        assert "error: v2 of app 'web' was rolled back to v1: not healthy within healthy_deadline" in r.stderr
    assert load.failures == [], load.failures[:10]
    assert set(load.versions) == {"v1"}
    # The new instance that never got healthy is stopped; the old ones never were.
    wait_for(lambda: pids_of(daemon) == old, what="only the old instances to run")
    assert {i["release"] for i in daemon.instances("web")} == {1}
    rel = releases(daemon)
    # v2 never went live: it failed, and says where the app went back to.
    assert rel[1]["status"] == "active" and rel[2]["status"] == "failed"
    assert "healthy_deadline" in rel[2]["reason"] and rel[2]["reason"].endswith("; rolled back to v1")
    st = deploy_status(daemon)
    assert st["result"] == "rolled-back" and st["version"] == 2 and st["from"] == 1


def settled_on(daemon, version, n, app="web"):
    """The app serves release `version` alone, with n ready instances and
    nothing else, and says so."""
    a = daemon.ok("GET", f"/v1/apps/{app}")
    insts = daemon.instances(app)
    return (a["release"] == version and "target_release" not in a and not a["rolling_out"]
            and len(insts) == n and all(i["release"] == version and i["state"] == "ready"
                                        for i in insts))


def test_failed_rollout_without_rollback_leaves_the_live_release_in_charge(daemon, tmp_path):
    dep = "{min_healthy: 300ms, healthy_deadline: 3s, auto_rollback: false}"
    d = write_app(tmp_path / "src", "v1", instances=1, deploy=dep)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    write_app(tmp_path / "src", "v2", instances=1, deploy=dep, env={"NEVER_HEALTHY": "1"})
    r = daemon.cli("deploy", d, "--wait")
    assert r.returncode == 1 and "not healthy within healthy_deadline" in r.stderr, r
    # The instance of v2 is stopped, not left to become healthy later.
    wait_for(lambda: settled_on(daemon, 1, 1), timeout=20, what="v1 alone")
    rel = releases(daemon)
    assert rel[1]["status"] == "active" and rel[2]["status"] == "failed"
    assert any("v1 stays live" in e["reason"] for e in daemon.events("web"))
    # A restart restarts v1, not the release that failed.
    cli_ok(daemon, "restart", "web")
    wait_for(lambda: any(e["reason"].startswith("restart finished") for e in daemon.events("web")),
             timeout=20, what="the restart to finish")
    wait_for(lambda: settled_on(daemon, 1, 1), timeout=20, what="v1 alone after the restart")
    wait_serving(daemon, "v1")


def test_failed_rollback_leaves_the_live_release_in_charge(daemon, tmp_path):
    flag = tmp_path / "unhealthy"
    dep = "{min_healthy: 300ms, healthy_deadline: 3s}"
    d = write_app(tmp_path / "src", "v1", instances=1, deploy=dep,
                  env={"NEVER_HEALTHY_IF": str(flag)})
    cli_ok(daemon, "deploy", d, "--wait")
    write_app(tmp_path / "src", "v2", instances=1, deploy=dep)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v2")
    flag.write_text("")  # v1's instances started from now on never get healthy
    r = daemon.cli("rollback", "web", "v1", "--wait")
    assert r.returncode == 1, r
    wait_for(lambda: settled_on(daemon, 2, 1), timeout=20, what="v2 alone")
    assert releases(daemon)[2]["status"] == "active"
    # Counts are met on v2 again: nothing of v1 counts as one of them.
    cli_ok(daemon, "scale", "web", "web=2")
    wait_for(lambda: settled_on(daemon, 2, 2), timeout=20, what="two of v2")


def test_failed_restart_stops_what_it_started(daemon, tmp_path):
    flag = tmp_path / "unhealthy"
    dep = "{min_healthy: 300ms, healthy_deadline: 3s}"
    d = write_app(tmp_path / "src", "v1", instances=2, deploy=dep,
                  env={"NEVER_HEALTHY_IF": str(flag)})
    cli_ok(daemon, "deploy", d, "--wait")
    daemon.wait_ready("web", 2)
    old = pids_of(daemon)
    flag.write_text("")
    cli_ok(daemon, "restart", "web")
    wait_for(lambda: any(e["reason"].startswith("restart failed") for e in daemon.events("web")),
             timeout=20, what="the restart to fail")
    # The instance it started is stopped; the ones that served still do.
    wait_for(lambda: settled_on(daemon, 1, 2), timeout=20, what="the two old instances alone")
    assert pids_of(daemon) == old


# ---------------------------------------------------------------- (c)


def test_release_answering_500s_is_rolled_back_by_the_regression_check(daemon, tmp_path):
    # min_healthy is long, so the first new instance serves (and is judged)
    # well before the rollout could finish.
    slow = "{min_healthy: 20s, healthy_deadline: 60s}"
    d = write_app(tmp_path / "src", "v1", deploy=slow)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    write_app(tmp_path / "src", "v2", deploy=slow, env={"FAIL_EVERY": "5"})
    with Load(daemon) as load:
        wait_for(lambda: load.count() > 50, what="load to start")
        r = daemon.cli("deploy", d, "--wait")
    assert r.returncode == 1, r
    assert "was rolled back to v1: regression: v2 answered 5xx to" in r.stderr
    st = deploy_status(daemon)
    assert st["result"] == "rolled-back"
    m = re.fullmatch(r"regression: v2 answered 5xx to ([\d.]+)% of (\d+) requests, "
                     r"v1 to ([\d.]+)% of (\d+) \(limit ([\d.]+)%\)", st["reason"])
    assert m, st["reason"]
    assert 10 <= float(m.group(1)) <= 35 and int(m.group(2)) >= 20
    assert float(m.group(3)) == 0 and float(m.group(5)) == 1.0
    assert st["analysis"]["new_5xx"] > 0
    # Only the new release ever failed a request, and v1 serves alone again.
    assert all(f[2].startswith("boom") for f in load.failures), load.failures[:5]
    assert len(load.failures) < load.ok / 10
    wait_serving(daemon, "v1")
    assert releases(daemon)[2]["status"] == "failed"
    out = cli_ok(daemon, "deploy", "status", "web").stdout
    assert "result:   rolled-back" in out and "reason:   regression: v2" in out
    assert re.search(r"analysis: new: \d+ requests, \d+ 5xx; old: \d+ requests, 0 5xx", out), out


# ---------------------------------------------------------------- (d)


def test_canary_gets_its_share_until_promoted(daemon, tmp_path):
    canary = "{strategy: canary, canary: 1, auto_promote: false, min_healthy: 300ms, healthy_deadline: 60s}"
    d = write_app(tmp_path / "src", "v1", instances=3, deploy=canary)
    cli_ok(daemon, "deploy", d, "--wait")
    daemon.wait_ready("web", 3)
    write_app(tmp_path / "src", "v2", instances=3, deploy=canary)
    with Load(daemon, threads=2) as load:
        waiter = subprocess.Popen([daemon_bin(), "deploy", d, "--wait"], env=cli_env(daemon),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "1 of 1 ready" in (deploy_status(daemon).get("rollout", {})
                                             .get("rollout") or {}).get("phase", ""),
                 timeout=30, what="the canary to be ready and waiting")
        # 3 old + 1 canary, balanced per instance: the canary gets about 1/4.
        seen = served_versions(daemon, 400)
        share = seen["v2"] / 400
        assert set(seen) == {"v1", "v2"}, seen
        assert 0.12 <= share <= 0.40, seen
        assert deploy_status(daemon)["result"] is None
        assert waiter.poll() is None  # still waiting for the promotion
        r = cli_ok(daemon, "deploy", "promote", "web")
        assert "promoted the canary of app 'web' (v2)" in r.stdout
        out, err = waiter.communicate(timeout=60 * SLOW)
        assert waiter.returncode == 0, (out, err)
        assert "v2 of app 'web' is live" in out
    assert load.failures == [], load.failures[:10]
    wait_serving(daemon, "v2")
    assert len(daemon.wait_ready("web", 3)) == 3
    # Nothing to promote any more.
    r = daemon.cli("deploy", "promote", "web")
    assert r.returncode == 1 and "app 'web' has no canary waiting for promotion" in r.stderr


def test_unpromoted_canary_fails_saying_so_and_only_a_canary_is_promoted(daemon, tmp_path):
    flag = tmp_path / "unhealthy"
    canary = ("{strategy: canary, canary: 1, auto_promote: false, min_healthy: 300ms, healthy_deadline: 3s, "
              "auto_rollback: false}")
    d = write_app(tmp_path / "src", "v1", instances=1, deploy=canary,
                  env={"NEVER_HEALTHY_IF": str(flag)})
    cli_ok(daemon, "deploy", d, "--wait")
    write_app(tmp_path / "src", "v2", instances=1, deploy=canary,
              env={"NEVER_HEALTHY_IF": str(flag)})
    r = daemon.cli("deploy", d, "--wait")
    assert r.returncode == 1, r
    assert ("the deploy of v2 of app 'web' failed: the canary was not promoted within healthy_deadline (3s): "
            "it waited for 'paasops deploy promote web'; canary: 1 of 1 ready") in r.stderr, r.stderr
    wait_for(lambda: settled_on(daemon, 1, 1), timeout=20, what="v1 alone")
    # A restart rolls too, but has no canary to promote.
    flag.write_text("")  # keeps the restart going: its new instance never gets healthy
    cli_ok(daemon, "restart", "web")
    assert daemon.ok("GET", "/v1/apps/web")["rolling_out"]
    r = daemon.cli("deploy", "promote", "web")
    assert r.returncode == 1 and "error: app 'web' has no canary waiting for promotion" in r.stderr, r
    status, doc = daemon.request("POST", "/v1/apps/web/deploy/promote", {})
    assert status == 409 and doc["error"]["code"] == "conflict", (status, doc)
    assert daemon.request("POST", "/v1/apps/nope/deploy/promote", {})[0] == 404
    assert not any(e["reason"] == "canary promoted" for e in daemon.events("web"))


def test_an_unpromoted_canary_is_rolled_back_without_a_canary_of_its_own(daemon, tmp_path):
    """The release going back was live: its rollout has no canary stage to
    wait in, so the automatic rollback of an unpromoted canary succeeds."""
    canary = "{strategy: canary, canary: 1, auto_promote: false, min_healthy: 300ms, healthy_deadline: 3s}"
    d = write_app(tmp_path / "src", "v1", instances=1, deploy=canary)
    cli_ok(daemon, "deploy", d, "--wait")
    write_app(tmp_path / "src", "v2", instances=1, deploy=canary)
    r = daemon.cli("deploy", d, "--wait")
    assert r.returncode == 1, r
    assert "rolled back to v1" in r.stderr and "failed too" not in r.stderr, r.stderr
    wait_for(lambda: settled_on(daemon, 1, 1), timeout=20, what="v1 alone")
    rels = {x["version"]: x["status"] for x in daemon.ok("GET", "/v1/apps/web/releases")["releases"]}
    assert rels[1] == "active" and rels[2] == "failed", rels


def daemon_bin():
    from conftest import BIN
    return BIN


def cli_env(daemon):
    e = dict(os.environ)
    e["PAASOPS_SERVER"] = f"unix:{daemon.sock}"
    e.pop("PAASOPS_TOKEN", None)
    return e


# ---------------------------------------------------------------- (e)


def test_build_and_release_phase_failures_change_nothing_that_serves(daemon, tmp_path):
    d = write_app(tmp_path / "src", "v1", top="build: echo building v1\n")
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    old = pids_of(daemon)
    with Load(daemon) as load:
        write_app(tmp_path / "src", "v2", top='build: "echo compiling v2; echo oops >&2; exit 3"\n')
        r = daemon.cli("deploy", d, "--wait")
        assert r.returncode == 1, r
        assert "build: compiling v2\n" in r.stdout and "build: oops\n" in r.stdout
        assert "error: the deploy of v2 of app 'web' failed: build failed with exit status 3" in r.stderr
        assert pids_of(daemon) == old

        write_app(tmp_path / "src", "v3", top='release: "echo migrating $PAASOPS_RELEASE; exit 4"\n')
        r = daemon.cli("deploy", d, "--wait")
        assert r.returncode == 1, r
        assert "release: migrating v3\n" in r.stdout
        assert "failed: release phase failed with exit status 4" in r.stderr
        assert pids_of(daemon) == old

        # Both phases succeed: build runs in the release directory, before
        # the release phase, and their output streams back.
        write_app(tmp_path / "src", "v4", top='build: "echo v4-built > VERSION"\n'
                                              'release: "echo released from $(cat VERSION)"\n')
        r = cli_ok(daemon, "deploy", d, "--wait")
        assert "release: released from v4-built\n" in r.stdout
        assert r.stdout.index("build of v4 finished") < r.stdout.index("release: released")
    assert load.failures == [], load.failures[:10]
    assert set(load.versions) <= {"v1", "v4-built"}
    wait_serving(daemon, "v4-built")
    rel = releases(daemon)
    assert [rel[v]["status"] for v in (1, 2, 3, 4)] == ["superseded", "failed", "failed", "active"]
    # The source directory itself was not touched by the build.
    assert open(os.path.join(d, "VERSION")).read() == "v4"


# ---------------------------------------------------------------- (f)


def deflate_repeated(f, co, chunk, times):
    """Writes `times` copies of chunk through co: after a full flush deflate
    starts afresh, so every copy compresses to the same bytes and is written
    by repetition instead of being compressed again."""
    block = co.compress(chunk) + co.flush(zlib.Z_FULL_FLUSH)
    for _ in range(times):
        f.write(block)


def entries_bomb(path, entries):
    """A tar.gz naming the same directory `entries` times: about 100 bytes
    per 10,000 entries once compressed, each one an entry to count."""
    info = tarfile.TarInfo("d")
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    head = info.tobuf(format=tarfile.GNU_FORMAT)
    per = (1 << 20) // len(head)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        deflate_repeated(f, co, head * per, entries // per + 1)
        f.write(co.compress(bytes(1024)) + co.flush(zlib.Z_FINISH))
        f.write(b"\x00" * 8)  # CRC not computed: the limit comes first


def zero_bomb(path, size):
    """A tar.gz of one file of `size` zero bytes, written in a moment: after
    a full flush deflate starts afresh, so every MiB of zeros compresses to
    the same bytes and is written by repetition. The gzip trailer's CRC is
    not computed: a daemon that honours its limit never gets that far."""
    info = tarfile.TarInfo("big")
    info.size = size
    head = info.tobuf(format=tarfile.GNU_FORMAT)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = 1 << 20
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        f.write(co.compress(head) + co.flush(zlib.Z_FULL_FLUSH))
        deflate_repeated(f, co, bytes(mib), size // mib + 1)
        f.write(co.flush(zlib.Z_FINISH))
        f.write(b"\x00" * 8)


def test_hostile_archives_are_refused_and_leave_nothing(daemon, tmp_path):
    spec = b"app: evil\nprocesses:\n  web:\n    command: sleep 1000\n"
    ok_spec = member("paasops.yaml", spec)
    cases = {
        "traversal": ([ok_spec, member("../x", b"pwned")], "a '..' component"),
        "nested traversal": ([ok_spec, member("a/../../x", b"pwned")], "a '..' component"),
        "absolute": ([ok_spec, member(str(tmp_path / "pwned"), b"pwned")], "an absolute path"),
        "symlink escape": ([ok_spec, member("x", type=tarfile.SYMTYPE, linkname="/etc")],
                           "a link pointing outside the release ('/etc')"),
        "relative symlink escape": ([ok_spec, member("y", type=tarfile.SYMTYPE,
                                                     linkname="../../../etc")],
                                    "a link pointing outside the release"),
        "hard link": ([ok_spec, member("h", type=tarfile.LNKTYPE, linkname="paasops.yaml")],
                      "hard links are not allowed"),
        "device": ([ok_spec, member("null", type=tarfile.CHRTYPE)], "device files"),
        "fifo": ([ok_spec, member("pipe", type=tarfile.FIFOTYPE)], "device files, FIFOs"),
        "not an archive": (None, "cannot read the archive"),
    }
    for name, (members, want) in cases.items():
        body = tar_bytes(members) if members else b"this is not a tarball at all" * 10
        status, doc = upload(daemon, "evil", body)
        assert status == 400, (name, status, doc)
        assert want in doc["error"]["message"], (name, doc)

    good = tar_bytes([ok_spec])
    status, doc = upload(daemon, "evil", good, sha="0" * 64)
    assert status == 400 and "SHA-256" in doc["error"]["message"], doc

    # A bomb of entries: more than the 200,000 allowed, from a small upload.
    bomb = tmp_path / "entries.tar.gz"
    entries_bomb(bomb, 200_001)
    assert os.path.getsize(bomb) < 1 << 20
    r = daemon.cli("deploy", str(bomb), "--app", "evil", timeout=120)
    assert r.returncode == 1, r
    assert "the archive has more than 200000 entries" in r.stderr

    # The CLI's tarball path reports the server's refusal too.
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(tar_bytes([ok_spec, member("../x", b"pwned")]))
    r = daemon.cli("deploy", str(evil), "--app", "evil")
    assert r.returncode == 1 and "refused entry '../x'" in r.stderr, r
    r = daemon.cli("deploy", str(evil))
    assert r.returncode == 2 and "needs --app NAME" in r.stderr, r

    # Nothing was unpacked anywhere, nothing half-extracted was kept, no
    # upload is left behind and no release record was made.
    assert os.listdir(os.path.join(daemon.data, "releases")) == []
    assert os.listdir(os.path.join(daemon.data, "uploads")) == []
    assert not os.path.exists(tmp_path / "pwned")
    assert daemon.request("GET", "/v1/apps/evil/releases")[0] == 404

    # And a clean archive for the same app is accepted afterwards.
    status, doc = upload(daemon, "evil", good)
    assert status == 202 and doc["version"] >= 1, doc
    first = doc["version"]
    wait_deploy_done(daemon, "evil")
    # A refused upload to a live app takes no version: its deploy says so,
    # nothing is alerted about it, and the next release gets the next number.
    status, doc = upload(daemon, "evil", b"this is not a tarball at all" * 10)
    assert status == 400, doc
    st = deploy_status(daemon, "evil")
    assert st["result"] == "failed" and st["version"] is None, st
    assert "before a release was made" in " ".join(n.get("message", "") for n in st.get("log", [])) or \
        "cannot read the archive" in (st.get("reason") or ""), st
    alerts = daemon.ok("GET", "/v1/alerts")
    assert not [a for a in alerts.get("alerts", []) if a.get("name") == "DeployFailed"], alerts
    status, doc = upload(daemon, "evil", good)
    assert status == 202 and doc["version"] == first + 1, doc
    wait_deploy_done(daemon, "evil")


# ---------------------------------------------------------------- (g)


def orphans(pids):
    return [p for p in pids if pid_alive(p)]


def test_sigkill_during_build_recovers_on_the_old_release(daemon, tmp_path):
    d = write_app(tmp_path / "src", "v1", instances=1)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    before = pids_of(daemon)
    pidfile = tmp_path / "build.pid"
    write_app(tmp_path / "src", "v2", instances=1,
              top=f'build: "echo $$ > {pidfile}; exec sleep 300"\n')
    cli_ok(daemon, "deploy", d)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the build to run")
    build_pid = int(pidfile.read_text())
    assert deploy_status(daemon)["phase"] == "building"
    daemon.kill9()
    daemon.start()
    wait_serving(daemon, "v1")
    rel = releases(daemon)
    assert rel[1]["status"] == "active"
    assert rel[2]["status"] == "failed" and "interrupted" in rel[2]["reason"], rel[2]
    wait_for(lambda: not orphans(before | {build_pid}), timeout=10,
             what="no process of the killed daemon to be left")
    assert not [n for n in os.listdir(os.path.join(daemon.data, "releases", "web")) if n.endswith(".tmp")]
    # A new deploy works after the recovery.
    write_app(tmp_path / "src", "v3", instances=1)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v3")


def test_sigterm_during_build_stops_the_build_and_exits(daemon, tmp_path):
    d = write_app(tmp_path / "src", "v1", instances=1)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    pidfile = tmp_path / "build.pid"
    # The build ignores SIGTERM: it is killed after the grace period.
    write_app(tmp_path / "src", "v2", instances=1,
              top=f'build: "trap \'\' TERM; echo $$ > {pidfile}; sleep 300; sleep 300"\n')
    cli_ok(daemon, "deploy", d)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the build to run")
    build_pid = int(pidfile.read_text())
    assert daemon.stop(timeout=20) == 0
    assert not pid_alive(build_pid)
    assert "another paasops" not in daemon.read_log()
    daemon.start()
    wait_serving(daemon, "v1")
    rel = releases(daemon)
    assert rel[1]["status"] == "active"
    assert rel[2]["status"] == "failed" and rel[2]["reason"].startswith("interrupted"), rel[2]


def test_sigkill_during_rollout_recovers_on_one_release_only(daemon, tmp_path):
    slow = "{min_healthy: 30s, healthy_deadline: 60s}"
    d = write_app(tmp_path / "src", "v1", deploy=slow)
    cli_ok(daemon, "deploy", d, "--wait")
    wait_serving(daemon, "v1")
    write_app(tmp_path / "src", "v2", deploy=slow)
    cli_ok(daemon, "deploy", d)
    wait_for(lambda: [i for i in daemon.instances("web") if i["release"] == 2 and i["state"] == "ready"],
             what="a ready instance of v2 beside v1's")
    before = pids_of(daemon)
    assert len(before) == 3
    # A half unpacked upload the killed daemon might have left.
    half = os.path.join(daemon.data, "releases", "web", "v9.tmp")
    os.makedirs(os.path.join(half, "sub"))
    daemon.kill9()
    daemon.start()
    wait_serving(daemon, "v1")
    insts = daemon.wait_ready("web", 2)
    assert {i["release"] for i in insts} == {1}
    wait_for(lambda: not orphans(before), timeout=10, what="the old daemon's instances to be gone")
    rel = releases(daemon)
    assert rel[1]["status"] == "active"
    assert rel[2]["status"] == "failed" and "interrupted" in rel[2]["reason"], rel[2]
    assert not os.path.exists(half)
    st = deploy_status(daemon)
    assert st["version"] == 1 and st["result"] == "succeeded"


# ---------------------------------------------------------------- (h)


def test_a_second_deploy_while_one_runs_is_refused_with_409(daemon, tmp_path):
    d = write_app(tmp_path / "src", "v1", instances=1)
    cli_ok(daemon, "deploy", d, "--wait")
    gate = tmp_path / "gate"
    write_app(tmp_path / "src", "v2", instances=1, top=f'build: "while [ ! -e {gate} ]; do sleep 0.05; done"\n')
    cli_ok(daemon, "deploy", d)
    wait_for(lambda: deploy_status(daemon)["phase"] == "building", what="the build to run")

    write_app(tmp_path / "other", "v3", instances=1)
    r = daemon.cli("deploy", str(tmp_path / "other"))
    assert r.returncode == 1 and "app 'web' is already deploying" in r.stderr, r
    status, doc = upload(daemon, "web", tar_bytes([member("paasops.yaml", b"app: web\n")]))
    assert status == 409 and doc["error"]["code"] == "conflict", doc
    r = daemon.cli("config", "set", "web", "A=1")
    assert r.returncode == 1 and "already deploying" in r.stderr, r
    r = daemon.cli("rollback", "web")
    assert r.returncode == 1 and "already deploying" in r.stderr, r
    status, doc = daemon.request("POST", "/v1/apps/web/rollback", {})
    assert status == 409, doc
    r = daemon.cli("deploy", str(tmp_path / "other"), "--path")
    assert r.returncode == 1 and "already deploying" in r.stderr, r

    gate.write_text("go")
    st = wait_deploy_done(daemon)
    assert st["version"] == 2 and st["result"] == "succeeded"
    assert sorted(releases(daemon)) == [1, 2]  # the refused ones made no release


# ---------------------------------------------------------------- (i)


def test_releases_list_statuses_and_old_artifacts_are_pruned(daemon, tmp_path):
    # No instances: every rollout ends at once, so a dozen releases are quick.
    src = tmp_path / "src"
    for k in range(1, 13):
        write_app(src, f"v{k}", instances=0)
        cli_ok(daemon, "deploy", str(src), "--wait", "-m", f"release {k}")
    write_app(src, "v13", instances=0, top='build: "exit 1"\n')
    assert daemon.cli("deploy", str(src), "--wait").returncode == 1
    r = cli_ok(daemon, "rollback", "web", "--wait", "-m", "back")
    assert "rolling back app 'web' from v12 to v11" in r.stdout

    table = cli_ok(daemon, "releases", "web").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert len(rows) == 13  # every record is kept
    assert rows["v13"][1] == "failed"
    assert rows["v12"][1] == "rolled-back"
    assert rows["v11"][1] == "active"
    assert all(rows[f"v{k}"][1] == "superseded" for k in range(1, 11))
    assert rows["v5"][2] == "local" and rows["v5"][-2:] == ["release", "5"]

    # Artifacts: the newest 10 releases keep theirs.
    rel = releases(daemon)
    base = os.path.join(daemon.data, "releases", "web")
    for v in range(1, 14):
        kept = v >= 4
        assert rel[v]["artifact"] is kept, (v, rel[v])
        assert os.path.isdir(os.path.join(base, f"v{v}")) is kept, v
    r = daemon.cli("rollback", "web", "v2")
    assert r.returncode == 1 and "the artifact of v2 was removed" in r.stderr, r

    one = cli_ok(daemon, "releases", "web", "v12").stdout
    assert "status:   rolled-back" in one and "reason:   rolled back by request" in one
    assert "spec:\n  app: web\n" in one


def test_deploy_path_and_config_secrets(daemon, tmp_path):
    d = write_app(tmp_path / "srv", "v1", instances=1)
    r = cli_ok(daemon, "deploy", d, "--path", "--wait", "-m", "in place")
    assert f"release v1 of app 'web' created from {os.path.realpath(d)} on the server" in r.stdout
    wait_serving(daemon, "v1")
    assert releases(daemon)[1]["message"] == "in place"
    assert daemon.ok("GET", "/v1/apps/web/releases/v1")["dir"] == os.path.realpath(d)
    cli_ok(daemon, "config", "set", "web", "GREETING=hello", "--wait")
    cli_ok(daemon, "config", "set", "web", "API_KEY=s3cr3t", "--secret", "--wait")
    out = cli_ok(daemon, "config", "web").stdout
    assert re.search(r"^GREETING +hello$", out, re.M) and re.search(r"^API_KEY +\*{8}$", out, re.M), out
    assert "s3cr3t" not in json.dumps(daemon.ok("GET", "/v1/apps/web/config"))
    assert "s3cr3t" not in json.dumps(daemon.ok("GET", "/v1/apps/web/releases/v3"))
    wait_for(lambda: get(daemon)[1].split()[2] == "hello", what="the new config to serve")
    cli_ok(daemon, "config", "unset", "web", "GREETING", "--wait")
    wait_for(lambda: get(daemon)[1].split()[2] == "-", what="the unset var to be gone")
    r = daemon.cli("config", "unset", "web", "NOPE")
    assert r.returncode == 1 and "config var 'NOPE' is not set" in r.stderr
    assert [v["message"] for _, v in sorted(releases(daemon).items())] == \
        ["in place", "config change", "config change", "config change"]


def test_gzip_bomb_over_the_size_limit_is_refused(daemon, tmp_path):
    # More than 2 GiB once unpacked, from a 2 MiB upload. The daemon writes
    # up to the limit before it stops, which takes a while (about 20 s here).
    bomb = tmp_path / "bomb.tar.gz"
    zero_bomb(bomb, (2 << 30) + (1 << 20))
    assert os.path.getsize(bomb) < 4 << 20
    r = daemon.cli("deploy", str(bomb), "--app", "evil", timeout=120)
    assert r.returncode == 1, r
    assert "the archive unpacks to more than 2147483648 bytes" in r.stderr
    assert os.listdir(os.path.join(daemon.data, "releases")) == []
    assert os.listdir(os.path.join(daemon.data, "uploads")) == []


def test_deployer_token_deploys_over_tcp_and_other_tokens_are_refused(daemon, tmp_path):
    def token(*args):
        return cli_ok(daemon, "tokens", "create", *args).stdout.strip()
    mine, other, viewer = (token("--role", "deployer", "--app", "web"),
                           token("--role", "deployer", "--app", "shop"), token("--role", "viewer"))
    tcp = f"http://127.0.0.1:{daemon.api_port}"
    d = write_app(tmp_path / "src", "v1", instances=1)
    r = daemon.cli("deploy", d, "--wait", "-m", "from ci", server=tcp, token=mine)
    assert r.returncode == 0 and "v1 of app 'web' is live" in r.stdout, r
    wait_serving(daemon, "v1")
    tok_id = releases(daemon)[1]["author"]
    assert tok_id.startswith("tok_")
    # Refused before the body is read: another app's deployer, a viewer, no token.
    for tok, want in ((other, "a deployer token scoped to other apps may not change app 'web'"),
                      (viewer, "a viewer token may not change app 'web'"),
                      (None, "hint: pass --token or set PAASOPS_TOKEN")):
        r = daemon.cli("deploy", d, server=tcp, token=tok)
        assert r.returncode == 1 and want in r.stderr, (tok, r)
    assert sorted(releases(daemon)) == [1]
    r = daemon.cli("rollback", "web", server=tcp, token=other)
    assert r.returncode == 1, r
    out = daemon.cli("releases", "web", server=tcp, token=viewer)
    assert out.returncode == 0 and "from ci" in out.stdout


def test_rollback_goes_only_to_releases_that_were_live(daemon, tmp_path):
    src = tmp_path / "src"
    fast = "{min_healthy: 300ms, healthy_deadline: 3s}"
    write_app(src, "v1", instances=1, deploy=fast)
    cli_ok(daemon, "deploy", str(src), "--wait")
    write_app(src, "v2", instances=1, deploy=fast, env={"NEVER_HEALTHY": "1"})
    assert daemon.cli("deploy", str(src), "--wait").returncode == 1
    write_app(src, "v3", instances=1, deploy=fast, top='build: "exit 1"\n')
    assert daemon.cli("deploy", str(src), "--wait").returncode == 1
    write_app(src, "v4", instances=1, deploy=fast)
    cli_ok(daemon, "deploy", str(src), "--wait")
    rel = releases(daemon)
    assert [rel[v]["status"] for v in (1, 2, 3, 4)] == ["superseded", "failed", "failed", "active"]

    # Named: a release that never went live is refused and nothing changes.
    for v in (2, 3):
        status, doc = daemon.request("POST", "/v1/apps/web/rollback", {"version": v})
        assert status == 409, (status, doc)
        assert doc["error"]["message"].startswith(f"v{v} never went live (its status is 'failed')")
        r = daemon.cli("rollback", "web", f"v{v}")
        assert r.returncode == 1 and f"v{v} never went live" in r.stderr, r
    assert deploy_status(daemon)["version"] == 4 and releases(daemon)[4]["status"] == "active"

    # Unnamed: the newest earlier release that was live.
    r = cli_ok(daemon, "rollback", "web", "--wait")
    assert "rolling back app 'web' from v4 to v1" in r.stdout
    wait_serving(daemon, "v1")
    rel = releases(daemon)
    assert rel[1]["status"] == "active" and rel[4]["status"] == "rolled-back"
    # A release left by a rollback was live: it can be gone back to.
    r = cli_ok(daemon, "rollback", "web", "v4", "--wait")
    assert "from v1 to v4" in r.stdout


def test_destroy_removes_the_releases_and_the_name_can_be_deployed_again(daemon, tmp_path):
    src = tmp_path / "src"
    write_app(src, "v1", instances=1)
    cli_ok(daemon, "deploy", str(src), "--wait")
    wait_serving(daemon, "v1")
    pids = pids_of(daemon)
    base = os.path.join(daemon.data, "releases")
    assert os.listdir(base) == ["web"]
    cli_ok(daemon, "destroy", "web", "--yes")
    wait_for(lambda: not orphans(pids), what="the instances to stop")
    wait_for(lambda: os.listdir(base) == [], what="the app's releases to be removed")
    # The same name deploys again, as v1.
    write_app(src, "v1b", instances=1)
    r = cli_ok(daemon, "deploy", str(src), "--wait")
    assert "release v1 of app 'web' created" in r.stdout
    wait_serving(daemon, "v1b")
    # A directory left by an app of that name before (no record has the
    # version) does not stand in the way of an upload.
    stale = os.path.join(base, "web", "v2")
    os.makedirs(stale)
    with open(os.path.join(stale, "junk"), "w") as f:
        f.write("x")
    write_app(src, "v2", instances=1)
    r = cli_ok(daemon, "deploy", str(src), "--wait")
    assert "release v2 of app 'web' created" in r.stdout
    assert not os.path.exists(os.path.join(stale, "junk"))
    wait_serving(daemon, "v2")


def test_an_app_that_never_went_live_can_be_destroyed(daemon, tmp_path):
    src = tmp_path / "src"
    base = os.path.join(daemon.data, "releases")
    # The first deploy's build fails: only its record and directory exist.
    write_app(src, "v1", instances=1, top='build: "exit 1"\n')
    assert daemon.cli("deploy", str(src), "--wait").returncode == 1
    assert releases(daemon)[1]["status"] == "failed"
    assert os.listdir(base) == ["web"]
    cli_ok(daemon, "destroy", "web", "--yes")
    assert daemon.request("GET", "/v1/apps/web/releases")[0] == 404
    wait_for(lambda: os.listdir(base) == [], what="the release directory to be removed")
    r = daemon.cli("destroy", "web", "--yes")
    assert r.returncode == 1 and "app 'web' not found" in r.stderr, r

    # The first deploy still builds: destroying stops the build.
    pidfile = tmp_path / "build.pid"
    write_app(src, "v1", instances=1, top=f'build: "echo $$ > {pidfile}; exec sleep 300"\n')
    cli_ok(daemon, "deploy", str(src))
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the build to run")
    build_pid = int(pidfile.read_text())
    cli_ok(daemon, "destroy", "web", "--yes")
    wait_for(lambda: not pid_alive(build_pid), what="the build to be stopped")
    st = wait_deploy_done(daemon)
    assert st["result"] == "failed" and st["reason"] == "app destroyed", st
    wait_for(lambda: os.listdir(base) == [], what="the release directory to be removed")
    assert daemon.request("GET", "/v1/apps/web/releases")[0] == 404
    assert daemon.ok("GET", "/v1/apps")["apps"] == []


def test_upload_with_a_route_of_another_app_is_a_409_and_leaves_nothing(daemon, tmp_path):
    write_app(tmp_path / "a", "v1", instances=0, app="one")
    cli_ok(daemon, "deploy", str(tmp_path / "a"), "--wait")
    d = write_app(tmp_path / "b", "v1", instances=0, app="two")
    body = tar_bytes([member("paasops.yaml", open(os.path.join(d, "paasops.yaml"), "rb").read())])
    status, doc = upload(daemon, "two", body)
    assert status == 409 and doc["error"]["code"] == "conflict", doc
    assert "one" in doc["error"]["message"], doc
    assert daemon.request("GET", "/v1/apps/two/releases")[0] == 404
    assert os.listdir(os.path.join(daemon.data, "releases")) == ["one"]
    # A refused spec leaves no directory either.
    body = tar_bytes([member("paasops.yaml", b"app: other\nprocesses: {web: {command: x}}\n")])
    status, doc = upload(daemon, "three", body)
    assert status == 422, doc
    assert os.listdir(os.path.join(daemon.data, "releases")) == ["one"]


def test_config_changes_are_checked_before_anything_and_secret_marks_set_vars(daemon, tmp_path):
    src = tmp_path / "src"
    gate = tmp_path / "gate"
    write_app(src, "v1", instances=0, top=f'release: "while [ ! -e {gate} ]; do sleep 0.05; done"\n')
    gate.write_text("open")
    cli_ok(daemon, "deploy", str(src), "--wait")
    cfg = "/v1/apps/web/config"
    ok = daemon.ok("POST", cfg, {"set": {"GREETING": "hi"}})
    wait_deploy_done(daemon)

    def refused(body, status, *words):
        before = len(releases(daemon))
        code, doc = daemon.request("POST", cfg, body)
        assert code == status, (body, code, doc)
        for w in words:
            assert w in doc["error"]["message"], (body, doc)
        assert len(releases(daemon)) == before

    refused({"set": {"A": "x"}, "secret": ["B"]}, 400, "'B'", "not set")
    refused({"set": {"A": "x"}, "message": 5}, 400, "'message' must be a string")
    refused({"set": {"A": "x"}, "bogus": 1}, 400, "unknown field 'bogus'")
    refused({"set": {"A": "x"}, "message": "m" * 1001}, 400, "longer than 1000 characters")
    refused({"set": {"A" * 300: "x"}}, 400, "longer than 256 characters")
    for name in ("PORT", "HOST", "PAASOPS_APP"):
        refused({"set": {name: "1"}}, 400, f"'{name}' is reserved")
    r = daemon.cli("config", "set", "web", "PORT=1", "HOST=0.0.0.0")
    assert r.returncode == 2 and "config name 'PORT' is reserved" in r.stderr, r
    r = daemon.cli("config", "set", "web", "A" * 300 + "=1")
    assert r.returncode == 2 and "longer than 256 characters" in r.stderr, r
    r = daemon.cli("config", "set", "web", "A=1", "-m", "m" * 1001)
    assert r.returncode == 2 and "longer than 1000 characters" in r.stderr, r

    # Marking a var that is set secret is a change; marking it again is not.
    ok = daemon.ok("POST", cfg, {"secret": ["GREETING"]})
    assert ok["version"] == 3
    wait_deploy_done(daemon)
    assert daemon.ok("GET", cfg)["config"]["GREETING"] == "********"
    refused({"secret": ["GREETING"]}, 400, "nothing to change")

    # While a deploy runs, a bad body is still a 400; a good one a 409.
    gate.unlink()
    daemon.ok("POST", cfg, {"set": {"X": "1"}})
    wait_for(lambda: deploy_status(daemon)["phase"] == "releasing", what="the release phase")
    refused({"unset": "A"}, 400, "must be arrays")
    refused({"set": {"Y": "1"}}, 409, "already deploying")
    gate.write_text("open")
    assert wait_deploy_done(daemon)["result"] == "succeeded"


def test_release_show_prints_no_control_characters(daemon, tmp_path):
    d = write_app(tmp_path / "src", "v1", instances=0)
    spec = open(os.path.join(d, "paasops.yaml")).read()
    daemon.ok("POST", "/v1/apps", {"spec": spec, "dir": d, "message": "\x1b[2J\x1b]0;owned\x07hi\nthere"})
    wait_deploy_done(daemon)
    one = cli_ok(daemon, "releases", "web", "v1").stdout
    assert "\x1b" not in one and "\x07" not in one
    assert "message:   [2J ]0;owned hi there\n" in one, one


def test_a_refused_spec_is_named_as_in_the_archive_not_by_a_server_path(daemon):
    big = b"app: big\n" + b"#" * (1 << 20) + b"\nprocesses: {web: {command: x}}\n"
    status, doc = upload(daemon, "big", tar_bytes([member("paasops.yaml", big)]))
    assert status == 422, doc
    text = json.dumps(doc)
    assert daemon.data not in text and ".tmp" not in text, doc
    assert doc["error"]["details"][0].startswith("paasops.yaml:1:1: file is too large"), doc
    assert os.listdir(os.path.join(daemon.data, "releases")) == []
