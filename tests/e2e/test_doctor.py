"""`paasops doctor` and GET /v1/doctor end to end: a fresh daemon has no
failing check; loosened file modes, an exposed TCP API, admin tokens that
never expire, routed process types without a health check, crash loops,
firing alerts and an audit log edited behind the daemon's back each show up
under their check, naming what was found; the exit code is 1 only when a
check fails; only admins may ask."""
import json
import os
import sqlite3

from conftest import HELLO, Daemon, free_port, pid_alive, wait_for

CHECK_IDS = [
    "data-dir-permissions", "secret-key-permissions", "api-socket-permissions",
    "api-exposure", "metrics-exposure", "admin-tokens-expiry", "expired-tokens",
    "audit-chain", "run-as-root", "resource-limits", "disk-space", "health-checks",
    "crash-loops", "alerts-firing",
]


def report(d):
    """The JSON report through the CLI, with the CLI's exit code."""
    r = d.cli("--json", "doctor")
    assert r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    return r.returncode, {c["id"]: c for c in doc["checks"]}, doc


def check(d, cid):
    return report(d)[1][cid]


def table_rows(stdout):
    """STATUS, CHECK and SUMMARY of every row of the human table."""
    lines = stdout.split("\n")
    assert lines[0].split() == ["STATUS", "CHECK", "SUMMARY"], stdout
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        status, cid, summary = line.split(None, 2)
        rows[cid] = (status, summary)
    return rows


def stop(d):
    pids = [i["pid"] for i in d.instances() if i.get("pid")]
    assert d.stop() == 0, d.read_log()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="instances to be gone")


def test_a_fresh_daemon_has_no_failing_check_and_json_counts_match(daemon):
    d = daemon
    r = d.cli("doctor")
    assert r.returncode == 0, (r.stdout, r.stderr)
    rows = table_rows(r.stdout)
    assert list(rows) == CHECK_IDS
    assert all(status in ("ok", "warn") for status, _ in rows.values()), rows
    # The daemon's user is what instances run as.
    if os.geteuid() == 0:
        assert rows["run-as-root"][0] == "warn"
        assert "root" in rows["run-as-root"][1]
        assert "warn run-as-root: " in r.stdout
    else:
        assert rows["run-as-root"][0] == "ok"
    assert rows["api-exposure"][0] == "ok" and "loopback" in rows["api-exposure"][1]
    assert rows["audit-chain"][0] == "ok"

    rc, checks, doc = report(d)
    assert rc == 0
    assert [c["id"] for c in doc["checks"]] == CHECK_IDS
    for c in doc["checks"]:
        assert set(c) == {"id", "status", "summary", "hint"}, c
        assert c["status"] in ("ok", "warn", "fail") and c["summary"] and c["hint"], c
    counted = {s: sum(1 for c in doc["checks"] if c["status"] == s) for s in ("ok", "warn", "fail")}
    assert doc["counts"] == counted and counted["fail"] == 0, doc["counts"]
    # The human table's closing line says the same.
    assert r.stdout.rstrip().endswith(f"{counted['ok']} ok, {counted['warn']} warn, 0 fail")
    # The API answers what the CLI printed.
    assert d.ok("GET", "/v1/doctor")["counts"] == doc["counts"]


def test_loosened_modes_are_named_and_a_readable_key_fails(daemon):
    d = daemon
    key = os.path.join(d.data, "secret.key")
    db = os.path.join(d.data, "state.db")
    db_mode = os.stat(db).st_mode & 0o777
    try:
        os.chmod(d.data, 0o755)
        c = check(d, "data-dir-permissions")
        assert c["status"] == "warn" and d.data in c["summary"] and "0755" in c["summary"], c

        os.chmod(d.data, 0o777)
        r = d.cli("doctor")
        assert r.returncode == 1, (r.stdout, r.stderr)
        status, summary = table_rows(r.stdout)["data-dir-permissions"]
        assert status == "fail" and f"'{d.data}' (mode 0777)" in summary, summary
        assert "fail data-dir-permissions: chmod go-w" in r.stdout
        os.chmod(d.data, 0o700)

        os.chmod(db, 0o666)
        c = check(d, "data-dir-permissions")
        assert c["status"] == "fail" and f"'{db}' (mode 0666)" in c["summary"], c
        os.chmod(db, db_mode)

        os.chmod(key, 0o644)
        rc, checks, _ = report(d)
        assert rc == 1
        c = checks["secret-key-permissions"]
        assert c["status"] == "fail" and key in c["summary"] and "0644" in c["summary"], c
        assert "chmod 0600" in c["hint"]
    finally:
        os.chmod(d.data, 0o700)
        os.chmod(db, db_mode)
        os.chmod(key, 0o600)
    rc, checks, _ = report(d)
    assert rc == 0
    for cid in ("data-dir-permissions", "secret-key-permissions"):
        assert checks[cid]["status"] == "ok", checks[cid]


def test_a_loose_socket_warns(daemon):
    d = daemon
    try:
        os.chmod(d.sock, 0o666)
        rc, checks, _ = report(d)
        assert rc == 0  # a warning alone
        c = checks["api-socket-permissions"]
        assert c["status"] == "warn" and d.sock in c["summary"] and "0666" in c["summary"], c
    finally:
        os.chmod(d.sock, 0o600)
    assert check(d, "api-socket-permissions")["status"] == "ok"


