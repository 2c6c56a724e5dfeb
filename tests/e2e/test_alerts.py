"""Alerts end to end: a real Alertmanager (Debian's prometheus-alertmanager,
started here on free ports with a temporary config and storage) receives a
firing and then a resolved alert for an instance that crash-loops and is then
fixed; a webhook receiver in the test checks every HMAC signature; `alerts
test` reaches the receivers; an app spec's rule fires on a load with known
values driven through the router; a failed deploy fires DeployFailed; the
rules file is checked at start-up. One daemon and one Alertmanager serve the
module (evaluation every 250 ms, 1 s flap damping)."""
import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import BIN, HELLO, SLOW, Daemon, free_port, wait_for
from router_helpers import echo_spec, get

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
SECRET = "s3cret-for-tests"
EXTERNAL = "http://paasops.test:7070"

pytestmark = pytest.mark.skipif(not ALERTMANAGER, reason="prometheus-alertmanager is not installed")


class Receiver:
    """An HTTP server that records every POST: /hook (paasops' webhook),
    /slack, /am (Alertmanager's own webhook) answer 200, /fail 500."""

    def __init__(self):
        self.port = free_port()
        self.posts = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(500 if self.path == "/fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path):
        with self.lock:
            return [(h, b) for p, h, b in self.posts if p == path]


def am_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def am_alerts(port, name):
    q = urllib.parse.quote(f'alertname="{name}"')
    return am_get(port, f"/api/v2/alerts?filter={q}")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerts")
    rx = Receiver()
    # Alertmanager: every group notifies at once, resolved alerts too.
    am_port, am_cluster = free_port(), free_port()
    (tmp / "am.yml").write_text(f"""route:
  receiver: test
  group_by: [alertname, instance, app]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {rx.url('/am')}
        send_resolved: true
""")
    am = subprocess.Popen([ALERTMANAGER, f"--config.file={tmp / 'am.yml'}",
                           f"--storage.path={tmp / 'am-data'}",
                           f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address=", "--log.level=warn"],
                          stdout=open(tmp / "am.log", "wb"), stderr=subprocess.STDOUT)

    def am_ready():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{am_port}/-/ready", timeout=1).read()
            return True
        except OSError:
            assert am.poll() is None, (tmp / "am.log").read_text()
            return False
    wait_for(am_ready, timeout=20, what="Alertmanager to be ready")

    (tmp / "secret").write_text(SECRET + "\n")
    (tmp / "rules.yaml").write_text("""
evaluation_interval: 250ms
keep_firing_for: 1s
alertmanager_resend: 2s
builtin:
  no_ready_instance: {for: 1m}
  instance_memory: {enabled: false}
rules:
  - name: DaemonAlive
    metric: paasops_build_info
    op: "<"
    value: 0
""")
    d = Daemon(tmp)
    d.start(extra=["--metrics-interval", "250ms", "--alert-rules", str(tmp / "rules.yaml"),
                   "--alertmanager", f"http://127.0.0.1:{am_port}",
                   "--alert-webhook", rx.url("/hook"), "--alert-slack", rx.url("/slack"),
                   "--alert-webhook", rx.url("/fail"),
                   "--alert-secret-file", str(tmp / "secret"),
                   "--alert-external-url", EXTERNAL])
    yield {"d": d, "rx": rx, "am": am_port, "tmp": tmp}
    if d.proc.poll() is None:
        assert d.stop() == 0, d.read_log()
    am.terminate()
    am.wait(timeout=10)
    rx.server.shutdown()


def alerts(d, name=None):
    got = d.ok("GET", "/v1/alerts")["alerts"]
    return [a for a in got if name is None or a["name"] == name]


def signed_ok(headers, body):
    sig = headers.get("X-Paasops-Signature", "")
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, want)


def hook_alerts(rx, name, status):
    """paasops' webhook deliveries carrying alert name with status."""
    out = []
    for headers, body in rx.bodies("/hook"):
        doc = json.loads(body)
        out += [a for a in doc["alerts"] if a["name"] == name and a["status"] == status]
    return out


def am_notified(rx, name, status):
    """Alertmanager's own webhook notifications about alert name with status."""
    for _, body in rx.bodies("/am"):
        doc = json.loads(body)
        for a in doc["alerts"]:
            if a["labels"].get("alertname") == name and a["status"] == status:
                return a
    return None


def test_crash_loop_fires_then_resolves_in_alertmanager(env):
    d, rx, am = env["d"], env["rx"], env["am"]
    flag = env["tmp"] / "fixed"
    d.apply(f"""app: flappy
processes:
  web:
    command: test -f {flag} && exec {HELLO}
    health: {{http: /healthz, interval: 1s, timeout: 1s}}
    stop_timeout: 2s
""")
    # Five quick exits: crashed, and the built-in rule fires at once.
    d.wait_state("flappy.web.1", "crashed", timeout=20)
    firing = wait_for(lambda: [a for a in alerts(d, "InstanceCrashLooping") if a["state"] == "firing"],
                      timeout=10, what="InstanceCrashLooping to fire")[0]
    assert firing["labels"]["instance"] == "flappy.web.1"
    assert firing["labels"]["app"] == "flappy"
    assert firing["severity"] == "critical"
    assert firing["annotations"]["summary"] == "flappy.web.1 is crash-looping"

    # Alertmanager holds it as active, with what paasops sent.
    got = wait_for(lambda: am_alerts(am, "InstanceCrashLooping"), timeout=10,
                   what="Alertmanager to hold the alert")[0]
    assert got["status"]["state"] == "active"
    assert got["labels"]["instance"] == "flappy.web.1"
    assert got["labels"]["severity"] == "critical"
    assert got["annotations"]["summary"] == "flappy.web.1 is crash-looping"
    assert got["generatorURL"] == EXTERNAL + "/v1/alerts"
    assert wait_for(lambda: am_notified(rx, "InstanceCrashLooping", "firing"), timeout=10,
                    what="Alertmanager to notify the firing alert")

    # The CLI lists it.
    r = d.cli("alerts")
    assert r.returncode == 0, r.stderr
    assert "InstanceCrashLooping" in r.stdout and "firing" in r.stdout and "flappy.web.1" in r.stdout

    # Fixed, restarted: resolved after the damping, and Alertmanager hears of it.
    flag.write_text("")
    r = d.cli("restart", "flappy")
    assert r.returncode == 0, r.stderr
    d.wait_ready("flappy", 1)
    wait_for(lambda: not alerts(d, "InstanceCrashLooping"), timeout=10,
             what="InstanceCrashLooping to resolve")
    wait_for(lambda: not [a for a in am_alerts(am, "InstanceCrashLooping")
                          if a["status"]["state"] == "active"],
             timeout=10, what="Alertmanager to see the alert resolved")
    resolved = wait_for(lambda: am_notified(rx, "InstanceCrashLooping", "resolved"), timeout=10,
                        what="Alertmanager to notify the resolved alert")
    assert resolved["labels"]["instance"] == "flappy.web.1"

    # paasops' own webhook got both, signed; Slack got both lines.
    assert hook_alerts(rx, "InstanceCrashLooping", "firing")
    assert hook_alerts(rx, "InstanceCrashLooping", "resolved")
    for headers, body in rx.bodies("/hook"):
        assert signed_ok(headers, body), headers
        assert headers["X-Paasops-Event"] in ("alert.firing", "alert.resolved", "alert.test")
    texts = "\n".join(json.loads(b)["text"] for _, b in rx.bodies("/slack"))
    assert "[FIRING] InstanceCrashLooping (critical): flappy.web.1 is crash-looping" in texts
    assert "[RESOLVED] InstanceCrashLooping (critical): flappy.web.1 is crash-looping" in texts
    # Slack and Alertmanager are not signed.
    assert all("X-Paasops-Signature" not in h for h, _ in rx.bodies("/slack"))

    hist = d.ok("GET", "/v1/alerts/history?app=flappy")["alerts"]
    assert hist[0]["name"] == "InstanceCrashLooping" and hist[0]["state"] == "resolved"
    r = d.cli("alerts", "history", "flappy")
    assert r.returncode == 0 and "InstanceCrashLooping" in r.stdout, r.stdout + r.stderr


def test_failing_health_check_fires_until_the_instance_is_ready_again(env):
    d, rx = env["d"], env["rx"]
    d.apply(f"""app: sickly
processes:
  web:
    command: {HELLO}
    health: {{http: /healthz, interval: 500ms, timeout: 1s, unhealthy: 1}}
    stop_timeout: 2s
    routes: [{{host: sickly.test}}]
""")
    d.wait_ready("sickly", 1)
    wait_for(lambda: get(d, "/", "sickly.test")[0] == 200, timeout=10, what="sickly to be routed")
    assert get(d, "/sick", "sickly.test")[0] == 200  # /healthz answers 503 from now on
    fired = wait_for(lambda: hook_alerts(rx, "HealthCheckFailing", "firing"), timeout=15,
                     what="HealthCheckFailing to fire")[0]
    assert fired["labels"]["instance"] == "sickly.web.1"
    assert fired["annotations"]["description"].startswith("health check")
    # The restarted process is healthy (a new process is not sick): resolved.
    resolved = wait_for(lambda: hook_alerts(rx, "HealthCheckFailing", "resolved"), timeout=15,
                        what="HealthCheckFailing to resolve")[0]
    assert resolved["labels"]["instance"] == "sickly.web.1"


def test_alerts_test_reaches_each_notifier(env):
    d, rx, am = env["d"], env["rx"], env["am"]
    before = len(rx.bodies("/hook"))
    r = d.cli("alerts", "test", "webhook")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sent a test notification through 'webhook' (HTTP 200)\n"
    headers, body = rx.bodies("/hook")[before]
    assert headers["X-Paasops-Event"] == "alert.test"
    assert signed_ok(headers, body)
    doc = json.loads(body)
    assert doc["test"] is True and doc["alerts"][0]["name"] == "PaasopsTest"

    r = d.cli("alerts", "test", "slack")
    assert r.returncode == 0, r.stderr
    assert "paasops: test notification" in json.loads(rx.bodies("/slack")[-1][1])["text"]

    r = d.cli("alerts", "test", "alertmanager")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: am_alerts(am, "PaasopsTest"), timeout=5, what="Alertmanager to hold the test alert")

    r = d.cli("alerts", "test", "webhook-2")
    assert r.returncode == 1
    assert "notifier 'webhook-2' answered HTTP 500" in r.stderr

    r = d.cli("alerts", "test", "pager")
    assert r.returncode == 1
    assert ("no notifier 'pager' (there are 'alertmanager', 'webhook', 'slack', 'webhook-2')"
            in r.stderr)

    # Notifiers and rules are listed, URLs without paths (Slack's are secrets).
    doc = d.ok("GET", "/v1/alerts")
    names = {n["name"]: n for n in doc["notifiers"]}
    assert set(names) == {"alertmanager", "webhook", "slack", "webhook-2"}
    assert names["slack"]["url"] == f"http://127.0.0.1:{rx.port}"
    assert names["webhook"]["sent"] >= 1
    keys = {r["key"] for r in doc["rules"]}
    assert {"builtin:crash_loop", "builtin:deploy_failed", "config:DaemonAlive"} <= keys
    assert "builtin:instance_memory" not in keys
    r = d.cli("alerts", "--rules")
    assert r.returncode == 0 and "config:DaemonAlive" in r.stdout and "webhook-2" in r.stdout


