"""Maintenance mode: `paasops maintenance APP on|off` has the router answer
the app's requests with 503 and Retry-After while its instances keep
running; it survives deploys and daemon restarts, and other apps are not
touched."""
from conftest import HELLO, wait_for
from router_helpers import get


def spec(app, host, greeting="hi"):
    return f"""app: {app}
env: {{GREETING: {greeting}}}
processes:
  web:
    command: {HELLO}
    instances: 1
    health: {{http: /healthz, interval: 1s, timeout: 1s}}
    stop_timeout: 2s
    deploy: {{min_healthy: 0s}}
    routes: [{{host: {host}}}]
"""


def serving(d, host):
    return wait_for(lambda: get(d, "/", host)[0] == 200 or None, what=f"{host} to be served")


def test_maintenance_answers_503_keeps_instances_and_survives_restarts(daemon):
    daemon.apply(spec("shop", "shop.test"))
    daemon.apply(spec("blog", "blog.test"))
    daemon.wait_ready("shop", 1)
    daemon.wait_ready("blog", 1)
    serving(daemon, "shop.test")
    pid = daemon.instances("shop")[0]["pid"]
    r = daemon.cli("maintenance", "shop", "on")
    assert r.returncode == 0 and "is in maintenance" in r.stdout, r.stderr
    status, headers, body = get(daemon, "/anything", "shop.test")
    assert status == 503
    assert headers["retry-after"] == "120"
    assert body.startswith(b"503 app 'shop' is down for maintenance\nrequest id: ")
    assert get(daemon, "/", "shop.test", method="HEAD")[0] == 503
    assert get(daemon, "/", "blog.test")[0] == 200          # another app is not touched
    assert daemon.instances("shop")[0]["pid"] == pid        # nothing was stopped
    assert daemon.ok("GET", "/v1/apps/shop")["maintenance"] is True
    assert "maintenance" in [l.split()[-1] for l in daemon.cli("apps").stdout.splitlines()
                             if l.startswith("shop ")]
    # One-off runs still work: the point is to migrate with no request in flight.
    r = daemon.cli("run", "shop", "echo $GREETING")
    assert (r.returncode, r.stdout) == (0, "hi\n")
    # A deploy keeps it; so does a daemon restart.
    daemon.apply(spec("shop", "shop.test", greeting="hello"))
    wait_for(lambda: daemon.ok("GET", "/v1/apps/shop")["release"] == 2, what="v2 to be live")
    assert get(daemon, "/", "shop.test")[0] == 503
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_ready("shop", 1)
    assert daemon.cli("maintenance", "shop").stdout == "app 'shop' is in maintenance: the router answers 503\n"
    wait_for(lambda: get(daemon, "/", "blog.test")[0] == 200, what="the router to serve blog again")
    assert get(daemon, "/", "shop.test")[0] == 503
    r = daemon.cli("maintenance", "shop", "off")
    assert r.returncode == 0 and "is not in maintenance" in r.stdout
    status, _, body = serving(daemon, "shop.test") and get(daemon, "/", "shop.test")
    assert status == 200 and b"hello" in body
    reasons = [e["reason"] for e in daemon.events("shop") if e["type"] == "maintenance"]
    assert len(reasons) == 2 and reasons[0].startswith("maintenance on") and reasons[1].startswith("maintenance off")


def test_bad_maintenance_requests_change_nothing(daemon):
    daemon.apply(spec("shop", "shop.test"))
    daemon.wait_ready("shop", 1)
    r = daemon.cli("maintenance", "shop", "maybe")
    assert r.returncode == 2 and "expected on or off" in r.stderr
    r = daemon.cli("maintenance", "nope", "on")
    assert r.returncode == 1 and "app 'nope' not found" in r.stderr
    for body, want in [({}, "'enabled' must be true or false"),
                       ({"enabled": "yes"}, "'enabled' must be true or false"),
                       ({"enabled": True, "page": "x"}, "unknown field 'page'")]:
        status, doc = daemon.request("POST", "/v1/apps/shop/maintenance", body)
        assert status == 400 and want in doc["error"]["message"], doc
    status, viewer = daemon.request("POST", "/v1/tokens", {"role": "viewer"})
    status, doc = daemon.request("POST", "/v1/apps/shop/maintenance", {"enabled": True}, tcp=True,
                                 token=viewer["token"])
    assert status == 403
    assert daemon.ok("GET", "/v1/apps/shop")["maintenance"] is False
    serving(daemon, "shop.test")
    # Setting it as it is: no event.
    daemon.ok("POST", "/v1/apps/shop/maintenance", {"enabled": False})
    assert not [e for e in daemon.events("shop") if e["type"] == "maintenance"]
