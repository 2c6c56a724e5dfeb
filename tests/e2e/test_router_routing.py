"""Which app gets a request: exact and wildcard hosts, path prefixes (the most
specific wins), the default app, no route, and route changes by re-applying
specs while the daemon runs and connections stay open."""
import json

import pytest

from conftest import wait_for
from router_helpers import (RawReader, assert_alive, echo, echo_spec, get, module_daemon, raw_connect,
                            raw_exchange, stop_daemon, wait_routed)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """One daemon with apps routed by host and path, and no default app."""
    d = module_daemon(tmp_path_factory)
    apps = {  # app: (routes, a host and path it answers)
        "shop": ("[{host: shop.test}]", "shop.test", "/"),
        "wild": ('[{host: "*.example.test"}]', "a.example.test", "/"),
        "deep": ('[{host: "*.api.example.test"}]', "a.api.example.test", "/"),
        "exact": ("[{host: www.example.test}]", "www.example.test", "/"),
        "site": ("[{host: paths.test}]", "paths.test", "/"),
        "api": ("[{host: paths.test, path: /api}]", "paths.test", "/api"),
        "apiv2": ("[{host: paths.test, path: /api/v2}]", "paths.test", "/api/v2"),
        "slash": ("[{host: paths.test, path: /static/}]", "paths.test", "/static/"),
    }
    for app, (routes, _, _) in apps.items():
        d.apply(echo_spec(app, routes=routes))
    for app, (_, host, path) in apps.items():
        d.wait_ready(app, 1)
        wait_for(lambda: wait_routed(d, host, path)["instance"] == f"{app}.web.1", what=f"{app} to be routed")
    yield d
    stop_daemon(d)


@pytest.fixture
def router(hosts):
    yield hosts
    assert_alive(hosts, "shop.test")


def app_of(d, host, path="/"):
    return echo(d, path, host)["instance"].split(".")[0]


def test_exact_host_routes_to_its_app(router):
    doc = echo(router, "/hello?x=1", "shop.test")
    assert doc["instance"] == "shop.web.1"
    assert doc["path"] == "/hello?x=1"


def test_wildcard_matches_subdomains_at_any_depth_but_not_the_bare_domain(router):
    assert app_of(router, "a.example.test") == "wild"
    assert app_of(router, "a.b.example.test") == "wild"
    # Exact beats wildcard; a longer wildcard beats a shorter one.
    assert app_of(router, "www.example.test") == "exact"
    assert app_of(router, "v1.api.example.test") == "deep"
    assert app_of(router, "api.example.test") == "wild"
    for host in ("example.test", "xexample.test", "example.test.evil"):
        status, _, body = get(router, "/", host)
        assert status == 404, (host, body)


def test_longest_path_prefix_wins_and_prefixes_stop_at_segment_boundaries(router):
    expect = {
        "/": "site", "/apix": "site", "/ap": "site", "/api": "api", "/api/": "api",
        "/api?q=1": "api", "/api/v1/users": "api", "/api/v2": "apiv2", "/api/v2/users": "apiv2",
        "/api/v20": "api", "/static/app.js": "slash", "/static": "site", "/staticx": "site",
    }
    got = {path: app_of(router, "paths.test", path) for path in expect}
    assert got == expect


