"""The audit log end to end: every call that is not a GET is recorded with
who made it and what was answered (refused ones included), secrets never
reach it, only admins read it, the chain recomputes as doc/audit.md says
(keyed with the data dir's secret key), `paasops audit verify` finds an
entry edited in the database while the daemon was down (rehashed or not),
tells entries of another key from tampered ones, and walks the log without
holding up the daemon."""
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time

import pytest

from conftest import Daemon, pid_alive, wait_for


def spec(app, instances=1):
    return f"""app: {app}
processes:
  web:
    command: sleep 1000
    instances: {instances}
    stop_timeout: 5s
"""


def tcp(d, method, path, token=None, body=None, raw=None, headers=None):
    return d.request(method, path, body=body, token=token, tcp=True, raw=raw, headers=headers)


def audit(d, query=""):
    return d.ok("GET", "/v1/audit" + query)["entries"]


def last_seq(d):
    entries = audit(d, "?limit=1")
    return entries[-1]["seq"] if entries else 0


def since(d, seq):
    return audit(d, f"?after={seq}&limit=10000")


def wait_deploy_done(d, app):
    wait_for(lambda: d.ok("GET", f"/v1/apps/{app}/deploy").get("result"), timeout=30,
             what=f"{app}'s deploy to end")


def cli_ok(d, *args, **kw):
    r = d.cli(*args, **kw)
    assert r.returncode == 0, f"paasops {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def db_path(d):
    return os.path.join(d.data, "state.db")


def audit_rows(d):
    """Every audit row straight from the database (read only)."""
    con = sqlite3.connect(f"file:{db_path(d)}?mode=ro", uri=True)
    try:
        return con.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    finally:
        con.close()


def summary(entries):
    return [(e["actor"], e["method"], e["path"], e["status"], e["app"]) for e in entries]


def stop(d):
    pids = [i["pid"] for i in d.instances() if i.get("pid")]
    assert d.stop() == 0, d.read_log()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="instances to be gone")


# ---- what is recorded ----

def test_changes_are_recorded_in_order_and_secret_values_never(daemon):
    d = daemon
    secret_value = "s3cr3t-" + secrets.token_hex(12)
    (d.tmp / "paasops.yaml").write_text(spec("shop"))
    cli_ok(d, "apply", "-f", str(d.tmp / "paasops.yaml"))
    wait_deploy_done(d, "shop")
    cli_ok(d, "scale", "shop", "web=2")
    cli_ok(d, "ps", "shop")
    cli_ok(d, "config", "set", "shop", f"API_KEY={secret_value}", "LOG_LEVEL=debug", "--secret")
    wait_deploy_done(d, "shop")
    r = cli_ok(d, "tokens", "create", "--role", "viewer", "--app", "shop", "--name", "dash")
    token = r.stdout.strip()
    token_id = re.search(r"created token (tok_[0-9a-f]+)", r.stderr).group(1)

    entries = audit(d)
    assert summary(entries) == [
        ("local", "POST", "/v1/apps", 201, "shop"),
        ("local", "POST", "/v1/apps/shop/scale", 200, "shop"),
        ("local", "POST", "/v1/apps/shop/config", 202, "shop"),
        ("local", "POST", "/v1/tokens", 201, None),
    ], entries
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert all(e["role"] == "admin" and e["remote"] == "unix" for e in entries), entries
    assert entries[1]["detail"] == "web=2"
    assert "API_KEY (secret)" in entries[2]["detail"] and "LOG_LEVEL" in entries[2]["detail"]
    detail = entries[3]["detail"]
    assert f"id={token_id}" in detail and "role=viewer" in detail and "apps=shop" in detail
    assert "name=dash" in detail
    for e in entries:
        assert set(e) == {"seq", "time", "actor", "role", "method", "path", "app", "status",
                          "remote", "detail", "hash"}, e
        assert re.fullmatch(r"[0-9a-f]{64}", e["hash"]), e
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]), e

    # Neither the config value nor the token's secret is in the log, as the
    # API shows it or as the database holds it.
    text = json.dumps(d.ok("GET", "/v1/audit?limit=10000"))
    rows = audit_rows(d)
    assert len(rows) == 4
    for needle in (secret_value, token, token[4:]):
        assert needle not in text
        assert not any(needle in str(cell) for row in rows for cell in row)
    for suffix in ("", "-wal"):
        p = db_path(d) + suffix
        if os.path.exists(p):
            with open(p, "rb") as f:
                blob = f.read()
            assert secret_value.encode() not in blob and token[4:].encode() not in blob, p

    # The CLI shows the same, as a table and as JSON.
    r = cli_ok(d, "audit")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "METHOD", "PATH", "STATUS", "APP", "DETAIL"]
    assert len(lines) == 5 and "/v1/apps/shop/scale" in lines[2] and "web=2" in lines[2]
    assert secret_value not in r.stdout
    assert json.loads(cli_ok(d, "--json", "audit", "-n", "2").stdout)["entries"] == entries[2:]
    r = cli_ok(d, "audit", "verify")
    assert r.stdout.strip() == f"audit log intact: 4 entries, head 4:{entries[-1]['hash']}"


