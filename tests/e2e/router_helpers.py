"""Helpers shared by the router's end-to-end tests (test_router_*.py): specs
for the echo backend, HTTP through the router with http.client, and raw
sockets for the bytes http.client will not send."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading

from conftest import SLOW, Daemon, pid_alive, wait_for

PYTHON = sys.executable
ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backends", "echo_server.py")
PATTERN = bytes(range(256)) * 256


def pattern_bytes(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def echo_spec(app, instances=1, routes="[{path: /}]", state_dir=None, extra="", stop_timeout="5s",
              health="{http: /healthz, interval: 1s, timeout: 1s}"):
    """A spec running the echo backend; `extra` is added to the process."""
    env = f"\n    env: {{STATE_DIR: {state_dir}}}" if state_dir else ""
    return f"""app: {app}
processes:
  web:
    command: {PYTHON} {ECHO}
    instances: {instances}
    health: {health}
    stop_timeout: {stop_timeout}
    routes: {routes}{env}
{extra}"""


def conn(daemon, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=timeout * SLOW)


def request(c, method, path, host, body=None, headers=None):
    """One request on connection c; returns (status, headers dict lower-cased, body bytes)."""
    h = {"Host": host}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def get(daemon, path="/", host="x.test", method="GET", body=None, headers=None, timeout=10):
    """One request on a fresh connection."""
    c = conn(daemon, timeout)
    try:
        return request(c, method, path, host, body, headers)
    finally:
        c.close()


def echo(daemon, path="/", host="x.test", **kw):
    status, headers, body = get(daemon, path, host, **kw)
    assert status == 200, f"{path} on {host} -> {status} {body[:300]!r}"
    return json.loads(body)


def wait_routed(daemon, host, path="/", timeout=15):
    """Waits until the router sends host+path to an echo backend; returns its echo."""
    def cond():
        try:
            status, _, body = get(daemon, path, host, timeout=5)
        except OSError:
            return None
        return json.loads(body) if status == 200 else None
    return wait_for(cond, timeout=timeout, what=f"router to route {host}{path}")


def header_values(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


def stats(daemon, app):
    return daemon.ok("GET", f"/v1/apps/{app}/stats")


def router_log_lines(daemon, app):
    lines = daemon.ok("GET", f"/v1/apps/{app}/logs?lines=10000")["lines"]
    return [l["line"] for l in lines if l["stream"] == "router"]


# ---- raw sockets ----

def raw_connect(daemon, timeout=10):
    return socket.create_connection(("127.0.0.1", daemon.http_port), timeout=timeout * SLOW)


class RawResponse:
    def __init__(self, status, version, headers, body, head):
        self.status, self.version, self.headers, self.body, self.head = status, version, headers, body, head
        self.trailers = []

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:200]!r}>"


class RawReader:
    """Reads HTTP/1.1 responses off a raw socket, keeping leftover bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += data

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
        return version, int(status), headers, head

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_response(self, head_request=False):
        """One response; skips interim 1xx. Body by Content-Length, chunked or close."""
        while True:
            version, status, headers, head = self.read_head()
            if status >= 200 or status == 101:
                break
        r = RawResponse(status, version, headers, b"", head)
        if head_request or status in (204, 304) or status < 200:
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if te and "chunked" in te.lower():
            parts = []
            while True:
                size = int(self.read_line().split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self.read_line()
                        if not line:
                            break
                        r.trailers.append(line.decode("latin-1"))
                    break
                parts.append(self.read_exact(size))
                self.read_line()
            r.body = b"".join(parts)
        elif cl is not None:
            r.body = self.read_exact(int(cl))
        else:
            while not self.eof:
                try:
                    self._fill()
                except EOFError:
                    break
            r.body, self.buf = self.buf, b""
        return r

    def closed(self, timeout=5):
        """Whether the peer closes the connection within timeout (no stray bytes)."""
        self.sock.settimeout(timeout * SLOW)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        self.buf += data
        return data == b""


def raw_exchange(daemon, data, timeout=10, head_request=False):
    """Sends data on a fresh connection and reads one response; returns (response, reader)."""
    s = raw_connect(daemon, timeout)
    s.sendall(data)
    rd = RawReader(s)
    return rd.read_response(head_request), rd


# ---- load ----

class Load:
    """Threads that send idempotent GETs through the router on keep-alive
    connections until stopped, recording every failure. pause() waits until
    no request is in flight, for exact before/after counts."""

    def __init__(self, daemon, host, threads=4, path="/"):
        self.daemon, self.host, self.path = daemon, host, path
        self.stop_flag = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.lock = threading.Lock()
        self.busy = 0
        self.ok = 0
        self.failures = []
        self.by_instance = {}
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        c = None
        while not self.stop_flag.is_set():
            with self.lock:  # pause() clears go under this lock, then waits for busy == 0
                going = self.go.is_set()
                if going:
                    self.busy += 1
            if not going:
                self.go.wait(timeout=0.1)
                continue
            try:
                c = self.one(c)
            finally:
                with self.lock:
                    self.busy -= 1
        if c:
            c.close()

    def one(self, c):
        """One request on c (None: a new connection); returns the connection to go on with."""
        try:
            if c is None:
                c = conn(self.daemon, timeout=10)
            status, headers, body = request(c, "GET", self.path, self.host)
            try:
                inst = json.loads(body)["instance"] if status == 200 else None
            except ValueError:
                inst = None
            if inst is None:
                with self.lock:
                    self.failures.append(f"{status} {headers} {body[:200]!r}")
                c.close()
                return None
            with self.lock:
                self.ok += 1
                self.by_instance[inst] = self.by_instance.get(inst, 0) + 1
            if headers.get("connection", "").lower() == "close":
                c.close()
                return None
            return c
        except Exception as e:  # every failure counts, none kills the thread
            with self.lock:
                self.failures.append(repr(e))
            if c:
                c.close()
            return None

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def wait_requests(self, n, timeout=20):
        start = self.ok
        wait_for(lambda: self.ok - start >= n, timeout=timeout, what=f"{n} more requests under load")

    def pause(self):
        with self.lock:
            self.go.clear()
        wait_for(lambda: self.busy == 0, what="requests in flight to finish")

    def resume(self):
        self.go.set()

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.go.set()
        for t in self.threads:
            t.join(timeout=30 * SLOW)


def module_daemon(tmp_path_factory, extra=()):
    """A daemon shared by a module's tests (a module fixture yields it and
    ends it with stop_daemon)."""
    return Daemon(tmp_path_factory.mktemp("rt")).start(extra=extra)


def stop_daemon(d):
    """Stops d with SIGTERM; it must exit 0 and leave no instance behind. A
    daemon that hangs is killed (its instances too) before the test fails."""
    if d.proc.poll() is None:
        try:
            d.instances()
        except OSError:
            pass
        try:
            rc = d.stop()
        except subprocess.TimeoutExpired:
            d.kill9()
            for p in d.seen_pids:
                if pid_alive(p):
                    os.killpg(p, signal.SIGKILL)
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{d.read_log()[-3000:]}")
        assert rc == 0, f"daemon exited with {rc}:\n{d.read_log()[-3000:]}"
    wait_for(lambda: not [p for p in d.seen_pids if pid_alive(p)], timeout=5,
             what="instances to be gone after daemon stop")


def assert_alive(d, host):
    """The daemon runs and the router still answers on a fresh connection."""
    assert d.proc.poll() is None, f"daemon died:\n{d.read_log()[-3000:]}"
    status, _, body = get(d, "/alive", host, timeout=5)
    assert status == 200, body


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def reset_vm_hwm(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
