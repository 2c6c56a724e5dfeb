"""Usage reports end to end (GET /v1/usage, `paasops usage`): an app that
burns a measured amount of CPU and an idle one that serves a known number
of requests, read back from the daemon's history (sampled every 100 ms, the
flag's minimum); cost at the daemon's prices; a scoped token's view; bad
input. One daemon serves the module."""
import http.client
import json
import os

import pytest

from conftest import HELLO, SLOW, Daemon, wait_for

PRICE_CPU, PRICE_MEM = 2.5, 0.75
BURN_SECONDS = 2

BUSY = f"""app: busy
processes:
  worker:
    command: sh -c 'timeout --foreground {BURN_SECONDS} sha256sum /dev/zero; exec sleep 1000'
    instances: 1
    stop_timeout: 2s
"""

IDLE = f"""app: idle
processes:
  web:
    command: {HELLO}
    instances: 1
    stop_timeout: 5s
    health: {{http: /, interval: 1s, timeout: 1s}}
    routes: [{{host: idle.test}}]
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    dm = Daemon(tmp_path_factory.mktemp("usage"))
    dm.start(extra=["--metrics-interval", "100ms", "--price-cpu-hour", str(PRICE_CPU),
                    "--price-memory-gb-hour", str(PRICE_MEM), "--price-currency", "EUR"])
    try:
        dm.apply(BUSY)
        dm.apply(IDLE)
        dm.wait_ready("busy", 1, timeout=20)
        dm.wait_ready("idle", 1, timeout=20)
    except BaseException:
        dm.stop()  # a failed set-up leaves no daemon behind
        raise
    yield dm
    if dm.proc.poll() is None:
        dm.instances()
        assert dm.stop() == 0, dm.read_log()


def usage(dm, query="", **kw):
    return dm.request("GET", "/v1/usage" + query, **kw)


def app_of(doc, name):
    return [a for a in doc["apps"] if a["app"] == name][0]


def _stat(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _group(pgrp):
    """(pid, fields) of the live processes of a process group."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            f = _stat(p)
            if f and int(f[2]) == pgrp:
                out.append((p, f))
    return out


