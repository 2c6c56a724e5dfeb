"""Metrics end to end: /metrics in both exposition formats checked by the real
`promtool` and scraped by a real Prometheus; the history's query API against
a load with known rate and latencies driven through the router; token rules;
the CLI's metrics, top (live, in a pseudo-terminal) and export grafana; and
the history surviving a daemon restart. One daemon (sampling every 250 ms)
serves the whole module; tests that need other flags start their own."""
import gzip
import http.client
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import termios
import time
import urllib.parse
import urllib.request

import pytest

from conftest import BIN, HELLO, SLOW, Daemon, free_port, wait_for

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

APPS = {"rate": "rate.test", "lat": "lat.test", "other": "other.test"}


def spec(app, host, instances=2):
    return f"""app: {app}
processes:
  web:
    command: {HELLO}
    instances: {instances}
    health: {{http: /healthz, interval: 1s, timeout: 1s}}
    stop_timeout: 5s
    routes: [{{host: {host}}}]
  worker:
    command: sleep 1000
    instances: 1
    stop_timeout: 2s
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    dm = Daemon(tmp_path_factory.mktemp("metrics"))
    dm.start(extra=["--metrics-interval", "250ms"])
    for app, host in APPS.items():
        dm.apply(spec(app, host))
    for app in APPS:
        dm.wait_ready(app, 3, timeout=20)
    yield dm
    if dm.proc.poll() is None:
        assert dm.stop() == 0, dm.read_log()


def scrape(dm, headers=None, token=None, tcp=False):
    conn = (http.client.HTTPConnection("127.0.0.1", dm.api_port, timeout=30 * SLOW) if tcp
            else __import__("conftest").UnixHTTPConnection(dm.sock, timeout=30 * SLOW))
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn.request("GET", "/metrics", headers=h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body


def query(dm, **params):
    q = urllib.parse.urlencode(params)
    return dm.ok("GET", f"/v1/metrics/query?{q}")


def get(port, host, path="/"):
    """One request through the router, on a kept-alive connection per host."""
    conn = get.conns.get(host)
    if conn is None:
        conn = get.conns[host] = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW)
    conn.request("GET", path, headers={"Host": host})
    r = conn.getresponse()
    r.read()
    return r.status


get.conns = {}


def series_value(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


# ---- exposition --------------------------------------------------------------

def test_promtool_accepts_live_metrics_of_several_apps(d):
    for host in APPS.values():
        assert get(d.http_port, host) == 200
    wait_for(lambda: all(f'paasops_http_requests_total{{app="{a}"' in scrape(d)[2].decode()
                         for a in APPS), timeout=10, what="router metrics of every app")
    wait_for(lambda: 'instance="rate.worker.1",state="ready"} 1' in scrape(d)[2].decode(),
             timeout=10, what="the sampler to see rate.worker.1 ready")
    status, headers, body = scrape(d)
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    for app in APPS:
        for name in ("paasops_instance_resident_memory_bytes", "paasops_replicas_ready",
                     "paasops_http_request_duration_seconds_bucket"):
            assert f'{name}{{app="{app}"' in text, (name, app)
    assert series_value(text, "paasops_replicas_desired", app="rate", process="web") == 2
    assert series_value(text, "paasops_instance_state", instance="rate.worker.1", state="ready") == 1
    if not PROMTOOL:
        pytest.skip("promtool is not installed (make deps installs Debian's prometheus)")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert r.stdout.decode().strip() == "" and r.stderr.decode().strip() == "", r


def documented_metric_names():
    """Names doc/metrics.md documents: full names in backticks, and `_suffix`
    shorthands after one (`paasops_host_load1`, `_load5`) on the same line."""
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "doc", "metrics.md")
    full, short = set(), []
    with open(doc) as f:
        for line in f:
            names = re.findall(r"`(paasops_[a-z0-9_]+)", line)
            full.update(names)
            for suffix in re.findall(r"`(_[a-z0-9_]+)`", line):
                short.extend((n, suffix) for n in names)
    return full, short


def test_every_exposed_family_is_documented(d):
    full, short = documented_metric_names()
    exposed = re.findall(r"^# TYPE (\S+) ", scrape(d)[2].decode(), re.M)
    assert "paasops_log_disk_bytes" in exposed
    missing = [n for n in exposed if n not in full and not any(
        n.endswith(suf) and f.startswith(n[:-len(suf)]) for f, suf in short)]
    assert not missing, missing


def test_openmetrics_and_gzip_are_negotiated(d):
    status, headers, body = scrape(d, {"Accept": "application/openmetrics-text;version=1.0.0,"
                                                 "text/plain;version=0.0.4;q=0.5"})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE paasops_http_requests counter\n" in text
    assert "paasops_http_requests_total{" in text
    status, headers, zbody = scrape(d, {"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    plain = gzip.decompress(zbody).decode()
    assert "# TYPE paasops_http_requests_total counter" in plain
    status, headers, body = scrape(d, {"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in headers and body.startswith(b"# HELP")


# ---- the query API with known values ----------------------------------------

def test_query_rate_matches_a_paced_load(d):
    """150 requests at 25/s: the counter grows by exactly 150, and the API's
    rate equals the counter's slope over the same stored points."""
    def total():
        r = query(d, name="paasops_http_requests_total", fn="raw", start="now", end="now",
                  **{"match[app]": "rate", "match[code]": "2xx"})
        return r["series"][0]["points"][0][1] if r["series"] else 0
    # Requests of earlier tests are sampled up to an interval later: start
    # from a count that has caught up with the router's own.
    counted = d.ok("GET", "/v1/apps/rate/stats")["status"]["2xx"]
    before = wait_for(lambda: (lambda t: (t,) if t == counted else None)(total()), timeout=5,
                      what="the stored counter to catch up with the router's count")[0]
    time.sleep(0.6)
    t0 = time.time()
    for k in range(150):
        delay = t0 + k / 25 - time.time()
        if delay > 0:
            time.sleep(delay)
        assert get(d.http_port, APPS["rate"]) == 200
    t1 = time.time()
    wait_for(lambda: total() == before + 150, timeout=5, what="the counter to count 150 requests")
    mid = (t0 + t1) / 2
    r = query(d, name="paasops_http_requests_total", fn="rate", start=f"{mid:.3f}", end=f"{mid:.3f}",
              window="3s", **{"match[app]": "rate", "match[code]": "2xx"})
    assert r["window"] == 3 and r["resolution"] == 0.25
    assert len(r["series"]) == 1 and r["series"][0]["labels"] == {"app": "rate", "process": "web", "code": "2xx"}
    rate = r["series"][0]["points"][0][1]
    assert 20 <= rate <= 30, rate
    raw = query(d, name="paasops_http_requests_total", fn="raw", start=f"{mid - 3 + 0.001:.3f}",
                end=f"{mid:.3f}", **{"match[app]": "rate", "match[code]": "2xx"})
    pts = raw["series"][0]["points"]
    assert len(pts) >= 8
    slope = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    assert abs(slope - rate) < 1e-6 * max(1, rate), (slope, rate)
    # by=app sums the status classes of the app.
    r = query(d, name="paasops_http_requests_total", fn="rate", start=f"{mid:.3f}", end=f"{mid:.3f}",
              window="3s", by="app", **{"match[app]": "rate"})
    assert r["series"][0]["labels"] == {"app": "rate"}
    assert abs(r["series"][0]["points"][0][1] - rate) < 1e-6 * max(1, rate)


