"""Shared harness for the end-to-end tests: each test gets its own paasops
daemon on a temporary data dir, a free TCP API port and a private instance
port range, and drives it through the real CLI, the HTTP API and signals."""
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PAASOPS_BIN") or os.path.join(ROOT, "build", "paasops")
HELLO = os.path.join(ROOT, "examples", "hello", "hello")
# Sanitizer builds are slower; every bound scales with this.
SLOW = float(os.environ.get("PAASOPS_TEST_SLOW", "1"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Polls cond() until it returns a truthy value or the bound passes."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {what} (last: {last!r})")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


# Every daemon a test started, so that one a failed fixture never stopped
# is stopped when the session ends instead of outliving it.
STARTED = []


def pytest_sessionfinish(session, exitstatus):
    for d in STARTED:
        if d.proc and d.proc.poll() is None:
            d.proc.terminate()
            try:
                d.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()


class Daemon:
    def __init__(self, tmp_path, api=True):
        self.tmp = tmp_path
        self.data = str(tmp_path / "data")
        self.sock = os.path.join(self.data, "paasops.sock")
        self.api_port = free_port() if api else None
        self.http_port = free_port()
        while self.http_port == self.api_port:  # two free ports in a row may be one
            self.http_port = free_port()
        base = random.randrange(30000, 59000, 200)
        self.ports = (base, base + 199)
        self.proc = None
        self.log_path = str(tmp_path / "daemon.log")
        self.seen_pids = set()

    # ---- process ----
    def start(self, extra=(), wait=True, preexec_fn=None):
        args = [BIN, "serve", "--data", self.data, "--ports", f"{self.ports[0]}-{self.ports[1]}"]
        if self.api_port:
            args += ["--api", f"127.0.0.1:{self.api_port}"]
        args += ["--http", f"127.0.0.1:{self.http_port}"]
        args += list(extra)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        STARTED.append(self)
        if wait:
            wait_for(self._healthy, timeout=10, what="daemon to answer /healthz")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.read_log()}")
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout * SLOW)
        self.log.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    # ---- API ----
    def request(self, method, path, body=None, token=None, tcp=False, raw=None, headers=None):
        conn = (http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30 * SLOW)
                if tcp else UnixHTTPConnection(self.sock, timeout=30 * SLOW))
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = text
        return resp.status, doc

    def ok(self, method, path, body=None, **kw):
        status, doc = self.request(method, path, body, **kw)
        assert 200 <= status < 300, f"{method} {path} -> {status} {doc}"
        return doc

    def apply(self, yaml_text, dir=None):
        return self.ok("POST", "/v1/apps", {"spec": yaml_text, "dir": dir or str(self.tmp)})

    def instances(self, app=None):
        path = f"/v1/apps/{app}/instances" if app else "/v1/instances"
        insts = self.ok("GET", path)["instances"]
        for i in insts:
            if i.get("pid"):
                self.seen_pids.add(i["pid"])
        return insts

    def events(self, app=None, limit=1000):
        q = f"?limit={limit}" + (f"&app={app}" if app else "")
        return self.ok("GET", "/v1/events" + q)["events"]

    def wait_ready(self, app, n, timeout=15):
        def cond():
            insts = self.instances(app)
            ready = [i for i in insts if i["state"] == "ready"]
            return ready if len(ready) == n and len(insts) == n else None
        return wait_for(cond, timeout=timeout, what=f"{n} ready instances of {app}")

    def wait_state(self, instance_id, state, app=None, timeout=15):
        app = app or instance_id.split(".")[0]

        def cond():
            for i in self.instances(app):
                if i["id"] == instance_id and i["state"] == state:
                    return i
            return None
        return wait_for(cond, timeout=timeout, what=f"{instance_id} to be {state}")

    # ---- CLI ----
    def cli(self, *args, token=None, server=None, input=None, env=None, timeout=60):
        e = dict(os.environ)
        e["PAASOPS_SERVER"] = server or f"unix:{self.sock}"
        e.pop("PAASOPS_TOKEN", None)
        if token:
            e["PAASOPS_TOKEN"] = token
        if env:
            e.update(env)
        return subprocess.run([BIN, *args], capture_output=True, text=True, input=input,
                              env=e, timeout=timeout * SLOW)


def hello_spec(app="hello", instances=2, extra="", health="{http: /healthz, interval: 1s, timeout: 1s}"):
    return f"""app: {app}
processes:
  web:
    command: {HELLO}
    instances: {instances}
    health: {health}
    stop_timeout: 5s
{extra}"""


@pytest.fixture
def daemon(tmp_path, request):
    """A daemon per test; a test module may set DAEMON_FLAGS (a list of
    `paasops serve` flags) to start it with them."""
    d = Daemon(tmp_path)
    d.start(extra=getattr(request.module, "DAEMON_FLAGS", ()))
    yield d
    if d.proc.poll() is None:
        d.instances()
        rc = d.stop()
        assert rc == 0, f"daemon exited with {rc}:\n{d.read_log()}"
    # No instance may outlive the daemon that stopped it.
    wait_for(lambda: not [p for p in d.seen_pids if pid_alive(p)], timeout=5,
             what="instances to be gone after daemon stop")