def test_spec_rule_fires_on_a_known_error_ratio(env):
    d, am = env["d"], env["am"]
    spec = echo_spec("shop", routes="[{host: shop.test}]", extra="""alerts:
  - name: ShopErrors
    metric: http_5xx_ratio
    window: 10s
    op: ">="
    value: 0.25
    severity: critical
    summary: "{{ $labels.app }} {{ $labels.process }}: {{ $percent }} 5xx"
""")
    d.apply(spec)
    d.wait_ready("shop", 1)
    # Every answer counts, those of the warm-up too (the window is 10 s).
    seen = {"total": 0, "5xx": 0}

    def fetch(path):
        status = get(d, path, "shop.test")[0]
        seen["total"] += 1
        seen["5xx"] += status >= 500
        return status
    wait_for(lambda: fetch("/") == 200, timeout=10, what="shop to be routed")
    # 14 answers 200 and 6 answer 500.
    for k in range(20):
        assert fetch("/status/500" if k % 10 < 3 else "/") == (500 if k % 10 < 3 else 200)
    ratio = seen["5xx"] / seen["total"]

    def firing_at_ratio():
        got = [a for a in alerts(d, "ShopErrors") if a["state"] == "firing"]
        return got if got and abs(got[0]["value"] - ratio) < 1e-9 else None
    firing = wait_for(firing_at_ratio, timeout=10, what=f"ShopErrors to fire at {ratio}")[0]
    assert firing["labels"] == {"alertname": "ShopErrors", "app": "shop", "process": "web",
                                "severity": "critical"}
    assert firing["rule"] == "spec:shop:ShopErrors"
    assert firing["annotations"]["summary"] == f"shop web: {ratio * 100:.1f}% 5xx"
    got = wait_for(lambda: am_alerts(am, "ShopErrors"), timeout=10, what="Alertmanager to hold ShopErrors")[0]
    assert got["labels"]["app"] == "shop"
    # Once the load is out of the 10 s window the ratio has no value: resolved.
    wait_for(lambda: not alerts(d, "ShopErrors"), timeout=20, what="ShopErrors to resolve")
    assert d.ok("GET", "/v1/alerts/history?app=shop")["alerts"][0]["name"] == "ShopErrors"