def test_query_p95_of_known_latencies(d):
    """90 fast requests and 10 that take 300 ms: p95 interpolates to 0.375 s
    and p99 to 0.475 s within the 0.25-0.5 s bucket, as Prometheus does."""
    def count():
        r = query(d, name="paasops_http_request_duration_seconds_count", fn="raw", start="now",
                  end="now", **{"match[app]": "lat"})
        return r["series"][0]["points"][0][1] if r["series"] else 0
    wait_for(lambda: query(d, name="paasops_replicas_ready", fn="raw", start="now", end="now",
                           **{"match[app]": "lat"})["series"], timeout=5, what="lat to be sampled")
    before = count()
    time.sleep(0.6)
    t0 = time.time()
    for _ in range(90):
        assert get(d.http_port, APPS["lat"]) == 200
    for _ in range(10):
        assert get(d.http_port, APPS["lat"], "/slow?ms=300") == 200
    wait_for(lambda: count() == before + 100, timeout=5, what="100 requests in the histogram")
    time.sleep(0.6)
    window = f"{time.time() - t0 + 0.5:.3f}"
    r = query(d, name="paasops_http_request_duration_seconds", fn="p95", start="now", end="now",
              window=window, **{"match[app]": "lat"})
    assert len(r["series"]) == 1
    assert r["series"][0]["labels"] == {"app": "lat", "process": "web"}
    assert abs(r["series"][0]["points"][0][1] - 0.375) < 1e-9, r
    r = query(d, name="paasops_http_request_duration_seconds", fn="p99", start="now", end="now",
              window=window, **{"match[app]": "lat"})
    assert abs(r["series"][0]["points"][0][1] - 0.475) < 1e-9, r
    # A histogram without a quantile is a clear 400.
    st, doc = d.request("GET", "/v1/metrics/query?name=paasops_http_request_duration_seconds&fn=rate")
    assert st == 400 and "histogram" in doc["error"]["message"]