def test_refused_calls_are_recorded_and_gets_are_not(daemon):
    d = daemon
    d.apply(spec("shop"))
    viewer = d.ok("POST", "/v1/tokens", {"role": "viewer"})
    deployer = d.ok("POST", "/v1/tokens", {"role": "deployer", "apps": ["other"]})
    start = last_seq(d)

    # Reads, whoever makes them and whatever they answer, are not recorded.
    d.ok("GET", "/v1/apps")
    assert tcp(d, "GET", "/v1/apps", viewer["token"])[0] == 200
    assert tcp(d, "GET", "/v1/tokens", viewer["token"])[0] == 403
    assert tcp(d, "GET", "/v1/apps/nope")[0] == 401
    assert tcp(d, "HEAD", "/v1/apps", viewer["token"])[0] == 200
    assert d.request("GET", "/v1/apps/nope")[0] == 404
    # Nor calls that match no endpoint.
    assert d.request("POST", "/v1/nope", {})[0] == 404
    assert d.request("PUT", "/v1/apps", {})[0] == 405
    assert since(d, start) == []

    calls = [
        (tcp(d, "POST", "/v1/apps/shop/scale", viewer["token"], body={"processes": {"web": 2}}),
         (viewer["id"], "viewer", "POST", "/v1/apps/shop/scale", 403, "shop")),
        (tcp(d, "POST", "/v1/apps", deployer["token"], body={"spec": spec("shop", 3)}),
         (deployer["id"], "deployer", "POST", "/v1/apps", 403, "shop")),
        (tcp(d, "DELETE", "/v1/apps/shop"),
         ("-", "-", "DELETE", "/v1/apps/shop", 401, "shop")),
        (tcp(d, "POST", "/v1/tokens", "pso_" + "A" * 43, body={"role": "admin"}),
         ("-", "-", "POST", "/v1/tokens", 401, None)),
        (d.request("POST", "/v1/apps/shop/scale", raw="{not json"),
         ("local", "admin", "POST", "/v1/apps/shop/scale", 400, "shop")),
        (d.request("POST", "/v1/apps/nope/stop"),
         ("local", "admin", "POST", "/v1/apps/nope/stop", 404, "nope")),
        (d.request("DELETE", "/v1/tokens/tok_000000000000"),
         ("local", "admin", "DELETE", "/v1/tokens/tok_000000000000", 404, None)),
        # An upload refused before its body is read, and one answered later.
        (tcp(d, "POST", "/v1/apps/shop/releases", raw=b"x" * 1000,
             headers={"Content-Type": "application/gzip"}),
         ("-", "-", "POST", "/v1/apps/shop/releases", 401, "shop")),
        (tcp(d, "POST", "/v1/apps/shop/releases", viewer["token"], raw=b"x" * 1000,
             headers={"Content-Type": "application/gzip"}),
         (viewer["id"], "viewer", "POST", "/v1/apps/shop/releases", 403, "shop")),
    ]
    status, doc = d.request("POST", "/v1/apps/shop/releases", raw=b"not an archive",
                            headers={"Content-Type": "application/gzip"})
    assert 400 <= status < 500, (status, doc)
    calls.append(((status, doc), ("local", "admin", "POST", "/v1/apps/shop/releases", status, "shop")))

    for (status, doc), want in calls:
        assert status == want[4], (want, status, doc)
    entries = since(d, start)
    assert [(e["actor"], e["role"], e["method"], e["path"], e["status"], e["app"])
            for e in entries] == [want for _, want in calls]
    assert [e["remote"] for e in entries] == ["127.0.0.1"] * 4 + ["unix"] * 3 + ["127.0.0.1"] * 2 + ["unix"]
    assert all(e["detail"] is None for e in entries), entries
    assert [e["seq"] for e in entries] == list(range(start + 1, start + 1 + len(calls)))
    assert cli_ok(d, "audit", "verify").stdout.startswith(f"audit log intact: {start + len(calls)} entries")