def test_an_api_and_public_metrics_off_loopback_warn_naming_the_address(tmp_path):
    port = free_port()
    d = Daemon(tmp_path, api=False).start(extra=["--api", f"0.0.0.0:{port}", "--metrics-public"])
    try:
        rc, checks, _ = report(d)
        assert rc == 0
        api, metrics = checks["api-exposure"], checks["metrics-exposure"]
        assert api["status"] == "warn" and f"0.0.0.0:{port}" in api["summary"], api
        assert "without TLS" in api["summary"] and "TLS" in api["hint"], api
        assert metrics["status"] == "warn" and f"0.0.0.0:{port}" in metrics["summary"], metrics
    finally:
        stop(d)


def test_routed_process_types_without_health_check_are_named(daemon):
    d = daemon
    d.apply(f"""app: shop
processes:
  web:
    command: {HELLO}
    routes: [{{host: shop.test}}]
    stop_timeout: 5s
  worker:
    command: sleep 1000
    stop_timeout: 5s
""")
    d.apply(f"""app: blog
processes:
  web:
    command: {HELLO}
    health: {{http: /healthz, interval: 1s, timeout: 1s}}
    routes: [{{host: blog.test}}]
    stop_timeout: 5s
""")
    c = check(d, "health-checks")
    assert c["status"] == "warn", c
    assert c["summary"] == "1 routed process type without a health check: shop/web", c
    r = d.cli("doctor")
    assert r.returncode == 0
    assert "warn health-checks: add a health check" in r.stdout


def test_admin_tokens_without_expiry_are_counted(daemon):
    d = daemon
    assert check(d, "admin-tokens-expiry")["status"] == "ok"
    forever = d.ok("POST", "/v1/tokens", {"role": "admin", "name": "root-ci"})["id"]
    d.ok("POST", "/v1/tokens", {"role": "admin", "expires": "1h"})
    d.ok("POST", "/v1/tokens", {"role": "viewer"})
    c = check(d, "admin-tokens-expiry")
    assert c["status"] == "warn", c
    assert c["summary"] == f"1 admin token never expires: {forever} (root-ci)", c
    second = d.ok("POST", "/v1/tokens", {"role": "admin"})["id"]
    c = check(d, "admin-tokens-expiry")
    assert c["summary"].startswith("2 admin tokens never expire: "), c
    assert forever in c["summary"] and second in c["summary"]
    d.ok("DELETE", f"/v1/tokens/{second}")
    d.ok("DELETE", f"/v1/tokens/{forever}")
    assert check(d, "admin-tokens-expiry")["status"] == "ok"


def test_only_admins_may_ask(daemon):
    d = daemon
    server = f"http://127.0.0.1:{d.api_port}"
    for role in ("viewer", "deployer"):
        tok = d.ok("POST", "/v1/tokens", {"role": role})["token"]
        status, doc = d.request("GET", "/v1/doctor", token=tok, tcp=True)
        assert status == 403 and doc["error"]["code"] == "forbidden", (status, doc)
        r = d.cli("doctor", token=tok, server=server)
        assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
        assert r.stderr == f"error: a {role} token may not call GET /v1/doctor\n", r.stderr
    status, _ = d.request("GET", "/v1/doctor", tcp=True)
    assert status == 401
    admin = d.ok("POST", "/v1/tokens", {"role": "admin", "expires": "1h"})["token"]
    r = d.cli("doctor", token=admin, server=server)
    assert r.returncode == 0, r.stderr
    # Reading the report changes nothing: no audit entry.
    assert not [e for e in d.ok("GET", "/v1/audit")["entries"] if e["path"] == "/v1/doctor"]


def test_crash_loops_fail_naming_the_app_and_their_alert_warns(daemon):
    d = daemon
    d.apply("""app: broken
processes:
  web:
    command: exit 3
    stop_timeout: 1s
""")
    d.wait_state("broken.web.1", "crashed", timeout=20)
    rc, checks, _ = report(d)
    assert rc == 1
    c = checks["crash-loops"]
    assert c["status"] == "fail" and c["summary"] == "1 instance in a crash loop in app broken", c

    # The failed first deploy fires its own alert too; each is named.
    def firing():
        c = check(d, "alerts-firing")
        return c if "InstanceCrashLooping (broken)" in c["summary"] else None
    c = wait_for(firing, timeout=15, what="the crash loop's alert in the report")
    assert c["status"] == "warn", c
    count, names = c["summary"].split(" firing: ")
    assert count == f"{len(names.split(', '))} alert" + ("s" if ", " in names else ""), c


def test_an_edited_audit_entry_fails_the_report(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply("""app: shop
processes:
  web:
    command: sleep 1000
    stop_timeout: 5s
""")
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 2}})
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 1}})
    c = check(d, "audit-chain")
    assert c["status"] == "ok" and c["summary"].startswith("the audit log's 3 entries chain"), c
    stop(d)

    con = sqlite3.connect(os.path.join(d.data, "state.db"))
    try:
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("UPDATE audit SET status = 500 WHERE seq = 2")
        con.commit()
    finally:
        con.close()

    d.start()
    try:
        r = d.cli("doctor")
        assert r.returncode == 1, (r.stdout, r.stderr)
        status, summary = table_rows(r.stdout)["audit-chain"]
        assert status == "fail", r.stdout
        assert summary.startswith("the audit log is broken at entry 2 of 3: hash mismatch"), summary
        assert "fail audit-chain: " in r.stdout
        assert r.stdout.rstrip().endswith(" 1 fail")
        rc, checks, doc = report(d)
        assert rc == 1 and checks["audit-chain"]["status"] == "fail"
        assert doc["counts"]["fail"] == 1
    finally:
        stop(d)
