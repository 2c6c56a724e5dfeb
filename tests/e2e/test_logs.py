"""Durable, searchable logs: capture from every stream, the query language and
filters, paging, live tails, retention, crash safety, rate limits, hostile
lines, drains to a real rsyslog and to an HTTP receiver, and scoped tokens."""
import base64
import http.client
import http.server
import json
import os
import pty
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from conftest import BIN, HELLO, SLOW, Daemon, UnixHTTPConnection, free_port, hello_spec, wait_for

PY = sys.executable if os.path.basename(sys.executable).startswith("python3") else "python3"


def spec(app, processes):
    """processes: {name: command}; commands run with python3 -c."""
    out = [f"app: {app}", "processes:"]
    for name, code in processes.items():
        out += [f"  {name}:", f"    command: {json.dumps(PY + ' -u -c ' + shlex.quote(code))}", "    stop_timeout: 2s"]
    return "\n".join(out) + "\n"


def logs(d, **params):
    q = urllib.parse.urlencode(params)
    return d.ok("GET", "/v1/logs?" + q)


def lines(d, **params):
    params.setdefault("limit", 10000)
    return [l["line"] for l in logs(d, **params)["lines"]]


def wait_lines(d, n, timeout=10, **params):
    return wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(lines(d, **params)),
                    timeout=timeout, what=f"{n} lines for {params}")


def stats(d):
    return d.ok("GET", "/v1/logs/stats")


@pytest.fixture
def start(tmp_path):
    """start(*flags) -> a daemon with those extra flags, stopped at the end."""
    started = []

    def run(*extra, sub="d"):
        dd = Daemon(tmp_path / sub)
        os.makedirs(tmp_path / sub, exist_ok=True)
        dd.start(extra=list(extra))
        started.append(dd)
        return dd
    yield run
    for dd in started:
        if dd.proc and dd.proc.poll() is None:
            assert dd.stop() == 0, dd.read_log()


# ---- capture ---------------------------------------------------------------

def test_lines_from_every_stream_appear_with_their_fields(daemon):
    daemon.apply(hello_spec("hello", instances=1, extra="    routes: [{path: /}]\n"))
    daemon.apply(spec("side", {"worker": "import sys,time\nprint('to stderr', file=sys.stderr)\n"
                                         "print('{\"level\":\"warn\",\"msg\":\"lifted\",\"user\":\"ann\"}')\n"
                                         "time.sleep(1000)"}))
    daemon.wait_ready("hello", 1)
    conn = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=10)
    conn.request("GET", "/some/path")
    assert conn.getresponse().status == 200
    conn.close()
    router = wait_for(lambda: logs(daemon, app="hello", stream="router")["lines"], what="router line")
    r = router[0]
    assert (r["app"], r["process"], r["instance"], r["release"], r["stream"], r["level"]) == \
        ("hello", "web", "hello.web.1", 1, "router", "info")
    assert r["fields"]["path"] == "/some/path" and r["fields"]["status"] == "200"
    out = wait_for(lambda: logs(daemon, app="hello", stream="stdout", q="GET")["lines"], what="stdout")
    assert out[0]["line"] == "GET /some/path" and out[0]["instance"] == "hello.web.1"
    build = wait_for(lambda: logs(daemon, app="hello", stream="build")["lines"], what="build line")
    assert build[0]["process"] is None and build[0]["release"] == 1
    side = wait_lines(daemon, 2, app="side", stream="stdout,stderr")
    assert set(side) >= {"to stderr"}
    rows = {l["line"]: l for l in logs(daemon, app="side", limit=100)["lines"]}
    assert rows["to stderr"]["stream"] == "stderr" and rows["to stderr"]["process"] == "worker"
    lifted = [l for l in rows.values() if l.get("message") == "lifted"][0]
    assert lifted["level"] == "warn" and lifted["fields"]["user"] == "ann"
    # Every record has the documented shape, ns time included.
    for l in logs(daemon, limit=100)["lines"]:
        assert set(l) >= {"seq", "time", "app", "process", "instance", "release", "stream", "level",
                          "message", "line"}
        assert len(l["time"]) == len("2026-11-29T22:57:15.123456789Z")


def test_partial_last_line_is_flushed_after_a_short_wait(daemon):
    daemon.apply(spec("prompt", {"web": "import sys,time\nsys.stdout.write('no newline yet')\n"
                                        "sys.stdout.flush()\ntime.sleep(1000)"}))
    assert wait_lines(daemon, 1, app="prompt", stream="stdout") == ["no newline yet"]



