"""Backups: `paasops backup` takes a consistent copy of a running daemon's
data (state, secrets key, release code, optionally logs and metrics);
`paasops restore` unpacks it into a new data dir on which a daemon comes
back with the same apps, releases, config, secrets, tokens and audit log."""
import os
import subprocess
import tarfile

import pytest

from conftest import BIN, Daemon, pid_alive, wait_for

APP_SRC = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "hello")


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    for name in ("hello", "paasops.yaml"):
        data = open(os.path.join(APP_SRC, name), "rb").read()
        (d / name).write_bytes(data)
    os.chmod(d / "hello", 0o755)
    return d


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def restore(archive, dest):
    return subprocess.run([BIN, "restore", str(archive), str(dest)], capture_output=True, text=True,
                          timeout=60)


def test_backup_and_restore_bring_an_installation_back(daemon, src, tmp_path):
    ok(daemon.cli("deploy", str(src), "--wait"))
    ok(daemon.cli("config", "set", "hello", "API_KEY=s3cr3t", "--secret", "--wait"))
    status, tok = daemon.request("POST", "/v1/tokens", {"role": "viewer"})
    assert status == 201
    ok(daemon.cli("run", "hello", "echo a line for the log"))
    wait_for(lambda: "a line for the log" in daemon.cli("logs", "hello", "--stream", "run").stdout,
             what="the run's line in the log store")
    head = ok(daemon.cli("audit", "verify")).stdout.split()[-1]
    old_pids = {i["pid"] for i in daemon.instances("hello")}

    archive = tmp_path / "backup.tar.gz"
    r = ok(daemon.cli("backup", "-o", str(archive), "--logs", "--metrics"))
    assert "wrote a backup of" in r.stderr
    assert not os.path.exists(str(archive) + ".part")
    with tarfile.open(archive) as t:
        names = set(t.getnames())
    assert {"BACKUP.json", "state.db", "logs.db", "secret.key", "releases/hello/v1/hello"} <= names
    # Nothing of the backup is left in the data dir.
    assert not [n for n in os.listdir(daemon.data) if n.startswith(".backup")]

    # Restored next to the running original: the new daemon must not touch
    # the original's instances, whose records came along in the backup.
    dest = tmp_path / "restored"
    r = restore(archive, dest)
    assert r.returncode == 0, r.stderr
    assert f"paasops serve --data {dest}" in r.stdout
    assert oct(os.stat(dest / "secret.key").st_mode & 0o777) == "0o600"
    (tmp_path / "other").mkdir()
    other = Daemon(tmp_path / "other")
    other.data = str(dest)
    other.sock = str(dest / "paasops.sock")
    other.start()
    try:
        other.wait_ready("hello", 2)
        assert all(pid_alive(p) for p in old_pids)
        assert {i["pid"] for i in daemon.instances("hello")} == old_pids
        assert "restored from the backup" in other.read_log()
        assert not (dest / "BACKUP.json").exists()
        app = other.ok("GET", "/v1/apps/hello")
        assert app["release"] == 2 and app["dir"] == str(dest / "releases" / "hello" / "v1")
        # Secrets decrypt with the restored key; the token still works.
        r = ok(other.cli("run", "hello", 'echo "$API_KEY $GREETING"; pwd'))
        assert r.stdout == f"s3cr3t hi\n{dest}/releases/hello/v1\n"
        assert other.request("GET", "/v1/apps", tcp=True, token=tok["token"])[0] == 200
        # The audit chain is intact and reaches the head recorded before.
        assert ok(other.cli("audit", "verify", "--anchor", head)).returncode == 0
        # The log store came along.
        assert "a line for the log" in other.cli("logs", "hello", "--stream", "run").stdout
    finally:
        assert other.stop() == 0


def test_backup_to_stdout_and_refusals_leave_files_alone(daemon, src, tmp_path):
    ok(daemon.cli("deploy", str(src), "--wait"))
    out = tmp_path / "piped.tar.gz"
    with open(out, "wb") as f:
        e = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}")
        r = subprocess.run([BIN, "backup", "-o", "-"], stdout=f, stderr=subprocess.PIPE, env=e,
                           timeout=60)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as t:
        assert "state.db" in t.getnames() and "logs.db" not in t.getnames()
    # A viewer may not take a backup; the file it named is untouched.
    status, tok = daemon.request("POST", "/v1/tokens", {"role": "viewer"})
    keep = tmp_path / "keep.tar.gz"
    keep.write_bytes(b"an older backup")
    r = daemon.cli("backup", "-o", str(keep), server=f"http://127.0.0.1:{daemon.api_port}",
                   token=tok["token"])
    assert r.returncode == 1 and "403" not in r.stdout
    assert keep.read_bytes() == b"an older backup" and not os.path.exists(str(keep) + ".part")
    r = daemon.cli("backup")
    assert r.returncode == 2 and "missing -o FILE" in r.stderr
    status, doc = daemon.request("POST", "/v1/backup", {"logs": "yes"})
    assert status == 400 and "'logs' must be true or false" in doc["error"]["message"]
    status, doc = daemon.request("POST", "/v1/backup", {"everything": True})
    assert status == 400 and "unknown field 'everything'" in doc["error"]["message"]


def test_restore_refuses_what_is_not_a_new_dir_or_not_a_backup(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "state.db").write_text("precious")
    fake = tmp_path / "fake.tar.gz"
    with tarfile.open(fake, "w:gz") as t:
        p = tmp_path / "x.txt"
        p.write_text("x")
        t.add(p, arcname="x.txt")
    r = restore(fake, busy)
    assert r.returncode == 1 and "is not an empty directory" in r.stderr
    assert (busy / "state.db").read_text() == "precious"
    new = tmp_path / "new"
    r = restore(fake, new)
    assert r.returncode == 1 and "is not a paasops backup" in r.stderr
    assert not new.exists()
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b not really gzip")
    r = restore(garbage, new)
    assert r.returncode == 1 and "cannot restore" in r.stderr
    assert not new.exists()