def test_query_api_refuses_what_can_have_no_value(d):
    """Quantiles only of histograms, histograms only with a quantile, and
    names the metrics know: each a 400 saying why, not an empty answer."""
    cases = {
        "name=paasops_http_requests_total&fn=p50":
            "'paasops_http_requests_total' is a counter: quantiles (p50, p90, p95, p99) need a "
            "histogram, such as paasops_http_request_duration_seconds",
        "name=paasops_http_requests_total&fn=quantile_0.5":
            "'paasops_http_requests_total' is a counter: quantiles (p50, p90, p95, p99) need a "
            "histogram, such as paasops_http_request_duration_seconds",
        "name=paasops_host_load1&fn=p95":
            "'paasops_host_load1' is a gauge: quantiles (p50, p90, p95, p99) need a histogram, "
            "such as paasops_http_request_duration_seconds",
        "name=paasops_http_request_duration_seconds":
            "'paasops_http_request_duration_seconds' is a histogram: ask for a quantile of it "
            "(p50, p90, p95 or p99), or for the series paasops_http_request_duration_seconds_count, "
            "paasops_http_request_duration_seconds_sum or paasops_http_request_duration_seconds_bucket",
        "name=paasops_instance_open_fd&fn=max":
            "unknown metric 'paasops_instance_open_fd' (did you mean 'paasops_instance_open_fds'?)",
    }
    for q, message in cases.items():
        st, doc = d.request("GET", f"/v1/metrics/query?{q}")
        assert st == 400 and doc["error"] == {"code": "bad_request", "message": message}, (q, doc)
    # What they can have is answered.
    for q in ("name=paasops_http_request_duration_seconds&fn=p50",
              "name=paasops_http_request_duration_seconds_count&fn=rate",
              "name=paasops_host_load1&fn=max"):
        st, doc = d.request("GET", f"/v1/metrics/query?{q}")
        assert st == 200, (q, doc)