def test_a_newline_that_ends_a_line_already_taken_makes_no_empty_line(daemon, tmp_path):
    # The app goes on only when the test has seen what it wrote so far
    # stored: a partial line taken after its wait, then a line split at
    # 10,000 bytes; the newline that ends each comes after.
    go = tmp_path / "go"
    code = ("import os,sys,time\n"
            "def wait(n):\n"
            f"  while not os.path.exists({str(go)!r} + n): time.sleep(0.02)\n"
            "sys.stdout.write('no newline at end'); sys.stdout.flush(); wait('1')\n"
            "sys.stdout.write('\\n' + 'y' * 10000); sys.stdout.flush(); wait('2')\n"
            "sys.stdout.write('\\nafter\\n'); sys.stdout.flush(); time.sleep(1000)\n")
    daemon.apply(spec("nl", {"web": code}))
    wait_lines(daemon, 1, app="nl", stream="stdout")
    (tmp_path / "go1").touch()
    wait_lines(daemon, 2, app="nl", stream="stdout")
    (tmp_path / "go2").touch()
    wait_lines(daemon, 3, app="nl", stream="stdout")
    # The daemon's own cache of recent output says the same.
    cached = lambda: [l["line"] for l in daemon.ok("GET", "/v1/apps/nl/logs")["lines"] if l.get("stream", "stdout") == "stdout"]
    wait_for(lambda: "after" in cached(), what="the cache to have the last line")
    want = ["no newline at end", "y" * 10000, "after"]
    assert lines(daemon, app="nl", stream="stdout", order="asc") == want
    assert cached() == want
    # The same for a one-off run's output.
    code = ("import os,sys,time\n"
            "sys.stdout.write('z' * 10000); sys.stdout.flush()\n"
            f"while not os.path.exists({str(go)!r} + '3'): time.sleep(0.02)\n"
            "sys.stdout.write('\\nend\\n')\n")
    env = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}")
    p = subprocess.Popen([BIN, "run", "nl", "--", PY, "-c", code], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_lines(daemon, 1, app="nl", stream="run")
        (tmp_path / "go3").touch()
        assert p.wait(30 * SLOW) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    wait_for(lambda: "end" in lines(daemon, app="nl", stream="run"), what="the run's last line")
    assert lines(daemon, app="nl", stream="run", order="asc") == ["z" * 10000, "end"]


# ---- query -----------------------------------------------------------------

QAPP = r"""
import sys, time
out = [
  'alpha GET /api/users 200',
  'alpha POST /api/orders 500',
  'beta connection reset by peer',
  '{"level":"error","msg":"payment failed","user":"alice","code":42}',
  '{"level":"info","msg":"payment ok","user":"bob"}',
  'time=now level=warn msg="slow query" table=orders user=alice',
  'ERROR disk almost full',
  'gamma errors are not error words',
]
for l in out:
    print(l)
print('stderr alpha', file=sys.stderr)
sys.stdout.flush(); sys.stderr.flush()
time.sleep(1000)
"""


def test_queries_with_every_operator_and_filter_return_exactly_the_expected_lines(daemon):
    daemon.apply(spec("q", {"web": QAPP, "worker": "import time\nprint('worker alpha line')\ntime.sleep(1000)"}))
    wait_lines(daemon, 10, app="q", stream="stdout,stderr")
    everything = set(lines(daemon, app="q", stream="stdout,stderr"))

    def got(**p):
        p.setdefault("stream", "stdout,stderr")
        return set(lines(daemon, app="q", **p))

    cases = [
        ({"q": "alpha"}, {"alpha GET /api/users 200", "alpha POST /api/orders 500", "stderr alpha",
                          "worker alpha line"}),
        ({"q": "ALPHA get"}, {"alpha GET /api/users 200"}),
        ({"q": "alpha AND 500"}, {"alpha POST /api/orders 500"}),
        ({"q": '"connection reset"'}, {"beta connection reset by peer"}),
        ({"q": '"reset connection"'}, set()),
        ({"q": "error"}, {'{"level":"error","msg":"payment failed","user":"alice","code":42}',
                          "ERROR disk almost full", "gamma errors are not error words"}),
        ({"q": "err"}, set()),
        ({"q": "beta OR gamma"}, {"beta connection reset by peer", "gamma errors are not error words"}),
        ({"q": "alpha NOT stderr -worker"}, {"alpha GET /api/users 200", "alpha POST /api/orders 500"}),
        ({"q": "(beta OR gamma) AND -peer"}, {"gamma errors are not error words"}),
        ({"q": "user:alice"}, {'{"level":"error","msg":"payment failed","user":"alice","code":42}',
                               'time=now level=warn msg="slow query" table=orders user=alice'}),
        ({"q": "user:alice code:42"}, {'{"level":"error","msg":"payment failed","user":"alice","code":42}'}),
        ({"q": "/api/"}, {"alpha GET /api/users 200", "alpha POST /api/orders 500"}),
        ({"q": "level:error"}, {'{"level":"error","msg":"payment failed","user":"alice","code":42}',
                                "ERROR disk almost full"}),
        ({"level": "warn"}, {'{"level":"error","msg":"payment failed","user":"alice","code":42}',
                             'time=now level=warn msg="slow query" table=orders user=alice',
                             "ERROR disk almost full"}),
        ({"stream": "stderr"}, {"stderr alpha"}),
        ({"process": "worker"}, {"worker alpha line"}),
        ({"instance": "q.worker.1"}, {"worker alpha line"}),
        ({"q": "process:worker OR stream:stderr"}, {"worker alpha line", "stderr alpha"}),
        ({"release": "1", "q": "beta"}, {"beta connection reset by peer"}),
        ({"release": "2"}, set()),
        ({"q": "release:v1 beta"}, {"beta connection reset by peer"}),
        ({"since": "1h", "q": "beta"}, {"beta connection reset by peer"}),
        ({"until": "1h"}, set()),
    ]
    for params, want in cases:
        assert got(**params) == want, params
    # Paging: newest first by default, a cursor to the next page, asc order.
    seen, cursor = [], None
    while True:
        p = {"app": "q", "limit": 3, "stream": "stdout,stderr"}
        if cursor:
            p["cursor"] = cursor
        page = logs(daemon, **p)
        seen += page["lines"]
        cursor = page["cursor"]
        if not cursor:
            break
    seqs = [l["seq"] for l in seen]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert {l["line"] for l in seen} == everything
    asc = logs(daemon, app="q", limit=2, order="asc", stream="stdout,stderr")["lines"]
    assert [l["seq"] for l in asc] == sorted(seqs)[:2]
    # Bad parameters are 400s that say why.
    for bad in ["q=(alpha", "level=loud", "stream=stdin", "since=yesterday", "limit=0", "order=up",
                "cursor=x", "release=abc"]:
        st, doc = daemon.request("GET", "/v1/logs?app=q&" + bad)
        assert st == 400 and doc["error"]["code"] == "bad_request", (bad, st, doc)
    # The record's own values are checked alike as filters and in a query.
    for key, bad in [("level", "bogus"), ("stream", "bogus"), ("release", "abc")]:
        as_filter = daemon.request("GET", f"/v1/logs?app=q&{key}={bad}")
        as_query = daemon.request("GET", "/v1/logs?app=q&" + urllib.parse.urlencode({"q": f"a OR {key}:{bad}"}))
        assert as_filter[0] == as_query[0] == 400, (key, as_filter, as_query)
        msg = as_filter[1]["error"]["message"]
        assert as_query[1]["error"]["message"] == "invalid query: " + msg, (msg, as_query)


def test_cli_logs_searches_and_follows(daemon):
    daemon.apply(spec("cl", {"web": QAPP}))
    wait_lines(daemon, 9, app="cl", stream="stdout,stderr")
    r = daemon.cli("logs", "cl", "-n", "2", "--grep", "payment")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 2 and out[0].endswith('"msg":"payment failed","user":"alice","code":42}')
    assert " cl.web.1: " in out[0] and "\x1b" not in r.stdout
    r = daemon.cli("logs", "cl", "--level", "error", "-p", "web", "--stream", "stdout")
    assert [l.split(": ", 1)[1] for l in r.stdout.splitlines()] == [
        '{"level":"error","msg":"payment failed","user":"alice","code":42}', "ERROR disk almost full"]
    r = daemon.cli("logs", "cl", "--grep", "stderr", "--json")
    assert json.loads(r.stdout)["lines"][0]["stream"] == "stderr"
    # A bad filter value is a usage error (exit 2), like any bad flag, with
    # the same message the daemon gives; -f is no different.
    for flag, bad, want in [("--grep", "(", "invalid query"),
                            ("--grep", "level:bogus", "invalid query: invalid level 'bogus'"),
                            ("--since", "yesterday", "invalid since 'yesterday'"),
                            ("--level", "loud", "invalid level 'loud'"),
                            ("--stream", "stdin", "invalid stream 'stdin'"),
                            ("--until", "soon", "invalid until 'soon'")]:
        for follow in ([], ["-f"]):
            r = daemon.cli("logs", "cl", flag, bad, *follow)
            assert r.returncode == 2 and want in r.stderr and r.stdout == "", (flag, follow, r)
    # -f: the newest lines, then new ones, until interrupted.
    env = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}")
    p = subprocess.Popen([BIN, "logs", "cl", "-f", "-n", "1", "--grep", "alpha"], stdout=subprocess.PIPE,
                         text=True, env=env)
    try:
        first = p.stdout.readline()
        assert first.rstrip().endswith(": stderr alpha")
        daemon.ok("POST", "/v1/apps/cl/restart")
        again = [p.stdout.readline() for _ in range(3)]
        assert sum("alpha" in l for l in again) == 3
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