# ---- reading it ----

def test_audit_filters_refuses_bad_queries_and_is_admin_only(daemon):
    d = daemon
    d.apply(spec("shop"))
    d.apply(spec("blog"))
    cli_ok(d, "stop", "blog")
    admin = d.ok("POST", "/v1/tokens", {"role": "admin"})["token"]
    others = [d.ok("POST", "/v1/tokens", body)["token"] for body in
              ({"role": "viewer"}, {"role": "deployer"}, {"role": "deployer", "apps": ["shop"]})]

    assert summary(audit(d, "?app=blog")) == [("local", "POST", "/v1/apps", 201, "blog"),
                                             ("local", "POST", "/v1/apps/blog/stop", 200, "blog")]
    assert [e["seq"] for e in audit(d, "?limit=2")] == [6, 7]
    assert [e["seq"] for e in audit(d, "?after=4&limit=2")] == [6, 7]
    assert [e["seq"] for e in audit(d, "?after=4")] == [5, 6, 7]
    assert [e["seq"] for e in audit(d, "?app=shop&after=1")] == []
    assert audit(d, "?app=nope") == []

    for query, name in [("limit=0", "limit"), ("limit=10001", "limit"), ("limit=ten", "limit"),
                        ("limit=", "limit"), ("after=-1", "after"), ("after=1.5", "after"),
                        ("app=Shop", "app"), ("app=", "app"), ("app=a%2Fb", "app"), ("app=%zz", "app")]:
        status, doc = d.request("GET", "/v1/audit?" + query)
        assert status == 400, (query, status, doc)
        assert doc["error"]["code"] == "bad_request" and f"'{name}'" in doc["error"]["message"], (query, doc)

    for path in ("/v1/audit", "/v1/audit/verify"):
        for token in others:
            status, doc = tcp(d, "GET", path, token)
            assert status == 403 and doc["error"]["code"] == "forbidden", (path, doc)
        assert tcp(d, "GET", path)[0] == 401
        assert tcp(d, "GET", path, admin)[0] == 200
    server = f"http://127.0.0.1:{d.api_port}"
    r = d.cli("audit", server=server, token=others[0])
    assert r.returncode == 1 and "viewer" in r.stderr, r.stderr
    r = d.cli("audit", "verify", server=server, token=others[1])
    assert r.returncode == 1 and "deployer" in r.stderr, r.stderr
    assert cli_ok(d, "audit", "--app", "blog", server=server, token=admin).stdout.count("/v1/apps") == 2
    r = d.cli("audit", "-n", "0")
    assert r.returncode == 2 and "--limit" in r.stderr, r.stderr