def test_failed_deploy_fires_deploy_failed(env):
    d = env["d"]
    d.apply(f"""app: broken
build: exit 3
processes:
  web:
    command: {HELLO}
""")
    x = wait_for(lambda: [a for a in alerts(d, "DeployFailed") if a["labels"]["app"] == "broken"],
                 timeout=15, what="DeployFailed to fire for broken")[0]
    assert x["state"] == "firing"
    assert x["annotations"]["summary"] == "deploy of broken v1 failed", x


def test_scoped_tokens_see_their_apps_alerts_only(env):
    d = env["d"]
    r = d.cli("tokens", "create", "--role", "viewer", "--app", "shop")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    status, doc = d.request("GET", "/v1/alerts", token=token, tcp=True)
    assert status == 200
    assert all(a["labels"].get("app") == "shop" for a in doc["alerts"])
    assert all(r["app"] == "shop" for r in doc["rules"])
    assert doc["notifiers"] == []
    status, doc = d.request("POST", "/v1/alerts/test", {"notifier": "webhook"}, token=token, tcp=True)
    assert status == 403


def test_bad_rules_file_stops_the_daemon_with_every_problem(tmp_path):
    (tmp_path / "rules.yaml").write_text("""builtin:
  crash_lop: {}
rules:
  - {name: x, metric: paasops_replicas_ready, op: "<", value: one}
evaluation_interval: 10ms
""")
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--http", "off",
                        "--alert-rules", str(tmp_path / "rules.yaml")],
                       capture_output=True, text=True, timeout=10 * SLOW)
    assert r.returncode == 2
    rules = str(tmp_path / "rules.yaml")
    assert (f"paasops serve: {rules}:2:3: unknown key 'crash_lop' in 'builtin' "
            "(did you mean 'crash_loop'?)\n") in r.stderr
    assert f"{rules}:4:63: 'value' in rule 'x' must be a number, found 'one'" in r.stderr
    assert f"{rules}:5:22: 'evaluation_interval' must be at least 100ms, found '10ms'" in r.stderr