def test_cli_follow_says_the_daemon_closed_the_tail_when_it_stops(start):
    d = start()
    d.apply(spec("gone", {"web": "import time\nprint('hello', flush=True)\ntime.sleep(1000)"}))
    wait_lines(d, 1, app="gone", stream="stdout")
    env = dict(os.environ, PAASOPS_SERVER=f"unix:{d.sock}")
    p = subprocess.Popen([BIN, "logs", "gone", "-f", "-n", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().rstrip().endswith(": hello")
        assert d.stop() == 0
        _, err = p.communicate(timeout=10 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
    # Like any daemon that cannot be reached (exit 3), said in words.
    assert p.returncode == 3, err
    assert err == "error: the daemon closed the live tail (it stopped or restarted)\n", err


# ---- tail ------------------------------------------------------------------

def stream_open(d, query, headers=None):
    conn = UnixHTTPConnection(d.sock, timeout=15 * SLOW)
    conn.request("GET", "/v1/logs/stream?" + query, headers=headers or {})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp


def read_events(resp, n, sse=False):
    out = []
    while len(out) < n:
        line = resp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if sse:
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
        elif line.strip():
            out.append(json.loads(line))
    return out


def test_tail_starts_with_the_last_lines_follows_and_filters(daemon):
    daemon.apply(spec("t", {"web": "import time,sys\nfor i in range(5):\n  print('tick', i)\n"
                                   "  print('noise', i)\nsys.stdout.flush()\ntime.sleep(1000)"}))
    wait_lines(daemon, 10, app="t", stream="stdout")
    conn, resp = stream_open(daemon, "app=t&n=2&q=tick")
    assert resp.getheader("Content-Type") == "application/x-ndjson"
    first = read_events(resp, 2)
    assert [e["line"] for e in first] == ["tick 3", "tick 4"]
    daemon.ok("POST", "/v1/apps/t/restart")
    more = read_events(resp, 5)
    assert [e["line"] for e in more] == [f"tick {i}" for i in range(5)]
    assert all(e["seq"] > first[-1]["seq"] for e in more)
    assert stats(daemon)["tails"] == 1
    resp.close()
    conn.close()
    wait_for(lambda: stats(daemon)["tails"] == 0, what="the tail to end when the client left")
    # Server-Sent Events on request.
    conn, resp = stream_open(daemon, "app=t&n=1&q=noise", {"Accept": "text/event-stream"})
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert read_events(resp, 1, sse=True)[0]["line"] == "noise 4"
    resp.close()
    conn.close()


# ---- retention and durability ----------------------------------------------

FLOOD_RANDOM = r"""
import random, sys, time
r = random.Random(7)
w = sys.stdout.write
for i in range(%d):
    w('line %%d %%s\n' %% (i, ' '.join('%%08x' %% r.getrandbits(32) for _ in range(12))))
sys.stdout.flush()
time.sleep(1000)
"""


def test_retention_removes_old_data_and_keeps_disk_under_the_bound(start):
    d = start("--log-max-size", "3M", "--log-app-max-size", "2M", "--log-rate", "1000000",
              "--log-burst", "1000000")
    n = 80000  # about 9 MB of poorly compressible text
    d.apply(spec("big", {"web": FLOOD_RANDOM % n}))
    d.apply(spec("small", {"web": "import time\nfor i in range(50): print('small', i)\ntime.sleep(1000)"}))
    wait_for(lambda: stats(d)["lines_written"] >= n + 50, timeout=30, what="all lines written")
    st = wait_for(lambda: (lambda s: s if s["chunks_removed"] > 0 else None)(stats(d)), what="retention")
    assert st["stored_bytes"] <= 3 * 2**20 + 2**20, st
    db = os.path.join(d.data, "logs.db")
    wait_for(lambda: os.path.getsize(db) <= 4 * 2**20, what="the database to shrink")
    newest = wait_for(lambda: (lambda l: l if l.startswith(f"line {n - 1} ") else None)(
        logs(d, app="big", limit=1)["lines"][0]["line"]), what="the newest line")
    oldest = logs(d, app="big", limit=1, order="asc")["lines"][0]["line"]
    assert newest.startswith(f"line {n - 1} ")
    assert int(oldest.split()[1]) > 10000  # the oldest went, whole chunks at a time
    assert len(lines(d, app="small", stream="stdout")) == 50  # another app's lines are kept


def test_retention_by_age(start):
    d = start("--log-retention", "2s")
    d.apply(spec("old", {"web": "import time\nprint('early')\ntime.sleep(1000)"}))
    wait_lines(d, 1, app="old", q="early")
    wait_for(lambda: not lines(d, app="old", q="early"), timeout=10, what="old lines to expire")


TICKER = r"""
import time, sys
i = 0
while True:
    print('tick %d t=%.3f' % (i, time.time()), flush=True)
    i += 1
    time.sleep(0.005)
"""


def test_sigkill_of_the_daemon_loses_at_most_the_last_second(start, tmp_path):
    d = start()
    d.apply(spec("tk", {"web": TICKER}))
    wait_lines(d, 200, app="tk")
    time.sleep(0.5)
    t_kill = time.time()
    d.kill9()
    d2 = Daemon(tmp_path / "d")
    d2.data, d2.sock = d.data, d.sock
    d2.start()
    try:
        got = logs(d2, app="tk", q="tick", limit=10000, order="asc")["lines"]
        ticks = [int(l["line"].split()[1]) for l in got]
        times = [float(l["line"].split("t=")[1]) for l in got]
        # Nothing missing before the newest stored line of the first run...
        first_run = [t for t, s in zip(ticks, times) if s <= t_kill]
        assert first_run == list(range(len(first_run)))
        # ...and that newest line is at most a second older than the kill.
        assert max(s for s in times if s <= t_kill) >= t_kill - 1.0
    finally:
        assert d2.stop() == 0


# ---- backpressure ------------------------------------------------------------

def test_flooding_app_is_rate_limited_with_a_marker_while_another_app_logs(start):
    d = start("--log-rate", "2000", "--log-burst", "2000")
    d.apply(spec("calm", {"web": "import time\ni = 0\nwhile True:\n  print('calm', i, flush=True)\n"
                                 "  i += 1\n  time.sleep(0.05)"}))
    d.apply(spec("flood", {"web": "import sys, time\nline = 'x' * 100 + '\\n'\nend = time.time() + 2\n"
                                  "while time.time() < end:\n  sys.stdout.write(line * 1000)\n"
                                  "sys.stdout.flush()\ntime.sleep(1.5)\nprint('after the flood', flush=True)\n"
                                  "time.sleep(1000)"}))
    wait_lines(d, 1, app="flood", q='"after the flood"', timeout=20)
    markers = wait_for(lambda: lines(d, app="flood", q='"lines dropped"'), what="markers")
    for m in markers:
        assert m.startswith("\u2026 ") and m.endswith(" lines dropped \u2026"), m
    # At most one marker a second, each with the count since the one before.
    assert len(markers) <= 6
    dropped = sum(int(m.split()[1].replace(",", "")) for m in markers)
    assert dropped > 0
    st = stats(d)
    assert st["dropped_rate_limit"] >= dropped
    assert any(s["app"] == "flood" and s["dropped"] >= dropped for s in st["sources_dropping"])
    assert not any(s["app"] == "calm" for s in st["sources_dropping"])
    calm = sorted(int(l.split()[1]) for l in lines(d, app="calm", q="calm", stream="stdout"))
    assert calm == list(range(calm[0], calm[0] + len(calm))) and len(calm) > 40


# ---- hostile lines -------------------------------------------------------------

HOSTILE = r"""
import sys, time
out = sys.stdout.buffer
out.write(b'A' * 25000 + b'\n')
out.write(b'bin\x00ary\x01\x02\xff\xfe end\n')
out.write(b'bad utf8 \xc3\x28 \xed\xa0\x80 ok \xc3\xa9\n')
out.write(b'ansi \x1b[31mred\x1b[0m \x1b]0;title\x07 done\n')
out.write(b'[' * 9000 + b'\n')
out.write(b'{' + b','.join(b'"k%d":%d' % (i, i) for i in range(800)) + b'}\n')
out.write(b'{"a":' * 1500 + b'1' + b'}' * 1500 + b'\n')
out.flush()
time.sleep(1000)
"""


def test_hostile_lines_are_stored_and_shown_safely(daemon):
    daemon.apply(spec("h", {"web": HOSTILE}))
    got = wait_lines(daemon, 9, app="h", order="asc", stream="stdout")
    assert [len(l) for l in got[:3]] == [10000, 10000, 5000]
    assert got[3] == "bin\\x00ary\x01\x02\\xff\\xfe end"
    assert got[4] == "bad utf8 \\xc3( \\xed\\xa0\\x80 ok \u00e9"
    assert got[5] == "ansi \x1b[31mred\x1b[0m \x1b]0;title\x07 done"
    assert len(got[6]) == 9000
    wide = logs(daemon, app="h", q="k799:799")["lines"]
    assert wide == []  # only the first 64 fields are lifted
    assert len(logs(daemon, app="h", q="k1:1")["lines"]) == 1
    assert lines(daemon, app="h", q="ary") == [got[3]]
    # A terminal never sees the control characters.
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["PAASOPS_SERVER"] = f"unix:{daemon.sock}"
        os.environ.pop("NO_COLOR", None)
        os.execv(BIN, [BIN, "logs", "h", "--grep", "ansi OR binary OR ary"])
    out = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], 10)
            chunk = os.read(fd, 65536) if r else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "ansi \\x1b[31mred\\x1b[0m \\x1b]0;title\\x07 done" in text
    body = text.replace("\x1b[0m", "").replace("\x1b[2m", "").replace("\x1b[32m", "")
    assert "\x1b[31mred" not in body and "\x07" not in text and "\x01" not in text
    assert daemon.request("GET", "/healthz")[0] == 200


# ---- drains ----------------------------------------------------------------------

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


class Rsyslog:
    def __init__(self, tmp, port, tls=None):
        """tls: (ca, cert, key) files to listen with TLS through rsyslog's OpenSSL driver."""
        self.dir, self.port, self.proc = str(tmp), port, None
        self.out = os.path.join(self.dir, "out.log")
        if tls:
            ca, cert, key = tls
            head = (f'global(workDirectory="{self.dir}" DefaultNetstreamDriver="ossl" '
                    f'DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" '
                    f'DefaultNetstreamDriverKeyFile="{key}")\n'
                    'module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
                    'StreamDriver.AuthMode="anon")\n')
        else:
            head = f'global(workDirectory="{self.dir}")\nmodule(load="imtcp")\n'
        with open(os.path.join(self.dir, "rs.conf"), "w") as f:
            f.write(head +
                    'template(name="t" type="string" string="%app-name%|%procid%|%msgid%|'
                    '%syslogseverity-text%|%msg%\\n")\n'
                    f'input(type="imtcp" port="{port}")\n'
                    f'*.* action(type="omfile" file="{self.out}" template="t")\n')

    def start(self):
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", os.path.join(self.dir, "rs.conf"),
                                      "-i", os.path.join(self.dir, "pid")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, what="rsyslogd to listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def lines(self):
        try:
            with open(self.out, errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []


def ticks_in(texts):
    out = set()
    for t in texts:
        if "tick " in t:
            out.add(int(t.split("tick ")[1].split()[0]))
    return out


def delivered_across_a_restart(rs, app):
    """Checks the first line rsyslog got, restarts rsyslog (1.5 s down) and waits for 100 more
    ticks; fails on a gap. Returns the ticks received."""
    first = wait_for(lambda: [l for l in rs.lines() if "tick " in l], what="lines in rsyslog")
    got_app, procid, msgid, sev, _ = first[0].split("|", 4)
    assert (got_app, procid, msgid, sev) == (app, f"{app}.web.1", "stdout", "info")
    rs.stop()
    time.sleep(1.5)  # down for a while on purpose: the drain must queue and retry
    rs.start()
    seen_before = max(ticks_in(rs.lines()) or {0})
    wait_for(lambda: max(ticks_in(rs.lines()) or {0}) > seen_before + 100, timeout=40,
             what="lines after rsyslog came back")
    got = ticks_in(rs.lines())
    assert set(range(min(got), max(got) + 1)) <= got, "a gap: lines lost while rsyslog was down"
    return got


@pytest.mark.skipif(not os.path.exists(RSYSLOGD), reason="rsyslog is not installed (make deps)")
def test_syslog_drain_reaches_rsyslog_and_resumes_after_it_comes_back(start, tmp_path):
    port = free_port()
    rs = Rsyslog(tmp_path, port)
    rs.start()
    try:
        d = start("--log-drain", f"syslog://127.0.0.1:{port}")
        d.apply(spec("sy", {"web": "import time\ni = 0\nwhile True:\n  print('tick', i, flush=True)\n"
                                   "  i += 1\n  time.sleep(0.02)"}))
        got = delivered_across_a_restart(rs, "sy")
        drain = d.ok("GET", "/v1/logs/stats")["drains"][0]
        assert drain["kind"] == "syslog" and drain["sent"] >= len(got) and drain["failed"] >= 1
    finally:
        rs.stop()


def make_cert(d, name, san, ca=None):
    """A key and certificate for san (e.g. "IP:127.0.0.1"), signed by ca ((pem, key)) or
    self-signed as a CA when ca is None. Returns (pem, key)."""
    pem, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]
    if ca is None:
        subprocess.run(["openssl", "req", "-x509", *ec, "-out", pem, "-days", "2", "-subj", "/CN=" + name,
                        "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
        return pem, key
    csr = os.path.join(d, name + ".csr")
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n")
    subprocess.run(["openssl", "req", *ec, "-out", csr, "-subj", "/CN=" + name], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                    "-out", pem, "-days", "2", "-extfile", ext], check=True, capture_output=True)
    return pem, key


RSYSLOG_TLS = os.path.exists("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so")


@pytest.mark.skipif(not RSYSLOG_TLS, reason="rsyslog-openssl is not installed (make deps)")
def test_syslog_tls_drain_reaches_rsyslog_checks_its_certificate_and_resumes(start, tmp_path):
    ca = make_cert(str(tmp_path), "ca", None)
    srv = make_cert(str(tmp_path), "srv", "IP:127.0.0.1", ca)
    other_ca = make_cert(str(tmp_path), "other", None)
    port = free_port()
    rs = Rsyslog(tmp_path, port, tls=(ca[0], *srv))
    rs.start()
    try:
        d = start()
        d.apply(spec("st", {"web": "import time\ni = 0\nwhile True:\n  print('tick', i, flush=True)\n"
                                   "  i += 1\n  time.sleep(0.02)"}))
        # A drain that trusts another CA never gets through, and says why.
        r = d.cli("drains", "add", "st", f"syslog+tls://127.0.0.1:{port}?ca={other_ca[0]}")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "certificate verify failed" in (d.ok("GET", "/v1/logs/stats")["drains"][0]
                                                         .get("last_error") or ""), what="a verify failure")
        assert d.ok("GET", "/v1/logs/stats")["drains"][0]["sent"] == 0
        assert not [l for l in rs.lines() if "tick " in l]
        bad = d.ok("GET", "/v1/logs/stats")["drains"][0]["id"]
        assert d.cli("drains", "remove", "st", str(bad)).returncode == 0

        r = d.cli("drains", "add", "st", f"syslog+tls://127.0.0.1:{port}?ca={ca[0]}")
        assert r.returncode == 0, r.stderr
        got = delivered_across_a_restart(rs, "st")
        drain = d.ok("GET", "/v1/logs/stats")["drains"][0]
        assert drain["state"] in ("up", "connecting", "retrying") and drain["sent"] >= len(got)
    finally:
        rs.stop()


def test_syslog_tls_drain_options_are_checked_when_added(daemon, tmp_path):
    daemon.apply(hello_spec(instances=1))
    for url, want in [("syslog+tls://127.0.0.1:6514?ca=/nonexistent/ca.pem", "CA file /nonexistent/ca.pem"),
                      ("syslog+tls://127.0.0.1:6514?verify=no", "unknown TLS option 'verify=no'"),
                      ("syslog+tls://127.0.0.1:6514?key=/etc/hostname", "needs a client certificate"),
                      ("syslog+tls://127.0.0.1", "want syslog+tls://HOST:PORT"),
                      ("syslog://127.0.0.1:514?ca=x", "takes no options")]:
        r = daemon.cli("drains", "add", "hello", url)
        assert r.returncode == 1 and want in r.stderr, (url, r.stderr)
    assert json.loads(daemon.cli("drains", "hello", "--json").stdout)["drains"] == []


class Receiver:
    """An HTTP NDJSON receiver that can go away and come back on its port."""

    def __init__(self, port):
        self.port, self.got, self.server = port, [], None
        self.lock = threading.Lock()

    def start(self):
        rcv = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with rcv.lock:
                    rcv.got += [json.loads(l) for l in body.decode().splitlines() if l]
                    rcv.ctype = self.headers["Content-Type"]
                    rcv.path, rcv.auth = self.path, self.headers["Authorization"]
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def lines(self):
        with self.lock:
            return [g["line"] for g in self.got]


def test_http_drain_per_app_receives_ndjson_and_resumes(daemon):
    port = free_port()
    rcv = Receiver(port)
    rcv.start()
    try:
        daemon.apply(spec("hd", {"web": "import time\ni = 0\nwhile True:\n  print('tick', i, flush=True)\n"
                                        "  i += 1\n  time.sleep(0.02)"}))
        daemon.apply(spec("other", {"web": "import time\nwhile True:\n  print('other', flush=True)\n"
                                           "  time.sleep(0.05)"}))
        added = daemon.ok("POST", "/v1/apps/hd/log-drains", {"url": f"http://127.0.0.1:{port}/ingest"})
        assert added["kind"] == "http" and added["app"] == "hd"
        assert daemon.ok("GET", "/v1/apps/hd/log-drains")["drains"][0]["id"] == added["id"]
        wait_for(lambda: ticks_in(rcv.lines()), what="NDJSON batches")
        assert rcv.ctype == "application/x-ndjson"
        assert not [l for l in rcv.lines() if l == "other"]
        rcv.stop()
        time.sleep(1.5)
        rcv.start()
        before = max(ticks_in(rcv.lines()))
        wait_for(lambda: max(ticks_in(rcv.lines())) > before + 100, timeout=40, what="resumed delivery")
        got = ticks_in(rcv.lines())
        assert set(range(min(got), max(got) + 1)) <= got
        rec = [g for g in rcv.got if g["line"].startswith("tick")][0]
        assert rec["app"] == "hd" and rec["instance"] == "hd.web.1" and rec["stream"] == "stdout"
        st, _ = daemon.request("DELETE", f"/v1/apps/hd/log-drains/{added['id']}")
        assert st == 200
        assert daemon.request("DELETE", f"/v1/apps/hd/log-drains/{added['id']}")[0] == 404
        assert daemon.ok("GET", "/v1/apps/hd/log-drains")["drains"] == []
        st, doc = daemon.request("POST", "/v1/apps/hd/log-drains", {"url": "ftp://x"})
        assert st == 400
    finally:
        rcv.stop()


# ---- permissions -------------------------------------------------------------------

def test_scoped_tokens_read_only_their_apps_logs(daemon):
    daemon.apply(spec("a", {"web": "import time\nprint('from a')\ntime.sleep(1000)"}))
    daemon.apply(spec("b", {"web": "import time\nprint('from b')\ntime.sleep(1000)"}))
    wait_lines(daemon, 1, app="a", q="from")
    wait_lines(daemon, 1, app="b", q="from")
    tok = daemon.ok("POST", "/v1/tokens", {"role": "viewer", "apps": ["a"]})["token"]

    def get(path):
        return daemon.request("GET", path, token=tok, tcp=True)
    st, doc = get("/v1/logs?app=b")
    assert st == 403 and "'b'" in doc["error"]["message"]
    assert get("/v1/logs?app=a,b")[0] == 403
    st, doc = get("/v1/logs?q=from")
    assert st == 200 and [l["line"] for l in doc["lines"]] == ["from a"]
    assert get("/v1/logs/stream?app=b")[0] == 403
    assert get("/v1/logs/stats")[0] == 403
    assert get("/v1/apps/b/log-drains")[0] == 403
    st, doc = daemon.request("GET", "/v1/logs?q=from", tcp=True)
    assert st == 401


def test_cli_manages_an_apps_log_drains(daemon):
    daemon.apply(hello_spec(instances=1))
    r = daemon.cli("drains", "hello")
    assert r.returncode == 0 and "no log drains" in r.stderr
    r = daemon.cli("drains", "add", "hello", "http://127.0.0.1:9/ingest")
    assert r.returncode == 0, r.stderr
    assert "added drain" in r.stdout
    r = daemon.cli("drains", "hello", "--json")
    drains = json.loads(r.stdout)["drains"]
    assert [d["url"] for d in drains] == ["http://127.0.0.1:9/ingest"]
    r = daemon.cli("drains", "add", "hello", "ftp://nowhere")
    assert r.returncode == 1 and "syslog://" in r.stderr
    r = daemon.cli("drains", "remove", "hello", "999")
    assert r.returncode == 1
    r = daemon.cli("drains", "remove", "hello", str(drains[0]["id"]))
    assert r.returncode == 0, r.stderr
    assert json.loads(daemon.cli("drains", "hello", "--json").stdout)["drains"] == []


def test_drain_credentials_reach_the_receiver_but_no_listing(daemon):
    port = free_port()
    rcv = Receiver(port)
    rcv.start()
    try:
        daemon.apply(spec("hello", {"web": "import time\ni = 0\nwhile True:\n  print('tick', i, flush=True)\n"
                                           "  i += 1\n  time.sleep(0.05)"}))
        url = f"http://user:s3cretpw@127.0.0.1:{port}/cred?token=abc123"
        shown = f"http://user:********@127.0.0.1:{port}/cred?token=********"
        r = daemon.cli("drains", "add", "hello", url)
        assert r.returncode == 0 and r.stdout == f"added drain 1 of app 'hello': {shown}\n", r
        # The daemon sends to the real URL.
        wait_for(lambda: ticks_in(rcv.lines()), what="lines at the receiver")
        assert rcv.path == "/cred?token=abc123"
        assert rcv.auth == "Basic " + base64.b64encode(b"user:s3cretpw").decode()
        # Nobody sees the password or the token: not a viewer, not an admin.
        tok = daemon.ok("POST", "/v1/tokens", {"role": "viewer", "apps": ["hello"]})["token"]
        st, doc = daemon.request("GET", "/v1/apps/hello/log-drains", token=tok, tcp=True)
        assert st == 200 and [d["url"] for d in doc["drains"]] == [shown]
        assert [d["url"] for d in daemon.ok("GET", "/v1/apps/hello/log-drains")["drains"]] == [shown]
        r = daemon.cli("drains", "hello", token=tok, server=f"http://127.0.0.1:{daemon.api_port}")
        assert r.returncode == 0 and shown in r.stdout, r
        # The same URL again would send every line twice: refused.
        st, doc = daemon.request("POST", "/v1/apps/hello/log-drains", {"url": url})
        assert st == 409 and doc["error"]["message"] == f"app 'hello' already has a drain to {shown} (drain 1)"
        r = daemon.cli("drains", "add", "hello", url)
        assert r.returncode == 1 and "already has a drain" in r.stderr, r
        assert len(daemon.ok("GET", "/v1/apps/hello/log-drains")["drains"]) == 1
        audit = daemon.cli("audit", "--json").stdout
        for secret in ("s3cretpw", "abc123"):
            for text in (r.stderr, audit, json.dumps(daemon.events("hello")), daemon.read_log()):
                assert secret not in text
    finally:
        rcv.stop()


def test_drains_of_an_unknown_app_are_not_found(daemon):
    st, doc = daemon.request("GET", "/v1/apps/nosuchapp/log-drains")
    assert st == 404 and doc["error"]["message"] == "app 'nosuchapp' not found"
    r = daemon.cli("drains", "nosuchapp")
    assert r.returncode == 1 and r.stderr == "error: app 'nosuchapp' not found\n" and r.stdout == "", r


def test_cli_listings_of_an_unknown_app_say_so(daemon):
    # Nothing for a name no app has is a typo, not an empty log.
    for args in (("logs", "nosuch"), ("events", "nosuch")):
        r = daemon.cli(*args)
        assert r.returncode == 1 and "app 'nosuch' not found" in r.stderr, (args, r)
        assert r.stdout == ""
    # An app that exists but matches nothing: exit 0, nothing on stdout, a note on stderr.
    daemon.apply(spec("quiet", {"web": QAPP}))
    r = daemon.cli("logs", "quiet", "--grep", "no-such-word-anywhere")
    assert r.returncode == 0 and r.stdout == "" and "no log lines" in r.stderr, r