# ---- tampering ----

def test_verify_finds_an_entry_edited_while_the_daemon_was_down(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 2}})
    d.ok("POST", "/v1/tokens", {"role": "viewer"})
    assert d.request("POST", "/v1/apps/nope/stop")[0] == 404
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 1}})
    r = cli_ok(d, "audit", "verify")
    head = audit(d)[-1]["hash"]
    assert r.stdout.strip() == f"audit log intact: 5 entries, head 5:{head}"
    verdict = d.ok("GET", "/v1/audit/verify")
    assert verdict["ok"] is True and verdict["entries"] == 5 and verdict["head"] == head, verdict
    assert verdict["keyed_from"] == 1 and verdict["new_entries"] == 0, verdict
    stop(d)

    con = sqlite3.connect(db_path(d))
    try:
        # The daemon's own triggers refuse changes and removals.
        for sql in ("UPDATE audit SET status = 200 WHERE seq = 4", "DELETE FROM audit WHERE seq = 4"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
        con.rollback()
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("UPDATE audit SET status = 200 WHERE seq = 4")
        con.commit()
        assert con.execute("SELECT status FROM audit WHERE seq = 4").fetchone() == (200,)
    finally:
        con.close()

    d.start()
    try:
        r = d.cli("audit", "verify")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stdout == ""
        assert r.stderr.startswith("audit log BROKEN at entry 4: hash mismatch"), r.stderr
        r = d.cli("--json", "audit", "verify")
        assert r.returncode == 1
        doc = json.loads(r.stdout)
        assert doc["ok"] is False and doc["broken_at"] == 4 and doc["entries"] == 5, doc
        assert "hash mismatch" in doc["reason"]
        status, doc = d.request("GET", "/v1/audit/verify")
        assert status == 200 and doc["ok"] is False and doc["broken_at"] == 4, doc
        # The listing still shows what the database now says.
        assert audit(d)[3]["status"] == 200
    finally:
        stop(d)


# ---- the chain as doc/audit.md describes it ----

def net(v):
    if v is None:
        return b"~,"
    b = str(v).encode()
    return str(len(b)).encode() + b":" + b + b","


def audit_key(d):
    """K: HKDF-SHA256 of DATA/secret.key, no salt, info "paasops audit chain v1"."""
    with open(os.path.join(d.data, "secret.key"), "rb") as f:
        ikm = f.read()
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, b"paasops audit chain v1\x01", hashlib.sha256).digest()


def key_id(key):
    return hmac.new(key, b"paasops-audit-key-id", hashlib.sha256).hexdigest()[:16]


FIELDS = "seq, time, actor, role, method, path, app, status, remote, detail"


def entry_hash(fields, prev, key=None):
    """fields: the row's FIELDS; key None: the plain rule of entries from
    before keyed chaining."""
    body = b"".join(net(v) for v in fields) + net(prev)
    if key is None:
        return hashlib.sha256(b"paasops-audit-1\n" + body).hexdigest()
    return hmac.new(key, b"paasops-audit-2\n" + body, hashlib.sha256).hexdigest()


def keys_mac(key, from_seq, keyed_from, kid):
    return hmac.new(key, b"paasops-audit-keys-1\n" + net(from_seq) + net(keyed_from) + net(kid),
                    hashlib.sha256).hexdigest()


def rehash(con, seq, key=None):
    """Gives entry seq and every later one fresh hashes that link up, as
    someone with write access to the database could: with plain SHA-256
    (key None), or with a key (the right one only if they could read it)."""
    before = con.execute("SELECT hash FROM audit WHERE seq = ?", (seq - 1,)).fetchone()
    prev = before[0] if before else "0" * 64
    rows = con.execute(f"SELECT {FIELDS} FROM audit WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
    for row in rows:
        h = entry_hash(row, prev, key)
        con.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, h, row[0]))
        prev = h