def test_host_header_port_and_case_do_not_change_the_route(router):
    assert app_of(router, "shop.test:8080") == "shop"
    assert app_of(router, "SHOP.Test") == "shop"
    assert app_of(router, "a.EXAMPLE.test:1") == "wild"
    # The fully qualified form, with its trailing dot, is the same host.
    assert app_of(router, "shop.test.") == "shop"
    assert app_of(router, "Shop.Test.:8080") == "shop"
    # An absolute-form target names the host itself.
    r, _ = raw_exchange(router, b"GET http://shop.test/abs?q=1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    assert r.status == 200
    doc = json.loads(r.body)
    assert doc["instance"] == "shop.web.1" and doc["path"] == "/abs?q=1"


def test_no_route_is_404_naming_the_host_with_the_request_id(router):
    status, headers, body = get(router, "/x", "unknown.test:81")
    assert status == 404
    rid = headers["x-request-id"]
    assert b"no route for host 'unknown.test'" in body
    assert f"request id: {rid}".encode() in body
    # The connection stays usable after a 404.
    s = raw_connect(router)
    rd = RawReader(s)
    s.sendall(b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\nGET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    assert rd.read_response().status == 404
    assert rd.read_response().status == 200
    s.close()


def test_more_than_one_host_or_none_in_http11_is_400(router):
    r, rd = raw_exchange(router, b"GET / HTTP/1.1\r\nHost: shop.test\r\nHost: a.example.test\r\n\r\n")
    assert r.status == 400 and b"more than one Host" in r.body
    assert rd.closed()
    r, rd = raw_exchange(router, b"GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n")
    assert r.status == 400 and b"Host" in r.body
    assert rd.closed()


def test_hostless_route_is_the_default_app(daemon):
    daemon.apply(echo_spec("fallback", routes="[{path: /}]"))
    daemon.apply(echo_spec("shop", routes="[{host: shop.test}]"))
    daemon.apply(echo_spec("wild", routes='[{host: "*.example.test", path: /api}]'))
    for app in ("fallback", "shop", "wild"):
        daemon.wait_ready(app, 1)
    wait_routed(daemon, "shop.test")
    wait_routed(daemon, "anything.test")
    assert app_of(daemon, "shop.test") == "shop"
    assert app_of(daemon, "a.example.test", "/api/x") == "wild"
    # Everything else goes to the default app: other hosts, other paths, no Host at all.
    assert app_of(daemon, "a.example.test", "/other") == "fallback"
    assert app_of(daemon, "nobody.test") == "fallback"
    assert app_of(daemon, "127.0.0.1") == "fallback"
    r, _ = raw_exchange(daemon, b"GET /ten HTTP/1.0\r\n\r\n")
    assert r.status == 200 and json.loads(r.body)["instance"] == "fallback.web.1"


def test_reapplied_routes_apply_without_restarts_or_dropped_connections(daemon):
    # A spec change rolls out a new release; min_healthy 0 keeps it short.
    fast = "    deploy: {min_healthy: 0s}\n"
    daemon.apply(echo_spec("shop", routes="[{host: old.test}]", extra=fast))
    daemon.wait_ready("shop", 1)
    wait_routed(daemon, "old.test")
    daemon_pid = daemon.proc.pid
    s = raw_connect(daemon)
    rd = RawReader(s)
    s.sendall(b"GET /before HTTP/1.1\r\nHost: old.test\r\n\r\n")
    assert rd.read_response().status == 200
    peer = s.getsockname()

    daemon.apply(echo_spec("shop", routes="[{host: new.test}, {host: other.test, path: /v2}]", extra=fast))
    wait_routed(daemon, "new.test")
    # The open keep-alive connection sees the new routes.
    s.sendall(b"GET /after HTTP/1.1\r\nHost: new.test\r\n\r\n")
    r = rd.read_response()
    assert r.status == 200 and json.loads(r.body)["path"] == "/after"
    s.sendall(b"GET /v2/x HTTP/1.1\r\nHost: other.test\r\n\r\n")
    assert rd.read_response().status == 200
    s.sendall(b"GET / HTTP/1.1\r\nHost: old.test\r\n\r\n")
    r = rd.read_response()
    assert r.status == 404 and b"old.test" in r.body
    # The rollout that replaces the instance does not drop the client's connection either.
    wait_for(lambda: not daemon.ok("GET", "/v1/apps/shop")["rolling_out"], what="the rollout to finish")
    s.sendall(b"GET /rolled HTTP/1.1\r\nHost: new.test\r\n\r\n")
    r = rd.read_response()
    assert r.status == 200 and json.loads(r.body)["path"] == "/rolled"
    assert s.getsockname() == peer and not rd.closed(timeout=0.2)
    s.close()
    assert daemon.proc.poll() is None and daemon.proc.pid == daemon_pid


def test_a_route_another_app_has_is_refused_with_409_and_changes_nothing(daemon):
    daemon.apply(echo_spec("one", routes="[{host: shared.test, path: /api}]"))
    daemon.apply(echo_spec("two", routes="[{host: two.test}]"))
    daemon.wait_ready("one", 1)
    daemon.wait_ready("two", 1)
    wait_routed(daemon, "shared.test", "/api")
    wait_routed(daemon, "two.test")
    before = daemon.ok("GET", "/v1/apps/two")
    # An update of "two" that takes one's route (and would change its other route).
    spec = echo_spec("two", routes="[{host: two-new.test}, {host: shared.test, path: /api}]")
    status, doc = daemon.request("POST", "/v1/apps", {"spec": spec, "dir": str(daemon.tmp)})
    assert status == 409, doc
    assert doc["error"]["code"] == "conflict"
    assert "shared.test/api" in doc["error"]["message"] and "'one'" in doc["error"]["message"]
    # A new app with the same host and path is refused and not created.
    spec = echo_spec("three", routes="[{host: shared.test, path: /api}]")
    status, doc = daemon.request("POST", "/v1/apps", {"spec": spec, "dir": str(daemon.tmp)})
    assert status == 409, doc
    assert daemon.request("GET", "/v1/apps/three")[0] == 404
    # Nothing changed: the spec, the instance and the routing.
    after = daemon.ok("GET", "/v1/apps/two")
    assert after["spec_yaml"] == before["spec_yaml"]
    assert app_of(daemon, "shared.test", "/api") == "one"
    assert app_of(daemon, "two.test") == "two"
    assert get(daemon, "/", "two-new.test")[0] == 404
    # The same host with another path is no conflict.
    daemon.apply(echo_spec("three", routes="[{host: shared.test, path: /web}]"))
    daemon.wait_ready("three", 1)
    wait_routed(daemon, "shared.test", "/web")
    assert app_of(daemon, "shared.test", "/web") == "three"
