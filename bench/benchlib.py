"""Shared helpers for the paasops benchmarks (Python 3 standard library only).

Every process a benchmark starts is registered with a Cleanup, which stops it
(SIGTERM, then SIGKILL) on normal exit, on an exception, on Ctrl-C and on
SIGTERM. Children of the supervisors are recorded as (pid, start time) so that
a leftover is killed only if it is still the very same process.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PAASOPS = os.environ.get("PAASOPS_BIN", os.path.join(ROOT, "build", "paasops"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- /proc ------------------------------------------------------------------

def proc_stat(pid):
    """(utime+stime ticks, starttime ticks) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime=14, stime=15, starttime=22
    return int(fields[11]) + int(fields[12]), int(fields[19])


def proc_start(pid):
    st = proc_stat(pid)
    return st[1] if st else None


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def idle_cpu_percent(pid, seconds):
    """Average CPU use of pid (user+system, % of one core) over `seconds`."""
    a = proc_stat(pid)[0]
    t0 = time.monotonic()
    time.sleep(seconds)
    b = proc_stat(pid)[0]
    return (b - a) / CLK_TCK / (time.monotonic() - t0) * 100.0


# ---- cleanup ------------------------------------------------------------------

class Cleanup:
    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.daemons = []      # (name, Popen, term_timeout)
        self.children = {}     # pid -> start ticks
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, self._on_term)

    @staticmethod
    def _on_term(signum, frame):
        raise SystemExit(128 + signum)

    def daemon(self, name, argv, logfile, timeout=60, **kw):
        out = open(logfile, "wb")
        # Own session: a Ctrl-C on the terminal reaches only this script, which
        # then stops the daemon cleanly.
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, **kw)
        out.close()
        self.daemons.append((name, p, timeout))
        return p

    def child(self, pid):
        if pid and pid not in self.children:
            st = proc_start(pid)
            if st is not None:
                self.children[pid] = st

    def stop_daemon(self, p, timeout):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns seconds to exit."""
        if p.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} still running {timeout}s after SIGTERM: SIGKILL")
            p.kill()
            p.wait()
        return time.monotonic() - t0

    def kill_leftovers(self):
        n = 0
        for pid, st in self.children.items():
            if proc_start(pid) == st:
                try:
                    os.kill(pid, signal.SIGKILL)
                    n += 1
                except OSError:
                    pass
        self.children.clear()
        return n

    def close(self, keep_tmp=False):
        # Signals arriving now must not interrupt the cleanup itself.
        old = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
        try:
            for name, p, timeout in reversed(self.daemons):
                self.stop_daemon(p, timeout)
            n = self.kill_leftovers()
            if n:
                log(f"killed {n} leftover child process(es)")
        finally:
            if not keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            for s, h in zip((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), old):
                signal.signal(s, h)


# ---- paasops API over its unix socket -------------------------------------------

class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Paasops:
    def __init__(self, cleanup, data, ports):
        self.sock = os.path.join(data, "paasops.sock")
        self.logfile = data + ".log"
        os.makedirs(data, exist_ok=True)
        self.proc = cleanup.daemon("paasops", [PAASOPS, "serve", "--data", data, "--ports", ports],
                                   self.logfile, timeout=60)
        self.pid = self.proc.pid
        self.conn = None
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"paasops exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("paasops API did not come up within 10 s: " + self.log_tail())
            time.sleep(0.02)

    def log_tail(self, n=20):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def call(self, method, path, body=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = _UnixConn(self.sock)
            try:
                data = json.dumps(body).encode() if body is not None else None
                hdrs = {"Content-Type": "application/json"} if data is not None else {}
                self.conn.request(method, path, data, hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                # The server may close an idle keep-alive connection: retry once.
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError

    def apply(self, spec, dir):
        st, body = self.call("POST", "/v1/apps", {"spec": spec, "dir": dir})
        if st not in (200, 201):
            raise RuntimeError(f"apply failed: {st} {body}")
        return body

    def instances(self, app):
        st, body = self.call("GET", f"/v1/apps/{app}/instances")
        if st != 200:
            raise RuntimeError(f"instances: {st} {body}")
        return body["instances"]

    def events(self, app):
        """Every event of the app, oldest first."""
        out, after = [], 0
        while True:
            st, body = self.call("GET", f"/v1/events?app={app}&after={after}&limit=1000")
            if st != 200:
                raise RuntimeError(f"events: {st} {body}")
            evs = body["events"]
            if not evs:
                return out
            out.extend(evs)
            after = evs[-1]["id"]


# ---- supervisord ------------------------------------------------------------------

class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self._path = path

    def make_connection(self, host):
        return _UnixConn(self._path, timeout=120)


class Supervisord:
    """supervisord -n with its own config, socket, pidfile and logs under `dir`."""

    def __init__(self, cleanup, dir, program, numprocs, autostart, extra=""):
        os.makedirs(os.path.join(dir, "childlogs"), exist_ok=True)
        self.dir = dir
        self.sock = os.path.join(dir, "supervisor.sock")
        self.logfile = os.path.join(dir, "supervisord.log")
        self.program = program
        conf = os.path.join(dir, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"""[unix_http_server]
file={self.sock}
chmod=0700

[supervisord]
nodaemon=true
logfile={self.logfile}
pidfile={dir}/supervisord.pid
childlogdir={dir}/childlogs
minfds={max(1024, numprocs * 8 + 100)}
minprocs={max(200, numprocs + 100)}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{self.sock}

[program:{program}]
process_name=%(program_name)s_%(process_num)04d
numprocs={numprocs}
autostart={'true' if autostart else 'false'}
autorestart=true
startsecs=1
startretries=3
stopsignal=TERM
stopwaitsecs=10
{extra}""")
        self.proc = cleanup.daemon("supervisord", ["supervisord", "-n", "-c", conf],
                                   os.path.join(dir, "supervisord.out"), timeout=120, cwd=dir)
        self.pid = self.proc.pid
        self.rpc = xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(self.sock))
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.rpc.supervisor.getState()["statename"] == "RUNNING":
                    break
            except (OSError, xmlrpc.client.Error):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("supervisord did not come up within 20 s: " + self.log_tail())
            time.sleep(0.05)

    def log_tail(self, n=20):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def host_note():
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return f"host: {os.cpu_count()} CPUs, load average {load} when the bench started"


# ---- numbers ------------------------------------------------------------------

def percentile(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def ratio(anchor, ours):
    if ours is None or anchor is None or ours != ours or anchor != anchor:
        return "n/a"
    if ours == 0:
        return "1.00x" if anchor == 0 else "n/a"
    return f"{anchor / ours:.2f}x"


def table(title, rows, anchor="supervisord", note=None):
    """rows: (label, paasops value, anchor value, fmt, goal text[, show ratio])."""
    head = ("metric", "paasops", anchor, f"{anchor}/paasops", "paasops goal")
    body = []
    for label, ours, theirs, fmt, goal, *show in rows:
        f = (lambda v: "n/a" if v is None or v != v else fmt.format(v))
        r = ratio(theirs, ours) if (show[0] if show else True) else ""
        body.append((label, f(ours), f(theirs), r, goal or ""))
    w = [max(len(r[i]) for r in [head] + body) for i in range(5)]
    line = "  ".join("{:<%d}" % w[0] if i == 0 else "{:>%d}" % w[i] for i in range(5))
    print(f"\n== {title}")
    if note:
        print(note)
    print(line.format(*head))
    print("  ".join("-" * x for x in w))
    for r in body:
        print(line.format(*r))
    sys.stdout.flush()