def unlock(con):
    for t in ("audit_no_update", "audit_no_delete"):
        con.execute(f"DROP TRIGGER IF EXISTS {t}")


def edit_db(d, fn):
    """Runs fn(con) on the daemon's database and commits."""
    con = sqlite3.connect(db_path(d))
    try:
        fn(con)
        con.commit()
    finally:
        con.close()


def test_chain_recomputes_from_the_doc_with_the_data_dirs_key(daemon):
    d = daemon
    d.apply(spec("shop"))
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 2}})
    d.request("POST", "/v1/apps/shop/config", {"set": {"NOTE": "x"}})  # 202, or 409 while deploying
    assert d.request("POST", "/v1/apps/nope/stop")[0] == 404
    d.ok("POST", "/v1/tokens", {"role": "viewer", "name": "d\u00e9j\u00e0 vu"})
    key = audit_key(d)
    con = sqlite3.connect(f"file:{db_path(d)}?mode=ro", uri=True)
    try:
        rows = con.execute(f"SELECT {FIELDS}, prev, hash FROM audit ORDER BY seq").fetchall()
        keys = con.execute("SELECT from_seq, keyed_from, key_id, mac FROM audit_keys ORDER BY id").fetchall()
    finally:
        con.close()
    assert len(rows) >= 5
    # A new data dir: keyed from entry 1, with this data dir's key.
    assert keys == [(1, 1, key_id(key), keys_mac(key, 1, 1, key_id(key)))]
    prev = "0" * 64
    for row in rows:
        assert row[10] == prev, row
        assert row[11] == entry_hash(row[:10], prev, key), row
        assert row[11] != entry_hash(row[:10], prev), row
        prev = row[11]
    verdict = d.ok("GET", "/v1/audit/verify")
    assert verdict["ok"] is True and verdict["head"] == prev and verdict["keyed_from"] == 1, verdict


def test_a_rewrite_without_the_key_is_found_at_the_first_rewritten_entry(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    for n in (2, 1, 3, 1):
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": n}})
    assert cli_ok(d, "audit", "verify").stdout.startswith("audit log intact: 5 entries")
    stop(d)
    original = audit_key(d)
    wrong = secrets.token_bytes(32)
    for how, key in (("plain SHA-256", None), ("a wrong key", wrong), ("the right key", original)):
        def rewrite(con):
            unlock(con)
            con.execute("UPDATE audit SET status = 500 WHERE seq = 3")
            rehash(con, 3, key)
        edit_db(d, rewrite)
        d.start()
        try:
            r = d.cli("audit", "verify")
            if key is original:
                # Only the key tells a rewrite from the real thing.
                assert r.returncode == 0 and r.stdout.startswith("audit log intact: 5 entries"), (how, r.stderr)
            else:
                assert r.returncode == 1, (how, r.stdout)
                assert r.stderr.startswith("audit log BROKEN at entry 3: hash mismatch"), (how, r.stderr)
                status, doc = d.request("GET", "/v1/audit/verify")
                assert status == 200 and doc["ok"] is False and doc["broken_at"] == 3, (how, doc)
        finally:
            stop(d)


def test_a_log_from_before_keyed_chaining_verifies_and_is_keyed_after(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    for n in (2, 1, 3):
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": n}})
    stop(d)

    # What an older paasops left: schema 3 (no maintenance column, no
    # autoscale or audit_keys table), plain hashes.
    def downgrade(con):
        unlock(con)
        con.execute("DROP TABLE audit_keys")
        con.execute("DROP TABLE autoscale")
        con.execute("ALTER TABLE apps DROP COLUMN maintenance")
        con.execute("PRAGMA user_version = 3")
        rehash(con, 1)
    edit_db(d, downgrade)

    d.start()
    try:
        assert "entries from 5 on are chained with a key" in d.read_log()
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 1}})
        verdict = d.ok("GET", "/v1/audit/verify")
        assert verdict["ok"] is True and verdict["entries"] == 5 and verdict["keyed_from"] == 5, verdict
        key = audit_key(d)
        con = sqlite3.connect(f"file:{db_path(d)}?mode=ro", uri=True)
        try:
            rows = con.execute(f"SELECT {FIELDS}, prev, hash FROM audit ORDER BY seq").fetchall()
        finally:
            con.close()
        for row in rows:
            want = entry_hash(row[:10], row[10], key if row[0] >= 5 else None)
            assert row[11] == want, row
    finally:
        stop(d)

    # An old entry edited and rehashed the plain way is still found: the
    # first keyed entry links to the old hash.
    def edit_old(con):
        unlock(con)
        con.execute("UPDATE audit SET status = 201 WHERE seq = 2")
        prev = con.execute("SELECT hash FROM audit WHERE seq = 1").fetchone()[0]
        for seq in (2, 3, 4):
            row = con.execute(f"SELECT {FIELDS} FROM audit WHERE seq = ?", (seq,)).fetchone()
            h = entry_hash(row, prev)
            con.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, h, seq))
            prev = h
    edit_db(d, edit_old)
    d.start()
    try:
        r = d.cli("audit", "verify")
        assert r.returncode == 1
        assert r.stderr.startswith("audit log BROKEN at entry 5: prev link mismatch"), r.stderr
    finally:
        stop(d)