@pytest.fixture
def restartable(tmp_path):
    """A daemon of its own (it is restarted) with a webhook receiver:
    evaluation every 250 ms, 1 s flap damping."""
    rx = Receiver()
    (tmp_path / "rules.yaml").write_text("""
evaluation_interval: 250ms
keep_firing_for: 1s
builtin:
  no_ready_instance: {enabled: false}
""")
    flags = ["--alert-rules", str(tmp_path / "rules.yaml"), "--alert-webhook", rx.url("/hook")]
    d = Daemon(tmp_path).start(extra=flags)
    yield d, rx, flags
    if d.proc.poll() is None:
        assert d.stop() == 0, d.read_log()
    rx.server.shutdown()


def evaluated_past_damping(d):
    """Waits until the restarted daemon has evaluated for longer than the
    rules' keep_firing_for (8 evaluations of 250 ms > 1 s), so that an alert
    nothing holds any more would have resolved."""
    wait_for(lambda: d.ok("GET", "/v1/alerts")["evaluations"] >= 8, timeout=10,
             what="8 evaluations after the restart")


def test_daemon_restart_keeps_a_failed_deploy_firing(restartable):
    d, rx, flags = restartable
    d.apply("""app: errapp
processes:
  web:
    command: sh -c 'echo starting; sleep 0.3; exit 3'
""")
    wait_for(lambda: [a for a in alerts(d, "DeployFailed") if a["state"] == "firing"],
             timeout=20, what="DeployFailed to fire")
    assert d.stop() == 0, d.read_log()
    d.start(extra=flags)
    evaluated_past_damping(d)
    firing = [a for a in alerts(d, "DeployFailed") if a["labels"]["app"] == "errapp"]
    assert firing and firing[0]["state"] == "firing", firing
    assert firing[0]["annotations"]["summary"] == "deploy of errapp v1 failed"
    assert not hook_alerts(rx, "DeployFailed", "resolved")
    assert not [a for a in d.ok("GET", "/v1/alerts/history")["alerts"] if a["name"] == "DeployFailed"]
    # A later deploy that succeeds still resolves it.
    d.apply(f"""app: errapp
processes:
  web:
    command: {HELLO}
""")
    wait_for(lambda: hook_alerts(rx, "DeployFailed", "resolved"), timeout=20,
             what="DeployFailed to resolve after a good deploy")


