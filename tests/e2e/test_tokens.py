"""Bearer tokens on the TCP API: who may call what, app scopes, expiry and
revocation, secrets shown once and never stored, and the `tokens` CLI.
Tokens are made on the unix socket, whose caller is admin."""
import json
import os
import re

import pytest

from conftest import Daemon, pid_alive, wait_for


def spec(app, instances=1, command="sleep 1000"):
    return f"""app: {app}
processes:
  web:
    command: {command}
    instances: {instances}
    stop_timeout: 5s
"""


def make_token(d, role, apps=None, **extra):
    body = {"role": role, **extra}
    if apps is not None:
        body["apps"] = apps
    status, doc = d.request("POST", "/v1/tokens", body)
    assert status == 201, (status, doc)
    return doc


def tcp(d, method, path, token=None, body=None, raw=None, headers=None):
    return d.request(method, path, body=body, token=token, tcp=True, raw=raw, headers=headers)


def assert_error(status, doc, want_status, want_code):
    assert status == want_status, f"got {status} {doc}"
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["code"] == want_code, doc
    assert doc["error"]["message"].strip(), doc
    return doc["error"]["message"]


def snapshot(d):
    """Apps, instance processes, tokens and the newest event id, read as admin
    over the unix socket."""
    apps = {a["name"]: d.ok("GET", f"/v1/apps/{a['name']}") for a in d.ok("GET", "/v1/apps")["apps"]}
    insts = sorted((i["id"], i["pid"], i["restarts"]) for i in d.instances())
    toks = [{k: v for k, v in t.items() if k != "last_used_at"} for t in d.ok("GET", "/v1/tokens")["tokens"]]
    evs = d.events(limit=1)
    return (apps, insts, toks), evs[-1]["id"] if evs else 0


def assert_unchanged(d, before):
    state, last = before
    assert snapshot(d)[0] == state
    new = [e for e in d.ok("GET", f"/v1/events?after={last}")["events"] if e["type"] != "state"]
    assert new == [], new
    assert all(pid_alive(pid) for _, pid, _ in state[1] if pid)


def start_ab(d):
    d.apply(spec("a"))
    d.apply(spec("b"))
    d.wait_ready("a", 1)
    d.wait_ready("b", 1)
    return d


