"""`paasops serve --run-as USER`: app code (instances, one-off runs, builds)
runs as an unprivileged user with no supplementary groups, which can reach
its release directory but not the daemon's socket, state or keys."""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import BIN, ROOT, Daemon, pid_alive, wait_for

NOBODY = 65534
APP_SRC = os.path.join(ROOT, "examples", "hello")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs the daemon to run as root")


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture
def base():
    """A directory tree the run-as user can search (pytest's own temporary
    directories are 0700)."""
    d = tempfile.mkdtemp(prefix="paasops-runas-")
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def d(base):
    dm = Daemon(pathlib.Path(base))
    dm.start(extra=["--run-as", "nobody"])
    yield dm
    if dm.proc.poll() is None:
        dm.instances()
        assert dm.stop() == 0, dm.read_log()
    wait_for(lambda: not [p for p in dm.seen_pids if pid_alive(p)], timeout=5,
             what="instances to be gone after daemon stop")


def ids(pid):
    """Real uid, real gid and supplementary groups of a process."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return (int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0]),
            fields["Groups"].split())


def src_dir(base):
    s = os.path.join(base, "src")
    os.mkdir(s)
    for name in ("hello", "paasops.yaml"):
        shutil.copy(os.path.join(APP_SRC, name), s)
    os.chmod(os.path.join(s, "hello"), 0o755)
    with open(os.path.join(s, "paasops.yaml"), "a") as f:
        f.write("build: id -u > built_by; touch build_wrote_here\n")
    return s


def test_instances_runs_and_builds_run_as_the_user_and_cannot_use_the_socket(d, base):
    ok(d.cli("deploy", src_dir(base), "--wait"))
    insts = d.wait_ready("hello", 2)
    for i in insts:
        assert ids(i["pid"]) == (NOBODY, NOBODY, []), i
    # The build ran as the user, in the tree it was given.
    rel = os.path.join(d.data, "releases", "hello", "v1")
    with open(os.path.join(rel, "built_by")) as f:
        assert f.read().strip() == str(NOBODY)
    assert os.stat(rel).st_uid == NOBODY
    assert os.stat(os.path.join(rel, "build_wrote_here")).st_uid == NOBODY

    # The daemon's own files stay its own; the dirs above the code only searchable.
    assert stat.S_IMODE(os.stat(d.data).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(os.path.join(d.data, "releases")).st_mode) == 0o711
    for name in ("state.db", "secret.key", "logs.db", "paasops.sock", "paasops.lock"):
        st = os.stat(os.path.join(d.data, name))
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0, (name, oct(st.st_mode))

    r = ok(d.cli("run", "hello", 'id -u; id -g; grep Groups /proc/self/status; echo "$HOME $USER $LOGNAME"'))
    lines = r.stdout.split("\n")
    assert lines[0] == str(NOBODY) and lines[1] == str(NOBODY), r.stdout
    assert lines[2].split() == ["Groups:"], r.stdout
    assert lines[3].split()[1:] == ["nobody", "nobody"], r.stdout

    # Neither the keys nor the socket are the app's.
    r = d.cli("run", "hello", f"cat {d.data}/secret.key >/dev/null && echo READ || echo refused")
    assert r.stdout.strip() == "refused", r.stdout + r.stderr
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n"
             f"    s.connect({d.sock!r})\n"
             "except OSError as e:\n"
             "    print('connect', e.errno); sys.exit(0)\n"
             "try:\n"
             "    s.sendall(b'POST /v1/tokens HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n'\n"
             "              b'Content-Length: 16\\r\\nConnection: close\\r\\n\\r\\n{\"role\":\"admin\"}')\n"
             "except BrokenPipeError:  # refused at accept, maybe before the request was sent\n"
             "    pass\n"
             "print('status', s.recv(4096).split()[1].decode())\n")
    script = os.path.join(base, "probe.py")
    with open(script, "w") as f:
        f.write(probe)
    os.chmod(script, 0o644)
    r = ok(d.cli("run", "hello", f"python3 {script}"))
    assert r.stdout.strip() == "connect 13", r.stdout  # EACCES: the socket is 0600 root
    # Even with the socket's mode opened up, the daemon refuses the user.
    os.chmod(d.sock, 0o666)
    try:
        r = ok(d.cli("run", "hello", f"python3 {script}"))
    finally:
        os.chmod(d.sock, 0o600)
    assert r.stdout.strip() == "status 403", r.stdout
    assert not [t for t in d.ok("GET", "/v1/tokens")["tokens"] if t.get("role") == "admin"]

    # Stopping still reaches the whole process group of the user's processes.
    pids = [i["pid"] for i in insts]
    ok(d.cli("stop", "hello"))
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="instances to stop")


def test_run_with_a_terminal_runs_as_the_user(d, base):
    ok(d.cli("deploy", src_dir(base), "--wait"))
    r = ok(d.cli("run", "--tty", "hello", "--", "sh", "-c", "id -u; stat -c %u $(tty)"))
    assert r.stdout.replace("\r", "").split() == [str(NOBODY), str(NOBODY)], r.stdout


def test_doctor_says_what_app_code_runs_as(d):
    r = d.cli("--json", "doctor")
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["run-as-root"]["status"] == "ok", checks["run-as-root"]
    assert "'nobody'" in checks["run-as-root"]["summary"]
    assert checks["data-dir-permissions"]["status"] == "ok", checks["data-dir-permissions"]


def test_resource_limits_still_apply(d, base):
    spec = open(os.path.join(APP_SRC, "paasops.yaml")).read().replace(
        "    command: ./hello\n", "    command: ./hello\n    resources: {memory: 64M}\n")
    s = src_dir(base)
    with open(os.path.join(s, "paasops.yaml"), "w") as f:
        f.write(spec)
    ok(d.cli("deploy", s, "--wait"))
    insts = d.wait_ready("hello", 2)
    for i in insts:
        assert ids(i["pid"])[0] == NOBODY
        if i["limits_enforced"]:
            with open(f"/proc/{i['pid']}/cgroup") as f:
                assert f"{i['id']}.{i['pid']}" in f.read()


def test_apply_from_a_directory_the_user_cannot_read_is_refused(d, tmp_path):
    # pytest's tmp_path is under 0700 directories. The daemon enters the
    # working directory before it takes on the user, so app code would read
    # there what the user cannot: such a directory is refused.
    spec = open(os.path.join(APP_SRC, "paasops.yaml")).read().replace("app: hello", "app: private")
    (tmp_path / "paasops.yaml").write_text(spec)
    r = d.cli("apply", "-f", str(tmp_path / "paasops.yaml"))
    assert r.returncode == 1, r.stderr
    assert "user 'nobody'" in r.stderr and "cannot read" in r.stderr, r.stderr
    assert d.request("GET", "/v1/apps/private")[0] == 404


def test_unknown_user_and_root_are_refused_at_start(tmp_path):
    for who, msg in (("no-such-user", "no such user 'no-such-user'"), ("root", "root's user")):
        r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--run-as", who],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.stderr
        assert msg in r.stderr
    assert not (tmp_path / "data").exists()


def test_a_data_dir_the_user_cannot_reach_is_refused_naming_the_directory(tmp_path):
    # pytest's tmp_path parents are 0700: instances could not reach their code.
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--run-as", "nobody",
                        "--http", "off"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "cannot search" in r.stderr, r.stderr
    blocked = [p for p in [str(tmp_path)] + [str(x) for x in tmp_path.parents]
               if not os.stat(p).st_mode & 0o001]
    assert f"cannot search '{blocked[-1]}'" in r.stderr, r.stderr  # the first from the root down