def _comm(p):
    try:
        with open(f"/proc/{p}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def burned(dm):
    """CPU (user + system, reaped children included) of the busy instance's
    process group, read from /proc once the burner has ended."""
    pgrp = dm.instances("busy")[0]["pid"]
    wait_for(lambda: not any(_comm(p) in ("sha256sum", "timeout") for p, _ in _group(pgrp)),
             timeout=20 * SLOW, what="the busy app's burn to end")
    ticks = sum(int(x) for _, f in _group(pgrp) for x in f[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def test_busy_app_core_hours_match_the_cpu_it_burned(d):
    spent = burned(d)
    assert spent > 0.3, f"the burner got only {spent}s of CPU"

    def caught_up():
        doc = d.ok("GET", "/v1/usage?since=1h")
        return doc if app_of(doc, "busy")["cpu_core_hours"] * 3600 >= spent * 0.9 else None
    doc = wait_for(caught_up, timeout=20 * SLOW, what="the history to hold the burn")
    busy, idle = app_of(doc, "busy"), app_of(doc, "idle")
    seconds = busy["cpu_core_hours"] * 3600
    assert spent * 0.9 <= seconds <= spent * 1.1 + 0.2, (seconds, spent)
    assert busy["cpu_core_hours"] > idle["cpu_core_hours"]
    assert idle["cpu_core_hours"] * 3600 < 0.5
    # The burn ran at about one core: the peak saw it, the average is below it.
    assert busy["cpu_peak_cores"] > 0.3 and busy["cpu_peak_cores"] > idle["cpu_peak_cores"], busy
    assert busy["cpu_avg_cores"] <= busy["cpu_peak_cores"]
    covered = doc["covered_seconds"]
    assert abs(busy["cpu_avg_cores"] - seconds / covered) < 1e-6 + 0.05 * busy["cpu_avg_cores"]
    # Memory and instance time come from the samples: one instance each.
    for a in (busy, idle):
        assert a["memory_gib_hours"] > 0 and a["memory_avg_bytes"] > 0
        assert a["memory_peak_bytes"] >= a["memory_avg_bytes"]
        assert 0 < a["instance_hours"] * 3600 <= covered + 1


def test_window_is_clamped_to_the_history_held(d):
    doc = d.ok("GET", "/v1/usage?since=30d")
    assert doc["from"] < doc["covered_from"] <= doc["to"]
    # The daemon started moments ago: well under an hour of history.
    assert 0 < doc["covered_seconds"] < 3600
    assert doc["forecast_days"] == 30 and doc["forecast_period"] == "hour"
    # Fewer than 3 hourly points: no trend, and so no forecast cost.
    for a in doc["apps"]:
        assert a["forecast"]["cpu_cores"] is None and a["forecast"]["memory_bytes"] is None
        assert a["forecast"]["cost"] is None
    assert doc["total"]["forecast_cost"] is None
    doc = d.ok("GET", "/v1/usage?since=1h&forecast=7d")
    assert doc["forecast_days"] == 7


def test_requests_counted_are_the_requests_sent(d):
    before = app_of(d.ok("GET", "/v1/usage?app=idle"), "idle")
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30 * SLOW)
    codes = []
    for path in ["/sick"] + ["/"] * 16 + ["/healthz"] * 3:
        conn.request("GET", path, headers={"Host": "idle.test"})
        r = conn.getresponse()
        r.read()
        codes.append(r.status)
    conn.close()
    assert codes.count(503) == 3 and len(codes) == 20, codes

    def counted():
        a = app_of(d.ok("GET", "/v1/usage?app=idle"), "idle")
        return a if a["requests"] - before["requests"] >= 20 else None
    a = wait_for(counted, timeout=20 * SLOW, what="the requests to reach the history")
    assert a["requests"] - before["requests"] == 20
    assert a["requests_5xx"] - before["requests_5xx"] == 3
    assert a["bytes_sent"] > before["bytes_sent"]
    assert a["error_ratio"] == pytest.approx(a["requests_5xx"] / a["requests"])
    assert app_of(d.ok("GET", "/v1/usage"), "busy")["requests"] == 0


def test_cost_is_core_hours_and_gib_hours_at_the_prices(d):
    doc = d.ok("GET", "/v1/usage?since=1h")
    assert doc["prices"] == {"cpu_hour": PRICE_CPU, "memory_gb_hour": PRICE_MEM, "currency": "EUR"}
    total = 0
    for a in doc["apps"]:
        want = a["cpu_core_hours"] * PRICE_CPU + a["memory_gib_hours"] * PRICE_MEM
        assert a["cost"] == pytest.approx(want, rel=1e-9, abs=1e-12)
        total += a["cost"]
    assert doc["total"]["cost"] == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert app_of(doc, "busy")["cost"] > 0


def test_cli_prints_a_table_and_forecast_lines(d):
    r = d.cli("usage", "--since", "1h")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = [l for l in lines if l.startswith("APP")][0]
    for col in ("CPU CORE-H", "AVG CORES", "PEAK CORES", "MEM GIB-H", "AVG MEM", "PEAK MEM",
                "REQUESTS", "5XX %", "COST"):
        assert col in head
    assert any(l.startswith("busy ") and "EUR" in l for l in lines), r.stdout
    assert any(l.startswith("busy: cpu no trend yet; memory no trend yet") for l in lines), r.stdout
    assert "total cost" in r.stdout
    r = d.cli("usage", "busy", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [a["app"] for a in doc["apps"]] == ["busy"]


def test_scoped_viewer_sees_only_its_apps(d):
    status, tok = d.request("POST", "/v1/tokens", {"role": "viewer", "apps": ["idle"]})
    assert status == 201, tok
    token = tok["token"]
    status, doc = d.request("GET", "/v1/usage", token=token, tcp=True)
    assert status == 200, doc
    assert [a["app"] for a in doc["apps"]] == ["idle"]
    status, doc = d.request("GET", "/v1/usage?app=busy", token=token, tcp=True)
    assert status == 403, doc
    status, doc = d.request("GET", "/v1/usage?app=idle", token=token, tcp=True)
    assert status == 200 and [a["app"] for a in doc["apps"]] == ["idle"]
    r = d.cli("usage", token=token, server=f"http://127.0.0.1:{d.api_port}")
    assert r.returncode == 0, r.stderr
    assert "idle" in r.stdout and "busy" not in r.stdout


@pytest.mark.parametrize("query", ["?since=abc", "?since=0", "?since=-5m", "?forecast=x",
                                   "?forecast=0s", "?since=100000d"])
def test_bad_durations_are_400(d, query):
    status, doc = usage(d, query)
    assert status == 400, doc
    assert doc["error"]["code"] == "bad_request"


def test_unknown_app_is_404_and_cli_errors(d):
    status, doc = usage(d, "?app=nope")
    assert status == 404 and doc["error"]["code"] == "not_found"
    r = d.cli("usage", "nope")
    assert r.returncode == 1 and "not found" in r.stderr
    for flag in ("--since", "--forecast"):
        r = d.cli("usage", flag, "soon")
        assert r.returncode == 2, (flag, r.stderr)
        assert f"invalid {flag} 'soon'" in r.stderr
        # Out of the daemon's range: its 400 is a bad flag too, and says the range.
        r = d.cli("usage", flag, "3651d")
        assert r.returncode == 2, (flag, r.stderr)
        assert "at most 3650d" in r.stderr and "paasops usage --help" in r.stderr, r.stderr


def test_price_flags_are_checked_at_start(tmp_path):
    for flags in (["--price-cpu-hour", "cheap"], ["--price-memory-gb-hour", "-1"],
                  ["--price-currency", "euro dollars"]):
        dm = Daemon(tmp_path)
        dm.start(extra=flags, wait=False)
        assert dm.proc.wait(timeout=10 * SLOW) != 0
        dm.log.close()
        assert f"invalid {flags[0]}" in dm.read_log()


def test_without_prices_cost_is_null(tmp_path):
    dm = Daemon(tmp_path).start(extra=["--metrics-interval", "100ms"])
    try:
        doc = dm.ok("GET", "/v1/usage")
        assert doc["prices"] is None and doc["total"]["cost"] is None
        assert doc["apps"] == []
    finally:
        assert dm.stop() == 0, dm.read_log()