def test_a_replaced_secret_key_leaves_entries_unchecked_not_tampered(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    for n in (2, 1):
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": n}})
    old_id = key_id(audit_key(d))
    stop(d)
    key_path = os.path.join(d.data, "secret.key")
    with open(key_path, "rb") as f:
        original = f.read()
    with open(key_path, "wb") as f:
        f.write(secrets.token_bytes(32))
    new_id = key_id(audit_key(d))

    d.start()
    try:
        assert "secret.key is not the key that chained the latest entries" in d.read_log()
        r = d.cli("audit", "verify")
        assert r.returncode == 1 and r.stdout == "", r.stdout
        assert r.stderr.startswith("audit log cannot be checked from entry 1 with this daemon's key: "
                                   "entries 1 to 3 were chained with another secret key"), r.stderr
        assert old_id in r.stderr and new_id in r.stderr and "BROKEN" not in r.stderr, r.stderr
        doc = json.loads(d.cli("--json", "audit", "verify").stdout)
        assert doc["ok"] is False and "broken_at" not in doc, doc
        assert doc["unchecked"] == {"entries": 3, "from": 1, "to": 3}, doc
        # What is recorded from now on is chained with the new key and checked.
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 2}})
        doc = d.ok("GET", "/v1/audit/verify")
        assert doc["entries"] == 4 and doc["unchecked"] == {"entries": 3, "from": 1, "to": 3}, doc
        doctor = d.ok("GET", "/v1/doctor")
        check = next(c for c in doctor["checks"] if c["id"] == "audit-chain")
        assert check["status"] == "warn" and "another secret key" in check["summary"], check
    finally:
        stop(d)

    # The old key back: its entries check again, the interim key's do not.
    with open(key_path, "wb") as f:
        f.write(original)
    d.start()
    try:
        doc = d.ok("GET", "/v1/audit/verify")
        assert doc["ok"] is False and doc["unchecked"] == {"entries": 1, "from": 4, "to": 4}, doc
        assert new_id in doc["reason"], doc
    finally:
        stop(d)