def test_daemon_restart_keeps_a_failing_health_check_firing(restartable):
    d, rx, flags = restartable
    # Never listens, so never passes its check: stopped at the boot deadline
    # and started again.
    d.apply("""app: sickly
processes:
  web:
    command: sleep 600
    health: {http: /healthz, interval: 200ms, timeout: 1s, boot_deadline: 4s}
    stop_timeout: 1s
""")
    wait_for(lambda: [a for a in alerts(d, "HealthCheckFailing") if a["state"] == "firing"],
             timeout=20, what="HealthCheckFailing to fire")
    assert d.stop() == 0, d.read_log()
    # The restarted instance fails its check again, but only after the
    # alert would have resolved without it.
    d.start(extra=flags)
    evaluated_past_damping(d)
    firing = alerts(d, "HealthCheckFailing")
    assert firing and firing[0]["state"] == "firing", firing
    assert firing[0]["labels"]["instance"] == "sickly.web.1"
    assert not hook_alerts(rx, "HealthCheckFailing", "resolved")


def test_rules_that_can_never_fire_stop_the_daemon(tmp_path):
    (tmp_path / "rules.yaml").write_text("""rules:
  - {name: a, expr: paasops_http_request_duration_seconds, op: ">", value: 1}
  - {name: b, expr: "p95(paasops_host_load1[5m])", op: ">", value: 1}
  - {name: c, metric: nonexistent_metric, op: ">", value: 1}
""")
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--http", "off",
                        "--alert-rules", str(tmp_path / "rules.yaml")],
                       capture_output=True, text=True, timeout=10 * SLOW)
    assert r.returncode == 2, r.stderr
    rules = str(tmp_path / "rules.yaml")
    assert r.stderr.splitlines() == [
        f"paasops serve: {rules}:2:21: 'expr' in rule 'a': 'paasops_http_request_duration_seconds' is a histogram: "
        "ask for a quantile of it (p50, p90, p95 or p99), or for the series "
        "paasops_http_request_duration_seconds_count, paasops_http_request_duration_seconds_sum or "
        "paasops_http_request_duration_seconds_bucket",
        f"{rules}:3:21: 'expr' in rule 'b': 'paasops_host_load1' is a gauge: quantiles (p50, p90, "
        "p95, p99) need a histogram, such as paasops_http_request_duration_seconds",
        f"{rules}:4:23: 'metric' in rule 'c': unknown metric 'nonexistent_metric' "
        "(doc/metrics.md lists them)",
    ]
    assert not (tmp_path / "data").exists() or not os.listdir(tmp_path / "data")