def test_query_api_rejects_bad_input(d):
    for q in ("", "name=x&fn=nope", "name=x&start=yesterday", "name=x&step=-1",
              "name=x&start=now&end=now-1h", "name=x&fn=avg&start=0&end=now&step=0.001"):
        st, doc = d.request("GET", f"/v1/metrics/query?{q}")
        assert st == 400, (q, st, doc)
        assert doc["error"]["code"] == "bad_request"
    status = d.ok("GET", "/v1/metrics")
    names = {m["name"] for m in status["metrics"]}
    assert "paasops_http_requests_total" in names
    assert status["history"]["dropped_series"] == 0
    assert status["history"]["memory_bytes"] <= status["history"]["memory_budget_bytes"]


def test_query_leaves_out_missing_by_labels_and_empty_series_and_refuses_a_bare_match(d):
    # As in Prometheus: a by label no series has is no label of the group.
    doc = query(d, name="paasops_replicas_ready", fn="avg", by="nosuchlabel", start="now", end="now")
    assert [s["labels"] for s in doc["series"]] == [{}], doc
    doc = query(d, name="paasops_replicas_ready", fn="avg", by="app,nosuchlabel", start="now", end="now")
    assert sorted(s["labels"]["app"] for s in doc["series"]) == sorted(APPS), doc
    assert all(set(s["labels"]) == {"app"} for s in doc["series"]), doc
    # Windows without requests have no quantile: such a series is not answered at all.
    doc = query(d, name="paasops_http_request_duration_seconds", fn="quantile_0.999",
                start="now-3s", end="now", step="1")
    assert all(s["points"] for s in doc["series"]), doc
    # Prometheus' match[]=SELECTOR (or a bare match) would match everything: refused.
    for q in ("match[]=x", "match=x", "match[]=paasops_replicas_ready"):
        st, err = d.request("GET", f"/v1/metrics/query?name=paasops_replicas_ready&fn=avg&{q}")
        assert st == 400 and "match[LABEL]=VALUE" in err["error"]["message"], (q, st, err)


# ---- tokens ----------------------------------------------------------------

def make_token(dm, role, apps=None):
    body = {"role": role}
    if apps:
        body["apps"] = apps
    st, doc = dm.request("POST", "/v1/tokens", body)
    assert st == 201, doc
    return doc["token"]


def test_metrics_need_a_token_on_tcp_and_scopes_filter(d):
    assert scrape(d, tcp=True)[0] == 401
    viewer = make_token(d, "viewer")
    st, _, body = scrape(d, tcp=True, token=viewer)
    assert st == 200 and b'app="other"' in body
    scoped = make_token(d, "viewer", ["rate"])
    st, _, body = scrape(d, tcp=True, token=scoped)
    text = body.decode()
    assert st == 200 and 'app="rate"' in text
    assert 'app="other"' not in text and "paasops_host_" not in text
    st, doc = d.request("GET", "/v1/metrics/query?name=paasops_replicas_ready&fn=raw&start=now&end=now",
                        token=scoped, tcp=True)
    assert st == 200 and {s["labels"]["app"] for s in doc["series"]} == {"rate"}
    st, _ = d.request("GET", "/v1/metrics/query?name=paasops_replicas_ready", tcp=True)
    assert st == 401


def test_metrics_public_allows_only_the_scrape(tmp_path):
    dm = Daemon(tmp_path).start(extra=["--metrics-public", "--http", "off"])
    try:
        st, headers, body = scrape(dm, tcp=True)
        assert st == 200 and b"paasops_build_info" in body
        assert dm.request("GET", "/v1/metrics/query?name=paasops_build_info", tcp=True)[0] == 401
        assert dm.request("GET", "/v1/apps", tcp=True)[0] == 401
    finally:
        assert dm.stop() == 0