def test_the_next_verify_checks_the_head_the_last_one_found(daemon):
    d = daemon
    d.apply(spec("shop"))
    for n in (2, 1, 3):
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": n}})
    first = d.ok("GET", "/v1/audit/verify")
    assert first["ok"] and first["entries"] == 4 and "last_verify" not in first, first
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 1}})
    d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 2}})
    r = cli_ok(d, "audit", "verify")
    head = audit(d)[-1]["hash"]
    assert r.stdout.strip() == f"audit log intact: 6 entries, 2 new since the last verify, head 6:{head}"
    doc = d.ok("GET", "/v1/audit/verify")
    assert doc["new_entries"] == 0 and doc["last_verify"]["entries"] == 6, doc
    assert doc["last_verify"]["head"] == head, doc

    # The two newest cut off while the daemon runs (with the triggers
    # dropped): a valid, shorter chain, but not the one verified before.
    def cut(con):
        unlock(con)
        con.execute("DELETE FROM audit WHERE seq >= 5")
    edit_db(d, cut)
    r = d.cli("audit", "verify")
    assert r.returncode == 1
    assert r.stderr.startswith("audit log BROKEN at entry 5: the log ends at entry 4, before entry 6 "
                               "that this daemon's last verify found"), r.stderr


# ---- verifying without holding up the daemon ----