# Every endpoint but /healthz, with a path that reaches app 'b' where there is one.
ENDPOINTS = [
    ("GET", "/v1/version", None),
    ("GET", "/v1/apps", None),
    ("POST", "/v1/apps", {"spec": spec("b", 3)}),
    ("GET", "/v1/apps/b", None),
    ("DELETE", "/v1/apps/b", None),
    ("GET", "/v1/apps/b/instances", None),
    ("POST", "/v1/apps/b/instances/b.web.1/restart", None),
    ("POST", "/v1/apps/b/scale", {"processes": {"web": 2}}),
    ("POST", "/v1/apps/b/restart", None),
    ("POST", "/v1/apps/b/stop", None),
    ("POST", "/v1/apps/b/start", None),
    ("GET", "/v1/apps/b/logs", None),
    ("GET", "/v1/instances", None),
    ("GET", "/v1/events", None),
    ("POST", "/v1/tokens", {"role": "admin"}),
    ("GET", "/v1/tokens", None),
    ("DELETE", "/v1/tokens/tok_000000000000", None),
]
WRITES = [e for e in ENDPOINTS if e[0] != "GET"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Apps a and b and one token of each kind, for tests that change nothing."""
    d = Daemon(tmp_path_factory.mktemp("tokens")).start()
    start_ab(d)
    d.tok = {
        "admin": make_token(d, "admin")["token"],
        "viewer": make_token(d, "viewer")["token"],
        "viewer_a": make_token(d, "viewer", ["a"])["token"],
        "deployer": make_token(d, "deployer")["token"],
        "deployer_a": make_token(d, "deployer", ["a"])["token"],
    }
    yield d
    pids = [i["pid"] for i in d.instances()]
    assert d.stop() == 0, d.read_log()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="instances to be gone")


@pytest.fixture
def ab(shared):
    yield shared
    assert shared.proc.poll() is None, f"daemon died:\n{shared.read_log()}"


# ---- authentication ----

def test_healthz_is_open_and_every_other_endpoint_needs_a_token(ab):
    before = snapshot(ab)
    assert tcp(ab, "GET", "/healthz") == (200, {"status": "ok"})
    for method, path, body in ENDPOINTS:
        status, doc = tcp(ab, method, path, body=body)
        msg = assert_error(status, doc, 401, "unauthorized")
        assert "bearer token is required" in msg, (method, path, msg)
    assert_unchanged(ab, before)


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "Bearer pso_", "Bearer pso_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "Bearer tok_0123", "Bearer {admin}x", "Bearer x{admin}", "Bearer " + "pso_" + "A" * 300,
    "{admin}", "Basic YWRtaW46YWRtaW4=", "Token {admin}", "Bearer\t{admin}", "Bearer {admin_id}",
])
def test_unknown_or_garbage_tokens_are_401(ab, header):
    before = snapshot(ab)
    admin = ab.tok["admin"]
    admin_id = [t for t in ab.ok("GET", "/v1/tokens")["tokens"] if t["role"] == "admin"][0]["id"]
    value = header.format(admin=admin, admin_id=admin_id)
    for method, path, body in [("GET", "/v1/apps", None), ("POST", "/v1/apps/b/scale", {"processes": {"web": 2}}),
                               ("POST", "/v1/tokens", {"role": "admin"}), ("DELETE", "/v1/apps/b", None)]:
        status, doc = tcp(ab, method, path, body=body, headers={"Authorization": value})
        assert_error(status, doc, 401, "unauthorized")
    assert_unchanged(ab, before)


def test_every_token_kind_is_accepted_over_tcp(ab):
    for name, token in ab.tok.items():
        status, doc = tcp(ab, "GET", "/v1/apps", token)
        assert status == 200, (name, doc)


# ---- viewer ----

def test_viewer_reads_everything_but_changes_nothing(ab):
    before = snapshot(ab)
    v = ab.tok["viewer"]
    for method, path, _ in ENDPOINTS:
        if method == "GET" and "/tokens" not in path:
            status, doc = tcp(ab, method, path, v)
            assert status == 200, (path, doc)
    assert [a["name"] for a in tcp(ab, "GET", "/v1/apps", v)[1]["apps"]] == ["a", "b"]
    assert {i["app"] for i in tcp(ab, "GET", "/v1/instances", v)[1]["instances"]} == {"a", "b"}
    for method, path, body in WRITES + [("GET", "/v1/tokens", None)]:
        status, doc = tcp(ab, method, path, v, body=body)
        assert "viewer" in assert_error(status, doc, 403, "forbidden"), (method, path)
    # Applying a spec for an app that does not exist yet is a write too.
    status, doc = tcp(ab, "POST", "/v1/apps", v, body={"spec": spec("c")})
    assert_error(status, doc, 403, "forbidden")
    assert_unchanged(ab, before)
    assert ab.request("GET", "/v1/apps/c")[0] == 404


def test_scoped_viewer_sees_only_its_app(ab):
    before = snapshot(ab)
    v = ab.tok["viewer_a"]
    assert [a["name"] for a in tcp(ab, "GET", "/v1/apps", v)[1]["apps"]] == ["a"]
    assert {i["app"] for i in tcp(ab, "GET", "/v1/instances", v)[1]["instances"]} == {"a"}
    evs = tcp(ab, "GET", "/v1/events?limit=1000", v)[1]["events"]
    assert evs and {e["app"] for e in evs} == {"a"}, {e["app"] for e in evs}
    for path in ["/v1/apps/a", "/v1/apps/a/instances", "/v1/apps/a/logs", "/v1/events?app=a"]:
        assert tcp(ab, "GET", path, v)[0] == 200, path
    for path in ["/v1/apps/b", "/v1/apps/b/instances", "/v1/apps/b/logs", "/v1/events?app=b", "/v1/events?app="]:
        assert_error(*tcp(ab, "GET", path, v), 403, "forbidden")
    assert_unchanged(ab, before)


def test_refusals_about_an_app_share_one_wording(ab):
    before = snapshot(ab)
    v = ab.tok["viewer_a"]
    want = "a viewer token scoped to other apps may not read app 'b'"
    for path in ["/v1/apps/b", "/v1/events?app=b", "/v1/logs?app=b", "/v1/alerts/history?app=b",
                 "/v1/usage?app=b"]:
        assert assert_error(*tcp(ab, "GET", path, v), 403, "forbidden") == want, path
    for who, want in [("viewer", "a viewer token may not change app 'b'"),
                      ("deployer_a", "a deployer token scoped to other apps may not change app 'b'")]:
        for method, path, body in [("POST", "/v1/apps/b/scale", {"processes": {"web": 1}}),
                                   ("POST", "/v1/apps", {"spec": spec("b")})][:2 if "_a" in who else 1]:
            msg = assert_error(*tcp(ab, method, path, ab.tok[who], body=body), 403, "forbidden")
            assert msg == want, (who, path, msg)
    assert_unchanged(ab, before)


# ---- deployer ----

def test_scoped_deployer_is_refused_on_other_apps(ab):
    before = snapshot(ab)
    t = ab.tok["deployer_a"]
    for method, path, body in WRITES:
        if "/tokens" in path:
            continue
        status, doc = tcp(ab, method, path, t, body=body)
        msg = assert_error(status, doc, 403, "forbidden")
        assert "'b'" in msg, (method, path, msg)
    for method, path, body in [("GET", "/v1/apps/b", None), ("GET", "/v1/apps/b/logs", None),
                               ("POST", "/v1/tokens", {"role": "deployer", "apps": ["a", "b"]}),
                               ("GET", "/v1/tokens", None), ("DELETE", "/v1/tokens/tok_000000000000", None)]:
        assert_error(*tcp(ab, method, path, t, body=body), 403, "forbidden")
    # Creating an app its scope does not name is refused and creates nothing.
    status, doc = tcp(ab, "POST", "/v1/apps", t, body={"spec": spec("c")})
    assert "'c'" in assert_error(status, doc, 403, "forbidden")
    # b's instance cannot be reached through a's path either.
    assert_error(*tcp(ab, "POST", "/v1/apps/a/instances/b.web.1/restart", t), 404, "not_found")
    assert_unchanged(ab, before)
    assert ab.request("GET", "/v1/apps/c")[0] == 404


def test_scoped_deployer_lists_only_its_app(ab):
    t = ab.tok["deployer_a"]
    assert [a["name"] for a in tcp(ab, "GET", "/v1/apps", t)[1]["apps"]] == ["a"]
    assert {i["app"] for i in tcp(ab, "GET", "/v1/instances", t)[1]["instances"]} == {"a"}
    evs = tcp(ab, "GET", "/v1/events?limit=1000", t)[1]["events"]
    assert evs and {e["app"] for e in evs} == {"a"}, {e["app"] for e in evs}
    assert_error(*tcp(ab, "GET", "/v1/events?app=b", t), 403, "forbidden")


@pytest.mark.parametrize("who", ["deployer", "deployer_a", "viewer"])
def test_only_admin_manages_tokens(ab, who):
    before = snapshot(ab)
    t = ab.tok[who]
    victim = [x for x in ab.ok("GET", "/v1/tokens")["tokens"] if x["role"] == "admin"][0]["id"]
    for method, path, body in [("POST", "/v1/tokens", {"role": "admin"}), ("GET", "/v1/tokens", None),
                               ("DELETE", f"/v1/tokens/{victim}", None)]:
        assert_error(*tcp(ab, method, path, t, body=body), 403, "forbidden")
    assert_unchanged(ab, before)
    assert tcp(ab, "GET", "/v1/apps", ab.tok["admin"])[0] == 200


def test_scoped_deployer_changes_its_own_app(daemon):
    d = start_ab(daemon)
    t = make_token(d, "deployer", ["a"])["token"]
    b_before = (d.ok("GET", "/v1/apps/b"), [(i["id"], i["pid"]) for i in d.instances("b")])

    status, doc = tcp(d, "POST", "/v1/apps", t, body={"spec": spec("a", 2), "dir": str(d.tmp)})
    assert status == 200 and doc["created"] is False, doc
    d.wait_ready("a", 2)
    status, doc = tcp(d, "POST", "/v1/apps/a/scale", t, body={"processes": {"web": 1}})
    assert status == 200 and doc["processes"][0]["instances"] == 1, doc
    a_pid = d.wait_ready("a", 1)[0]["pid"]
    status, doc = tcp(d, "POST", "/v1/apps/a/instances/a.web.1/restart", t)
    assert (status, doc) == (200, {"restarted": ["a.web.1"]})
    wait_for(lambda: [i for i in d.instances("a") if i["pid"] not in (None, a_pid)], what="a restarted")
    status, doc = tcp(d, "POST", "/v1/apps/a/restart", t, body={"process": "web"})
    assert (status, doc) == (200, {"restarted": ["a.web.1"]})
    status, doc = tcp(d, "POST", "/v1/apps/a/stop", t)
    assert status == 200 and doc["stopped"] is True, doc
    # (A start while still stopping is lost: test_start_while_stopping_runs_the_app_again.)
    wait_for(lambda: d.instances("a")[0]["state"] == "stopped", what="a stopped")
    status, doc = tcp(d, "POST", "/v1/apps/a/start", t)
    assert status == 200 and doc["stopped"] is False, doc
    d.wait_ready("a", 1)  # (Destroying an app with no process left: ..._destroys_its_stopped_app.)
    assert tcp(d, "DELETE", "/v1/apps/a", t) == (200, {"deleted": "a"})
    assert d.request("GET", "/v1/apps/a")[0] == 404
    # Its scope names 'a', so it may create it again.
    status, doc = tcp(d, "POST", "/v1/apps", t, body={"spec": spec("a"), "dir": str(d.tmp)})
    assert status == 201 and doc["created"] is True, doc

    assert (d.ok("GET", "/v1/apps/b"), [(i["id"], i["pid"]) for i in d.instances("b")]) == b_before


def routed_spec(app, routes):
    return spec(app) + f"    routes: {routes}\n"


def test_scoped_deployer_may_not_route_another_apps_host(daemon):
    """A longer path under another app's host would take its requests: a
    token scoped to other apps may not add one, by apply or by upload."""
    d = daemon
    d.apply(routed_spec("b", "[{host: b.test}]"))
    d.apply(routed_spec("a", "[{host: a.test}]"))
    d.wait_ready("a", 1)
    d.wait_ready("b", 1)
    t = make_token(d, "deployer", ["a"])["token"]
    before = snapshot(d)
    for routes in ("[{host: a.test}, {host: b.test, path: /login}]", "[{host: b.test, path: /}]"):
        status, doc = tcp(d, "POST", "/v1/apps", t, body={"spec": routed_spec("a", routes), "dir": str(d.tmp)})
        msg = assert_error(status, doc, 409, "conflict")
        assert "b.test" in msg and "'b'" in msg, msg
    src = d.tmp / "a-src"
    src.mkdir()
    (src / "paasops.yaml").write_text(routed_spec("a", "[{host: a.test}, {host: b.test, path: /login}]"))
    r = d.cli("--server", f"http://127.0.0.1:{d.api_port}", "deploy", str(src), "--wait", token=t)
    assert r.returncode != 0 and "b.test" in r.stderr and "'b'" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert snapshot(d)[0] == before[0]
    # Its own host takes new paths; a token that may change both apps may
    # share a host between them.
    status, doc = tcp(d, "POST", "/v1/apps", t,
                      body={"spec": routed_spec("a", "[{host: a.test}, {host: a.test, path: /x}]"), "dir": str(d.tmp)})
    assert status == 200, doc
    both = make_token(d, "deployer", ["a", "b"])["token"]
    status, doc = tcp(d, "POST", "/v1/apps", both,
                      body={"spec": routed_spec("a", "[{host: a.test}, {host: b.test, path: /login}]"), "dir": str(d.tmp)})
    assert status == 200, doc
    # Once the route is a's, a's own token may keep it (a config change or
    # a re-apply does not claim it again).
    status, doc = tcp(d, "POST", "/v1/apps", t,
                      body={"spec": routed_spec("a", "[{host: a.test}, {host: b.test, path: /login}]"), "dir": str(d.tmp)})
    assert status == 200, doc


def test_scoped_deployer_destroys_its_stopped_app(daemon):
    d = daemon
    d.apply(spec("a"))
    t = make_token(d, "deployer", ["a"])["token"]
    assert tcp(d, "POST", "/v1/apps/a/stop", t)[0] == 200
    wait_for(lambda: d.instances("a")[0]["state"] == "stopped", what="a stopped")
    assert tcp(d, "DELETE", "/v1/apps/a", t) == (200, {"deleted": "a"})
    assert d.request("GET", "/v1/apps/a")[0] == 404
    assert d.request("GET", "/healthz")[0] == 200


def test_start_while_stopping_runs_the_app_again(daemon):
    d = daemon
    d.apply(spec("a", command="trap 'sleep 0.3; exit 0' TERM; while true; do sleep 0.05; done"))
    t = make_token(d, "deployer", ["a"])["token"]
    first = d.wait_ready("a", 1)[0]["pid"]
    assert tcp(d, "POST", "/v1/apps/a/stop", t)[0] == 200
    assert tcp(d, "POST", "/v1/apps/a/start", t)[0] == 200
    assert d.instances("a")[0]["state"] == "stopping"
    wait_for(lambda: [i for i in d.instances("a") if i["state"] == "ready" and i["pid"] != first],
             timeout=3, what="a running again after stop + start")


def test_unscoped_deployer_changes_any_app_but_not_tokens(daemon):
    d = start_ab(daemon)
    t = make_token(d, "deployer")["token"]
    status, doc = tcp(d, "POST", "/v1/apps", t, body={"spec": spec("c"), "dir": str(d.tmp)})
    assert status == 201, doc
    status, doc = tcp(d, "POST", "/v1/apps/a/scale", t, body={"processes": {"web": 2}})
    assert status == 200, doc
    status, doc = tcp(d, "POST", "/v1/apps/b/stop", t)
    assert status == 200 and doc["stopped"] is True, doc
    assert tcp(d, "DELETE", "/v1/apps/c", t) == (200, {"deleted": "c"})
    assert sorted(a["name"] for a in tcp(d, "GET", "/v1/apps", t)[1]["apps"]) == ["a", "b"]
    ids = [x["id"] for x in d.ok("GET", "/v1/tokens")["tokens"]]
    assert_error(*tcp(d, "POST", "/v1/tokens", t, body={"role": "viewer"}), 403, "forbidden")
    assert_error(*tcp(d, "DELETE", f"/v1/tokens/{ids[0]}", t), 403, "forbidden")
    assert [(x["id"], x["revoked"]) for x in d.ok("GET", "/v1/tokens")["tokens"]] == [(i, False) for i in ids]


# ---- admin, secrets, expiry, revocation ----

def test_admin_token_manages_tokens_over_tcp(daemon):
    d = daemon
    admin = make_token(d, "admin", name="root-ci")["token"]
    status, doc = tcp(d, "POST", "/v1/tokens", admin, body={"role": "viewer", "apps": ["a"], "name": "dash"})
    assert status == 201, doc
    assert doc["role"] == "viewer" and doc["apps"] == ["a"] and doc["name"] == "dash"
    assert doc["expires_at"] is None
    assert re.fullmatch(r"tok_[0-9a-f]+", doc["id"]) and doc["token"].startswith("pso_")
    status, listing = tcp(d, "GET", "/v1/tokens", admin)
    assert status == 200
    [row] = [x for x in listing["tokens"] if x["id"] == doc["id"]]
    assert row["role"] == "viewer" and row["apps"] == ["a"] and row["revoked"] is False
    assert tcp(d, "GET", "/v1/apps", doc["token"])[0] == 200
    assert tcp(d, "DELETE", f"/v1/tokens/{doc['id']}", admin) == (200, {"revoked": doc["id"]})
    msg = assert_error(*tcp(d, "GET", "/v1/apps", doc["token"]), 401, "unauthorized")
    assert "revoked" in msg
    assert_error(*tcp(d, "DELETE", "/v1/tokens/tok_ffffffffffff", admin), 404, "not_found")
    [row] = [x for x in d.ok("GET", "/v1/tokens")["tokens"] if x["id"] == doc["id"]]
    assert row["revoked"] is True and row["last_used_at"] is not None


def test_secret_is_shown_once_and_never_stored(daemon):
    d = daemon
    d.apply(spec("a", 0))
    created = [make_token(d, role, apps) for role, apps in [("admin", None), ("deployer", ["a"]), ("viewer", None)]]
    for c in created:
        secret = c["token"]
        assert re.fullmatch(r"pso_[A-Za-z0-9_-]{43}", secret), secret
        assert tcp(d, "GET", "/v1/apps", secret)[0] == 200  # used: last_used_at is written
    assert len({c["token"] for c in created}) == 3
    status, listing = d.request("GET", "/v1/tokens")
    text = json.dumps(listing)
    for c in created:
        assert c["token"] not in text and c["token"][4:] not in text
    for row in listing["tokens"]:
        assert set(row) >= {"id", "name", "role", "apps", "created_at", "expires_at", "revoked", "last_used_at"}
        assert "token" not in row and not any(isinstance(v, str) and v.startswith("pso_") for v in row.values())
    # Not in any file of the data dir (database, WAL, anything), nor the daemon's log.
    files = []
    for root, _, names in os.walk(d.data):
        for n in names:
            p = os.path.join(root, n)
            if os.path.isfile(p):
                files.append(p)
    assert files
    for p in files + [d.log_path]:
        with open(p, "rb") as f:
            blob = f.read()
        for c in created:
            assert c["token"].encode() not in blob, p
            assert c["token"][4:].encode() not in blob, p
    # The ids are stored: the search above would have found a stored secret.
    assert any(created[0]["id"].encode() in open(p, "rb").read() for p in files)


def test_expired_token_is_401(daemon):
    d = daemon
    doc = make_token(d, "viewer", expires="1s")
    assert doc["expires_at"] is not None
    status, _ = tcp(d, "GET", "/v1/apps", doc["token"])
    assert status == 200
    msg = wait_for(lambda: (lambda r: r[1]["error"]["message"] if r[0] == 401 else None)(
        tcp(d, "GET", "/v1/apps", doc["token"])), timeout=5, interval=0.1, what="token to expire")
    assert "expired" in msg
    [row] = [x for x in d.ok("GET", "/v1/tokens")["tokens"] if x["id"] == doc["id"]]
    assert row["expired"] is True and row["revoked"] is False


# ---- the CLI ----

def test_cli_tokens_create_list_revoke(daemon):
    d = start_ab(daemon)
    server = f"http://127.0.0.1:{d.api_port}"
    r = d.cli("tokens", "create", "--role", "viewer", "--app", "a", "--name", "dash")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert re.fullmatch(r"pso_[A-Za-z0-9_-]{43}", secret), r.stdout
    tid = re.search(r"created token (tok_[0-9a-f]+)", r.stderr).group(1)

    r = d.cli("tokens", "list")
    assert r.returncode == 0, r.stderr
    [row] = [line for line in r.stdout.splitlines() if tid in line]
    assert "viewer" in row and "dash" in row and " a " in f" {row} " and "active" in row
    assert secret not in r.stdout

    r = d.cli("apps", server=server, token=secret)
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()]
    assert names == ["a"], r.stdout
    r = d.cli("scale", "a", "web=2", server=server, token=secret)
    assert r.returncode == 1 and "a viewer token may not change app 'a'" in r.stderr, r.stderr
    assert d.ok("GET", "/v1/apps/a")["processes"][0]["instances"] == 1

    r = d.cli("tokens", "revoke", tid)
    assert r.returncode == 0 and tid in r.stdout, r.stderr
    assert_error(*tcp(d, "GET", "/v1/apps", secret), 401, "unauthorized")
    r = d.cli("apps", server=server, token=secret)
    assert r.returncode == 1 and "revoked" in r.stderr, (r.returncode, r.stderr)
    r = d.cli("tokens", "list")
    [row] = [line for line in r.stdout.splitlines() if tid in line]
    assert "revoked" in row
    r = d.cli("tokens", "revoke", "tok_ffffffffffff")
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


def test_cli_without_token_over_tcp_is_told_how(daemon):
    r = daemon.cli("apps", server=f"http://127.0.0.1:{daemon.api_port}")
    assert r.returncode == 1
    assert "bearer token is required" in r.stderr and "PAASOPS_TOKEN" in r.stderr, r.stderr


def test_cli_tokens_input_is_checked_before_the_daemon_is_asked(daemon):
    d = start_ab(daemon)
    before = snapshot(d)
    for args, needle in [(["--role", "admin", "--app", "a"], "--app"),
                         (["--role", "viewer", "--app", "Bad_Name"], "'Bad_Name'"),
                         (["--role", "viewer", "--app", "a", "--app", ""], "--app ''")]:
        r = d.cli("tokens", "create", *args)
        assert r.returncode == 2 and needle in r.stderr, (args, r.returncode, r.stderr)
    r = d.cli("tokens", "revoke", "")
    assert r.returncode == 2 and "token id is needed" in r.stderr, (r.returncode, r.stderr)
    # An id far longer than any: not found, not "no such endpoint".
    r = d.cli("tokens", "revoke", "x" * 1100)
    assert r.returncode == 1 and "token not found" in r.stderr, (r.returncode, r.stderr[:300])
    assert_unchanged(d, before)
    # Naming an app twice scopes the token to it once.
    r = d.cli("tokens", "create", "--role", "viewer", "--app", "a", "--app", "a", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["apps"] == ["a"]


def test_admin_tokens_cannot_be_scoped(daemon):
    d = start_ab(daemon)
    before = snapshot(d)
    for apps in (["a"], ["a", "b"]):
        msg = assert_error(*d.request("POST", "/v1/tokens", {"role": "admin", "apps": apps}), 400, "bad_request")
        assert "admin token cannot be scoped" in msg, msg
    assert_unchanged(d, before)
    # An empty scope is no scope.
    assert make_token(d, "admin", [])["apps"] == []


def test_admin_token_stored_with_a_scope_is_refused_not_widened(daemon, tmp_path):
    import sqlite3
    d = start_ab(daemon)
    doc = make_token(d, "admin")
    assert tcp(d, "GET", "/v1/tokens", doc["token"])[0] == 200
    assert d.stop() == 0
    con = sqlite3.connect(os.path.join(d.data, "state.db"))
    with con:
        con.execute("UPDATE tokens SET apps = ? WHERE id = ?", ('["a"]', doc["id"]))
    con.close()
    d.start()
    for method, path, body in [("GET", "/v1/tokens", None), ("GET", "/v1/apps/a", None),
                               ("POST", "/v1/tokens", {"role": "admin"}), ("POST", "/v1/backup", {})]:
        msg = assert_error(*tcp(d, method, path, doc["token"], body=body), 401, "unauthorized")
        assert doc["id"] in msg and "admin token scoped to apps" in msg, msg
    assert len(d.ok("GET", "/v1/tokens")["tokens"]) == 1


def test_revoke_by_secret_revokes_its_token_and_never_writes_the_secret(daemon):
    d = start_ab(daemon)
    doc = make_token(d, "viewer")
    other = make_token(d, "viewer")
    r = d.cli("tokens", "revoke", doc["token"])
    assert r.returncode == 0 and r.stdout == f"revoked token {doc['id']}\n", (r.stdout, r.stderr)
    assert doc["token"] not in r.stdout
    assert "revoked" in assert_error(*tcp(d, "GET", "/v1/apps", doc["token"]), 401, "unauthorized")
    assert tcp(d, "GET", "/v1/apps", other["token"])[0] == 200
    # An unknown secret is not found, and not echoed either.
    status, resp = d.request("DELETE", "/v1/tokens/pso_unknownsecret")
    assert "unknownsecret" not in assert_error(status, resp, 404, "not_found")
    entries = d.ok("GET", "/v1/audit?limit=1000")["entries"]
    revokes = [e for e in entries if e["method"] == "DELETE"]
    assert [(e["path"], e["status"], e["detail"]) for e in revokes] == [
        ("/v1/tokens/pso_(redacted)", 200, doc["id"]), ("/v1/tokens/pso_(redacted)", 404, None)]
    for p in [os.path.join(d.data, "state.db"), os.path.join(d.data, "state.db-wal"), d.log_path]:
        if os.path.exists(p):
            blob = open(p, "rb").read()
            assert doc["token"][4:].encode() not in blob, p
            assert b"unknownsecret" not in blob, p


def open_tail(d, token):
    """A log tail over TCP with token: (socket, first bytes of the answer)."""
    import socket
    s = socket.create_connection(("127.0.0.1", d.api_port), timeout=30)
    s.sendall(f"GET /v1/logs/stream?app=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def closed(s):
    """Whether the peer has closed s (reading whatever is still in flight)."""
    import select
    while select.select([s], [], [], 0.05)[0]:
        try:
            if not s.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def test_revoking_a_token_ends_its_open_tails(daemon):
    d = start_ab(daemon)
    doc, other = make_token(d, "viewer"), make_token(d, "viewer")
    mine = [open_tail(d, doc["token"]), open_tail(d, doc["token"])]
    theirs = open_tail(d, other["token"])
    d.ok("DELETE", f"/v1/tokens/{doc['id']}")
    for s in mine:
        wait_for(lambda: closed(s), timeout=10, what="the revoked token's tail to end")
        s.close()
    assert not closed(theirs)
    theirs.close()


def test_expiry_of_a_token_ends_its_open_tail(daemon):
    d = start_ab(daemon)
    doc = make_token(d, "viewer", expires="2s")
    s = open_tail(d, doc["token"])
    wait_for(lambda: closed(s), timeout=15, what="the expired token's tail to end")
    s.close()
    assert "expired" in assert_error(*tcp(d, "GET", "/v1/apps", doc["token"]), 401, "unauthorized")