def test_instance_cpu_counts_a_process_started_later_without_a_spike(tmp_path):
    # The instance's leader starts a busy child after a second; the sampler
    # finds new processes of a group only on its full passes (every 10th
    # sample), so the child's CPU is counted late, but must never show as
    # more than the one core it can use in cpu_usage_ratio.
    dm = Daemon(tmp_path).start(extra=["--metrics-interval", "250ms"])
    try:
        dm.apply("app: fork\nprocesses:\n  web:\n"
                 "    command: sh -c 'sleep 1; yes > /dev/null & exec sleep 1000'\n"
                 "    instances: 1\n    stop_timeout: 2s\n")
        dm.wait_ready("fork", 1)

        def cpu():
            st, _, body = scrape(dm)
            try:
                return series_value(body.decode(), "paasops_instance_cpu_seconds_total",
                                    instance="fork.web.1")
            except AssertionError:
                return 0

        wait_for(lambda: cpu() > 1.0, timeout=15, what="the busy child's CPU time counted")
        pts = query(dm, name="paasops_instance_cpu_usage_ratio", fn="raw", start="now-60s",
                    end="now", **{"match[instance]": "fork.web.1"})["series"][0]["points"]
        assert len(pts) > 5
        assert max(v for _, v in pts) < 1.5, pts
    finally:
        assert dm.stop() == 0


def test_instance_cpu_ratio_starts_at_the_second_sample_of_a_run(tmp_path):
    # The first sample of an instance, a few ms after its start, has no
    # previous one to measure from: the start-up CPU over those ms would read
    # as a large share of a core. The ratio's first point is the second
    # sample's, in the first run and in the one after a daemon restart.
    dm = Daemon(tmp_path).start(extra=["--metrics-interval", "250ms"])
    try:
        dm.apply("app: idle\nprocesses:\n  worker:\n    command: sleep 1000\n"
                 "    instances: 1\n    stop_timeout: 2s\n")
        dm.wait_ready("idle", 1)
        assert dm.stop() == 0
        dm.start(extra=["--metrics-interval", "250ms"])
        dm.wait_ready("idle", 1)

        def points(name):
            got = query(dm, name=name, fn="raw", start="now-60s", end="now",
                        **{"match[instance]": "idle.worker.1"})["series"]
            return got[0]["points"] if got else []

        def run_starts():
            """The first sample of each run: where the uptime drops (or begins)."""
            up = points("paasops_instance_uptime_seconds")
            return [t for k, (t, v) in enumerate(up) if k == 0 or v < up[k - 1][1]]

        wait_for(lambda: len(run_starts()) == 2 and
                 points("paasops_instance_cpu_usage_ratio")[-1][0] > run_starts()[1] + 1,
                 timeout=15, what="samples of the instance's second run")
        ratio = points("paasops_instance_cpu_usage_ratio")
        times = {t for t, _ in ratio}
        for start in run_starts():
            assert start not in times, (start, ratio)
        assert max(v for _, v in ratio) < 0.5, ratio
    finally:
        dm.stop()


def test_dropped_log_lines_are_counted_per_instance_and_reason(tmp_path):
    dm = Daemon(tmp_path).start(extra=["--metrics-interval", "250ms", "--log-rate", "100",
                                       "--log-burst", "100"])
    try:
        dm.apply("app: flood\nprocesses:\n  web:\n    command: sh -c 'seq 100000; exec sleep 1000'\n"
                 "    instances: 1\n    stop_timeout: 2s\n")
        dm.wait_ready("flood", 1)

        def dropped():
            st = dm.ok("GET", "/v1/logs/stats")
            return sum(s["dropped"] for s in st["sources_dropping"] if s["app"] == "flood")

        def exposed():
            try:
                return series_value(scrape(dm)[2].decode(), "paasops_log_lines_dropped_total",
                                    app="flood", instance="flood.web.1", reason="rate_limit")
            except AssertionError:
                return -1

        wait_for(lambda: dropped() > 1000 and exposed() == dropped(), timeout=20,
                 what="the rate-limited lines in the metric")
        text = scrape(dm)[2].decode()
        families = ("paasops_log_lines_total", "paasops_log_lines_dropped_total",
                    "paasops_log_stored_bytes", "paasops_log_stored_lines", "paasops_log_disk_bytes")
        for name in families:
            assert re.search(rf"^{name}(\{{.*\}})? ", text, re.M), name
        # No series counts for nobody: every dropped line is some source's.
        drops = [l for l in text.splitlines() if l.startswith("paasops_log_lines_dropped_total{")]
        assert drops and not [l for l in drops if 'app=""' in l], drops
    finally:
        dm.stop()