def build_log(d, n):
    """Appends n correctly chained, keyed entries straight to the database
    of a stopped daemon, much faster than n API calls."""
    key = audit_key(d)
    con = sqlite3.connect(db_path(d))
    try:
        seq, prev = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        now = int(time.time() * 1000)
        batch = []
        for i in range(n):
            seq += 1
            fields = (seq, now + i, "local", "admin", "POST", "/v1/apps/shop/scale", "shop", 200,
                      "unix", f"web={i % 7 + 1}")
            h = entry_hash(fields, prev, key)
            batch.append(fields + (prev, h))
            prev = h
        con.executemany("INSERT INTO audit(seq, time, actor, role, method, path, app, status, remote,"
                        " detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
        con.commit()
    finally:
        con.close()
    return seq, prev


def test_verify_runs_beside_the_api_and_one_at_a_time(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    first_hash = audit(d)[0]["hash"]
    stop(d)
    total, head = build_log(d, 300000)
    d.start()
    try:
        results = {}

        def walk(name, query=""):
            results[name] = d.request("GET", "/v1/audit/verify" + query)
            results[name + "_done"] = time.monotonic()

        main = threading.Thread(target=walk, args=("main",))
        main.start()
        wait_for(lambda: "audit: verify started" in d.read_log(), timeout=10, interval=0.005,
                 what="the verify to start")
        # A verify with another anchor is refused while the first runs.
        other = f"?anchor=1:{first_hash}"
        status, doc = d.request("GET", "/v1/audit/verify" + other)
        assert "main" not in results, "the verify ended before the test saw it run: make the log longer"
        assert status == 409, (status, doc)
        assert doc["error"]["code"] == "conflict" and "another anchor" in doc["error"]["message"], doc
        # Meanwhile the daemon answers the API, and a second verify like
        # the first joins it, as does doctor's audit check.
        joined = threading.Thread(target=walk, args=("joined",))
        joined.start()

        def doctor():
            results["doctor"] = d.request("GET", "/v1/doctor")
        doc_thread = threading.Thread(target=doctor)
        doc_thread.start()
        assert d.request("GET", "/healthz")[0] == 200
        assert d.ok("GET", "/v1/apps")["apps"][0]["name"] == "shop"
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": 2}})
        answered = time.monotonic()
        assert d.request("GET", "/v1/audit/verify" + other)[0] == 409  # still running
        main.join(timeout=300)
        joined.join(timeout=300)
        doc_thread.join(timeout=300)
        assert results["main_done"] > answered and results["joined_done"] > answered
        status, doc = results["main"]
        assert status == 200 and doc["ok"] is True, doc
        # The walk saw the log as it was when it began.
        assert doc["entries"] == total and doc["head"] == head, doc
        assert results["joined"] == results["main"]
        status, report = results["doctor"]
        check = next(c for c in report["checks"] if c["id"] == "audit-chain")
        assert check["status"] == "ok" and f"{total} entries" in check["summary"], check
        after = d.ok("GET", "/v1/audit/verify" + other)
        assert after["ok"] and after["entries"] == total + 1 and after["new_entries"] == 1, after
    finally:
        stop(d)


def test_a_verify_under_way_does_not_hold_up_shutdown(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    stop(d)
    build_log(d, 300000)
    d.start()
    answers = []

    def walk():
        try:
            answers.append(d.request("GET", "/v1/audit/verify"))
        except OSError as e:  # the connection closed as the daemon stops
            answers.append(e)

    t = threading.Thread(target=walk)
    t.start()
    wait_for(lambda: "audit: verify started" in d.read_log(), timeout=10, interval=0.005,
             what="the verify to start")
    assert d.stop() == 0, d.read_log()
    t.join(timeout=30)
    log = d.read_log()
    # The walk was cut short, not waited for.
    assert "audit: verify ended after" in log and "canceled" in log, log
    assert "audit: verify of" not in log, log
    assert len(answers) == 1 and (isinstance(answers[0], OSError) or answers[0][0] == 503), answers


def test_an_anchor_catches_a_cut_tail_and_a_rewritten_chain(tmp_path):
    d = Daemon(tmp_path).start()
    d.apply(spec("shop"))
    for n in (2, 1, 3, 1):
        d.ok("POST", "/v1/apps/shop/scale", {"processes": {"web": n}})
    out = cli_ok(d, "audit", "verify").stdout.strip()
    anchor = out.rsplit(" ", 1)[1]
    assert anchor.startswith("5:"), out
    # An anchor that holds is said to; one of a wrong shape is a usage error
    # (exit 2) or a 400, with nothing checked.
    assert (cli_ok(d, "audit", "verify", "--anchor", anchor).stdout.strip()
            == f"audit log intact: 5 entries, 0 new since the last verify, head {anchor}, anchor matches")
    mid = f"3:{audit(d)[2]['hash']}"
    assert cli_ok(d, "audit", "verify", "--anchor", mid).returncode == 0
    for bad in ("5", "x:" + "0" * 64, "0:" + "0" * 64, "5:" + "0" * 63, "5:" + "A" * 64, ""):
        r = d.cli("audit", "verify", "--anchor", bad)
        assert r.returncode == 2 and "invalid anchor" in r.stderr, (bad, r.stderr)
        status, doc = d.request("GET", "/v1/audit/verify?anchor=" + bad)
        assert status == 400 and "invalid anchor" in doc["error"]["message"], (bad, doc)
    stop(d)

    # The last entry cut off: still a valid chain, but shorter than the anchor.
    con = sqlite3.connect(db_path(d))
    try:
        con.execute("DROP TRIGGER audit_no_delete")
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("DELETE FROM audit WHERE seq = 5")
        con.commit()
    finally:
        con.close()
    d.start()
    try:
        assert cli_ok(d, "audit", "verify").stdout.startswith("audit log intact: 4 entries")
        r = d.cli("audit", "verify", "--anchor", anchor)
        assert r.returncode == 1 and r.stderr.startswith("audit log BROKEN at entry 5: the log ends at entry 4"), r.stderr
        status, doc = d.request("GET", "/v1/audit/verify?anchor=" + anchor)
        assert status == 200 and doc["ok"] is False and doc["broken_at"] == 5, doc
    finally:
        stop(d)

    # Entry 3 edited and the chain rehashed from there by someone who could
    # read the key: every link holds, but entry 3 no longer has the hash
    # recorded for it.
    con = sqlite3.connect(db_path(d))
    try:
        con.execute("UPDATE audit SET status = 500 WHERE seq = 3")
        rehash(con, 3, audit_key(d))
        con.commit()
    finally:
        con.close()
    d.start()
    try:
        assert cli_ok(d, "audit", "verify").stdout.startswith("audit log intact: 4 entries")
        r = d.cli("audit", "verify", "--anchor", mid)
        assert r.returncode == 1 and r.stderr.startswith("audit log BROKEN at entry 3: anchor mismatch"), r.stderr
    finally:
        stop(d)