# ---- a real Prometheus --------------------------------------------------------

def test_prometheus_scrapes_the_daemon(d, tmp_path):
    if not PROMETHEUS:
        pytest.skip("prometheus is not installed (make deps installs Debian's prometheus)")
    token = make_token(d, "viewer")
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: paasops
    authorization:
      credentials: {token}
    static_configs:
      - targets: ["127.0.0.1:{d.api_port}"]
""")
    log = open(tmp_path / "prometheus.log", "wb")
    p = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                          f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

    def prom(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    try:
        def scraped():
            t = prom("/api/v1/targets")
            if not t:
                return None
            active = t["data"]["activeTargets"]
            return active if active and active[0]["health"] == "up" else None
        targets = wait_for(scraped, timeout=30, interval=0.3, what="Prometheus to scrape paasops")
        assert targets[0]["lastError"] == ""

        def apps():
            r = prom("/api/v1/query?query=" + urllib.parse.quote("paasops_replicas_ready"))
            return r and {s["metric"].get("app") for s in r["data"]["result"]} >= set(APPS) and r
        wait_for(apps, timeout=15, interval=0.3, what="paasops series in Prometheus")
        q = urllib.parse.quote('sum by (app) (paasops_http_requests_total{code="2xx"})')
        r = prom("/api/v1/query?query=" + q)
        got = {s["metric"]["app"]: float(s["value"][1]) for s in r["data"]["result"]}
        assert got["rate"] >= 150, got
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


# ---- CLI -------------------------------------------------------------------

def test_cli_metrics_summary_and_top_snapshot(d, tmp_path):
    r = d.cli("metrics", "rate", "--since", "2m")
    assert r.returncode == 0, r.stderr
    assert "requests/s" in r.stdout and "p95 latency" in r.stdout
    assert re.search("[▁▂▃▄▅▆▇█]", r.stdout), r.stdout
    r = d.cli("metrics", "rate", "--since", "2m", "--json")
    doc = json.loads(r.stdout)
    assert max(v for v in doc["series"]["requests_per_second"] if v is not None) > 0
    assert d.cli("metrics", "nosuch").returncode == 1
    assert d.cli("metrics", "rate", "--since", "1s").returncode == 2
    r = d.cli("top")  # stdout is a pipe: one plain snapshot
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert re.search(r"^rate\s+running\s+3/3", r.stdout, re.M), r.stdout
    assert "rate.web.1" in r.stdout and "INSTANCE" in r.stdout
    r = d.cli("top", "--once", "--json", "--sort", "rps")
    doc = json.loads(r.stdout)
    assert {a["name"] for a in doc["apps"]} == set(APPS)


def test_cli_export_grafana_uses_only_known_metrics(d, tmp_path):
    out = tmp_path / "dash.json"
    r = d.cli("export", "grafana", "-o", str(out))
    assert r.returncode == 0, r.stderr
    dash = json.loads(out.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    known = set()
    for m in d.ok("GET", "/v1/metrics")["metrics"]:
        known.add(m["name"])
        if m["type"] == "histogram":
            known |= {m["name"] + s for s in ("_bucket", "_sum", "_count")}
    used = {n for e in exprs for n in re.findall(r"\b(paasops_[a-z0-9_]+)", e)}
    assert used and used <= known, used - known
    assert {"paasops_http_requests_total", "paasops_http_request_duration_seconds_bucket",
            "paasops_instance_cpu_usage_ratio", "paasops_host_load1"} <= used


def run_top_in_pty(d, steps):
    """Runs `paasops top` on a pseudo-terminal; for each (text, keys) step,
    types keys once the screen has shown text since the previous step.
    Returns (exit status, everything it wrote, the terminal's lflag after)."""
    env = dict(os.environ, PAASOPS_SERVER=f"unix:{d.sock}", TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(BIN, [BIN, "top"], env)
    out = b""
    seen = 0
    steps = list(steps)
    deadline = time.monotonic() + 20 * SLOW
    status = None
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    pass
            if steps and steps[0][0].encode() in out[seen:]:
                seen = len(out)
                os.write(fd, steps.pop(0)[1])
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
        while select.select([fd], [], [], 0.2)[0]:  # what it wrote last
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        lflag = termios.tcgetattr(fd)[3]
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return status, out, lflag


def test_top_live_sorts_quits_on_q_and_ctrl_c_and_restores_the_terminal(d):
    for steps in ([("INSTANCE", b"m"), ("sort: memory", b"q")], [("INSTANCE", b"\x03")]):
        status, out, lflag = run_top_in_pty(d, steps)
        assert status is not None, f"top did not exit after {steps!r}:\n{out[-2000:]!r}"
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (steps, status)
        assert b"\x1b[?1049h" in out and out.rstrip().endswith(b"\x1b[?1049l"), out[-200:]
        assert b"rate.web.1" in out
        assert lflag & termios.ECHO and lflag & termios.ICANON, "terminal not restored"


# ---- history across restarts (last: it restarts the module's daemon) ---------

def test_history_survives_a_daemon_restart(d):
    params = dict(name="paasops_http_requests_total", fn="raw", start="now-60s", end="now",
                  **{"match[app]": "rate", "match[code]": "2xx"})
    before = query(d, **params)["series"][0]["points"]
    assert len(before) > 20
    assert d.stop() == 0
    assert os.path.getsize(os.path.join(d.data, "metrics.tsdb")) > 0
    d.start(extra=["--metrics-interval", "250ms"])
    after = query(d, **{**params, "start": f"{before[0][0]:.3f}", "end": f"{before[-1][0]:.3f}"})
    assert after["series"][0]["points"] == before
    # New samples continue the same series after the gap.
    wait_for(lambda: query(d, **params)["series"][0]["points"][-1][0] > before[-1][0] + 0.5,
             timeout=10, what="new samples after the restart")


def test_a_destroyed_apps_router_series_go_away(tmp_path):
    dm = Daemon(tmp_path)
    dm.start(extra=["--metrics-interval", "250ms"])
    try:
        for app, host in (("stay", "stay.test"), ("gone", "gone.test")):
            dm.apply(spec(app, host, instances=1))
            dm.wait_ready(app, 2, timeout=20)
            wait_for(lambda: get(dm.http_port, host) == 200, timeout=10, what=f"{host} to be routed")
        wait_for(lambda: 'paasops_http_requests_total{app="gone",process="web",code="2xx"} 1' in scrape(dm)[2].decode(),
                 timeout=10, what="the router series of gone")
        r = dm.cli("destroy", "gone", "--yes")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: 'app="gone"' not in scrape(dm)[2].decode(), timeout=10,
                 what="every series of the destroyed app to go")
        # The other app's series stay and keep counting.
        assert get(dm.http_port, "stay.test") == 200
        wait_for(lambda: 'paasops_http_requests_total{app="stay",process="web",code="2xx"} 2' in scrape(dm)[2].decode(),
                 timeout=10, what="stay's series to count on")
        # Routed again, the app's series come back.
        dm.apply(spec("gone", "gone.test", instances=1))
        dm.wait_ready("gone", 2, timeout=20)
        wait_for(lambda: 'paasops_http_requests_total{app="gone"' in scrape(dm)[2].decode(), timeout=10,
                 what="the series of the app made again")
    finally:
        dm.stop()
