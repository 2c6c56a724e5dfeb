"""The API against bad input: every malformed, mistyped, oversized or
misdirected request gets the documented status and error shape, the daemon
keeps answering, and the stored state (apps, instances, tokens, events) is
exactly what it was before."""
import json
import os
import socket

import pytest

from conftest import SLOW, Daemon, pid_alive, wait_for

SPEC = """app: shop
processes:
  web:
    command: sleep 1000
    instances: 2
    stop_timeout: 5s
  worker:
    command: sleep 1001
    stop_timeout: 5s
"""


def start_shop(d):
    d.apply(SPEC)
    d.wait_ready("shop", 3)
    d.admin_token = d.ok("POST", "/v1/tokens", {"role": "admin"})["token"]
    return d


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One daemon running app 'shop' (web x2, worker x1) for the tests that
    change nothing: each proves that itself with a snapshot."""
    d = Daemon(tmp_path_factory.mktemp("api-input")).start()
    start_shop(d)
    yield d
    pids = [i["pid"] for i in d.instances()]
    assert d.stop() == 0, d.read_log()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="instances to be gone")


@pytest.fixture
def shop(shared):
    yield shared
    assert shared.proc.poll() is None, f"daemon died:\n{shared.read_log()}"


@pytest.fixture
def own_shop(daemon):
    """A daemon of its own, for tests that change the app."""
    return start_shop(daemon)


def snapshot(d):
    """Everything a bad request must leave alone, plus the newest event id."""
    apps = {}
    for a in d.ok("GET", "/v1/apps")["apps"]:
        apps[a["name"]] = d.ok("GET", f"/v1/apps/{a['name']}")
    insts = sorted((i["id"], i["pid"], i["state"], i["restarts"]) for i in d.instances())
    tokens = [{k: v for k, v in t.items() if k != "last_used_at"} for t in d.ok("GET", "/v1/tokens")["tokens"]]
    evs = d.events(limit=1)
    return {"apps": apps, "instances": insts, "tokens": tokens}, (evs[-1]["id"] if evs else 0)


def assert_unchanged(d, before):
    state, last_event = before
    assert d.request("GET", "/healthz") == (200, {"status": "ok"})
    now, _ = snapshot(d)
    assert now == state
    new = d.ok("GET", f"/v1/events?after={last_event}&limit=1000")["events"]
    assert new == [], f"a refused request left events: {new}"


def assert_error(status, doc, want_status, want_code):
    assert status == want_status, f"got {status} {doc}"
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    err = doc["error"]
    assert set(err) - {"details"} == {"code", "message"}, err
    assert err["code"] == want_code, err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    return err


def expect(d, method, path, want_status, want_code, body=None, raw=None, headers=None):
    status, doc = d.request(method, path, body=body, raw=raw, headers=headers)
    return assert_error(status, doc, want_status, want_code)


# ---- raw HTTP over the sockets ----

def connect(d, tcp=False):
    if tcp:
        s = socket.create_connection(("127.0.0.1", d.api_port), timeout=10 * SLOW)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10 * SLOW)
        s.connect(d.sock)
    return s


def read_responses(s, methods, expect_close=False):
    """Reads one HTTP/1.1 response per request method in methods (HEAD
    answers have no body), in order: [(status, headers, body bytes)].
    With expect_close, also requires the server to close afterwards and
    nothing extra to arrive."""
    buf = b""
    out = []

    def fill():
        nonlocal buf
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {len(out)} responses; have {buf[:200]!r}")
        buf += chunk

    for method in methods:
        while b"\r\n\r\n" not in buf:
            fill()
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        proto, status = lines[0].split(" ", 2)[:2]
        assert proto == "HTTP/1.1", lines[0]
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        if method == "HEAD":
            body = b""
        else:
            while len(buf) < n:
                fill()
            body, buf = buf[:n], buf[n:]
        out.append((int(status), hdrs, body))
    if expect_close:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except ConnectionResetError:
            pass
        assert buf == b"", f"unexpected bytes after the last response: {buf[:200]!r}"
    return out


def raw_exchange(d, data, tcp=False):
    """Sends data on a fresh connection; the server must answer once with
    an error and close. Returns (status, parsed body)."""
    with connect(d, tcp) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading as soon as it has seen enough
        [(status, hdrs, body)] = read_responses(s, ["GET"], expect_close=True)
    assert hdrs["content-type"] == "application/json"
    return status, json.loads(body)


def req_bytes(method, path, body=b"", extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}"
    if (body or method == "POST") and "Content-Length" not in extra:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# ---- malformed bodies ----

POST_ENDPOINTS = [
    "/v1/apps",
    "/v1/apps/shop/scale",
    "/v1/apps/shop/restart",
    "/v1/apps/shop/stop",
    "/v1/apps/shop/start",
    "/v1/apps/shop/instances/shop.web.1/restart",
    "/v1/tokens",
]


@pytest.mark.parametrize("raw", [
    '{"spec": "app: x"', '{spec: 1}', "{'a': 1}", '{"a": 1,}', "nul", "{}}", '{"a":1} x', "\x00",
    "[" * 5000 + "]" * 5000,
], ids=["unterminated", "bare-key", "single-quotes", "trailing-comma", "bad-literal",
        "extra-brace", "trailing-garbage", "nul-byte", "deep-nesting"])
def test_malformed_json_is_400_on_every_post_endpoint(shop, raw):
    before = snapshot(shop)
    for path in POST_ENDPOINTS:
        err = expect(shop, "POST", path, 400, "bad_request", raw=raw)
        assert "json" in err["message"].lower(), err
    assert_unchanged(shop, before)


@pytest.mark.parametrize("raw", ["[]", "[1, 2]", '"spec"', "42", "true", "null"])
def test_json_that_is_not_an_object_is_400(shop, raw):
    before = snapshot(shop)
    for path in POST_ENDPOINTS:
        if path.endswith("/instances/shop.web.1/restart"):
            continue  # takes no body
        err = expect(shop, "POST", path, 400, "bad_request", raw=raw)
        assert "object" in err["message"], err
    assert_unchanged(shop, before)


def test_nul_characters_in_json_strings_are_refused(shop, tmp_path):
    """cJSON strings are C strings: "\\u0000" would silently cut a value
    short (an app spec, a dir, a token name), so the body is refused."""
    before = snapshot(shop)
    evil = SPEC.replace("sleep 1000", "sleep 2000") + "\u0000garbage: [\n"
    expect(shop, "POST", "/v1/apps", 400, "bad_request", body={"spec": evil, "dir": str(tmp_path)})
    expect(shop, "POST", "/v1/apps", 400, "bad_request",
           body={"spec": SPEC, "dir": str(tmp_path) + "\u0000/nowhere"})
    expect(shop, "POST", "/v1/tokens", 400, "bad_request", body={"role": "viewer", "name": "ci\u0000x"})
    expect(shop, "POST", "/v1/apps/shop/restart", 400, "bad_request", body={"process": "web\u0000x"})
    assert_unchanged(shop, before)


# ---- wrong types, field by field ----

def test_apply_field_types(shop, tmp_path):
    before = snapshot(shop)
    d = str(tmp_path)
    a_file = tmp_path / "file"
    a_file.write_text("")
    exe = tmp_path / "exe"
    exe.write_text("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    good = SPEC.replace("instances: 2", "instances: 3")  # would change state if accepted
    cases = [
        ({"dir": d}, "'spec'"),
        ({"spec": None, "dir": d}, "'spec'"),
        ({"spec": 42, "dir": d}, "'spec'"),
        ({"spec": ["app: shop"], "dir": d}, "'spec'"),
        ({"spec": {"app": "shop"}, "dir": d}, "'spec'"),
        ({"spec": True, "dir": d}, "'spec'"),
        ({"spec": good, "dir": 5}, "'dir'"),
        ({"spec": good, "dir": [d]}, "'dir'"),
        ({"spec": good, "dir": "relative/dir"}, "absolute"),
        ({"spec": good, "dir": "."}, "absolute"),
        ({"spec": good, "dir": ""}, "'dir'"),
        ({"spec": good, "dir": d + "/does-not-exist"}, "does-not-exist"),
        ({"spec": good, "dir": str(a_file)}, "directory"),
        ({"spec": good, "dir": str(exe)}, "directory"),
        ({"spec": good, "dir": d, "filename": 7}, "'filename'"),
        ({"spec": good, "dir": d, "filename": {"x": 1}}, "'filename'"),
    ]
    for body, needle in cases:
        err = expect(shop, "POST", "/v1/apps", 400, "bad_request", body=body)
        assert needle in err["message"], (body, err)
    assert_unchanged(shop, before)


BAD_COUNTS = [-1, 10001, 1.5, "3", None, True, [3], {"n": 3}, 1e300, -0.5]


def test_scale_field_types(shop):
    before = snapshot(shop)
    for body in [{}, {"processes": None}, {"processes": []}, {"processes": {}}, {"processes": "web=3"},
                 {"processes": 3}, {"processes": [{"web": 3}]}, {"web": 3}]:
        err = expect(shop, "POST", "/v1/apps/shop/scale", 400, "bad_request", body=body)
        assert "'processes'" in err["message"], (body, err)
    for count in BAD_COUNTS:
        err = expect(shop, "POST", "/v1/apps/shop/scale", 400, "bad_request", body={"processes": {"web": count}})
        assert "'web'" in err["message"] and "0 to 10000" in err["message"], (count, err)
        # A bad count anywhere refuses the whole request, good ones included.
        expect(shop, "POST", "/v1/apps/shop/scale", 400, "bad_request",
               body={"processes": {"web": 3, "worker": count}})
    expect(shop, "POST", "/v1/apps/shop/scale", 400, "bad_request", raw="")
    assert_unchanged(shop, before)


def test_scale_bounds_are_inclusive(own_shop):
    """0 and 10000 are the documented edges: 0 is accepted (10000 is proved
    by the refusal of 10001 above without starting 10000 processes)."""
    own_shop.ok("POST", "/v1/apps/shop/scale", {"processes": {"worker": 0}})
    wait_for(lambda: [i["id"] for i in own_shop.instances("shop")] == ["shop.web.1", "shop.web.2"],
             what="worker scaled to 0")


@pytest.mark.parametrize("path", ["/v1/apps/shop/restart", "/v1/apps/shop/stop", "/v1/apps/shop/start"])
def test_process_and_instance_selectors_must_be_strings(shop, path):
    before = snapshot(shop)
    keys = ["process", "instance"] if path.endswith("/restart") else ["process"]
    for key in keys:
        for v in [3, True, ["web"], {"name": "web"}, ""]:
            err = expect(shop, "POST", path, 400, "bad_request", body={key: v})
            assert f"'{key}'" in err["message"], (key, v, err)
    if path.endswith("/restart"):
        err = expect(shop, "POST", path, 400, "bad_request", body={"process": "web", "instance": "shop.web.1"})
        assert "not both" in err["message"]
    assert_unchanged(shop, before)


def test_token_create_field_types(shop):
    before = snapshot(shop)
    cases = [
        ({}, "'role'"),
        ({"role": None}, "'role'"),
        ({"role": "root"}, "'role'"),
        ({"role": "Admin"}, "'role'"),
        ({"role": 1}, "'role'"),
        ({"role": "viewer", "apps": "shop"}, "'apps'"),
        ({"role": "viewer", "apps": {"shop": True}}, "'apps'"),
        ({"role": "viewer", "apps": [1]}, "'apps'"),
        ({"role": "viewer", "apps": ["Shop"]}, "'apps'"),
        ({"role": "viewer", "apps": ["a/b"]}, "'apps'"),
        ({"role": "viewer", "apps": [".."]}, "'apps'"),
        ({"role": "viewer", "expires": 30}, "'expires'"),
        ({"role": "viewer", "expires": "soon"}, "'expires'"),
        ({"role": "viewer", "expires": "-1h"}, "'expires'"),
        ({"role": "viewer", "expires": "0s"}, "'expires'"),
        ({"role": "viewer", "expires": "30"}, "with a unit"),
        ({"role": "viewer", "expires": "0x10h"}, "'expires'"),
        ({"role": "viewer", "expires": "3651d"}, "at most 3650d"),
        ({"role": "viewer", "expires": "99999999d"}, "at most 3650d"),
        ({"role": "viewer", "name": 5}, "'name'"),
        ({"role": "viewer", "name": "x" * 101}, "'name'"),
        ({"role": "viewer", "extra": 1}, "'extra'"),
        ({"role": "viewer", "apps": ["shop", "shop"]}, "'shop' twice"),
        ({"role": "admin", "apps": ["shop"]}, "'apps'"),
    ]
    for body, needle in cases:
        err = expect(shop, "POST", "/v1/tokens", 400, "bad_request", body=body)
        assert needle in err["message"], (body, err)
    assert_unchanged(shop, before)


# ---- size limits ----

def test_body_over_1_mib_is_413_and_exactly_1_mib_is_read(own_shop, tmp_path):
    shop = own_shop
    before = snapshot(shop)
    # A new app with nothing to run: the size limit is the point, not a rollout.
    big = "app: big\nprocesses:\n  web:\n    command: sleep 3000\n    instances: 0\n"
    body = json.dumps({"spec": big, "dir": str(tmp_path)})
    over = body + " " * (1024 * 1024 + 1 - len(body))
    for tcp in (False, True):
        status, doc = raw_exchange(shop, req_bytes("POST", "/v1/apps", over.encode()), tcp=tcp)
        assert "1 MiB" in assert_error(status, doc, 413, "too_large")["message"]
    # Announced but not sent: refused from the headers alone, over both sockets.
    for tcp in (False, True):
        status, doc = raw_exchange(shop, req_bytes("POST", "/v1/apps", extra="Content-Length: 10485760\r\n"
                                                   "Content-Type: application/json\r\n"), tcp=tcp)
        assert_error(status, doc, 413, "too_large")
    # Chunked bodies are counted as they arrive.
    chunk = b"x" * 65536
    data = (b"POST /v1/apps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
            (b"10000\r\n" + chunk + b"\r\n") * 17 + b"0\r\n\r\n")
    status, doc = raw_exchange(shop, data)
    assert_error(status, doc, 413, "too_large")
    assert_unchanged(shop, before)
    # 1 MiB exactly is within the limit: the request is read and applied.
    exact = body + " " * (1024 * 1024 - len(body))
    status, doc = shop.request("POST", "/v1/apps", raw=exact)
    assert status == 201, doc
    assert doc["name"] == "big" and doc["processes"][0]["command"] == "sleep 3000"


@pytest.mark.parametrize("how", ["one-header", "many-headers", "long-url"])
def test_headers_over_64_kib_are_431(shop, how):
    before = snapshot(shop)
    if how == "one-header":
        data = req_bytes("GET", "/v1/apps", extra="X-Big: " + "a" * (65 * 1024) + "\r\n")
    elif how == "many-headers":
        data = req_bytes("GET", "/v1/apps", extra="".join(f"X-H{i}: {'b' * 100}\r\n" for i in range(700)))
    else:
        data = req_bytes("GET", "/v1/apps?q=" + "c" * (65 * 1024))
    for tcp in (False, True):
        status, doc = raw_exchange(shop, data, tcp=tcp)
        assert_error(status, doc, 431, "too_large")
    # Just under the limit is fine.
    status, doc = shop.request("GET", "/v1/apps", headers={"X-Big": "a" * (60 * 1024)})
    assert status == 200 and [a["name"] for a in doc["apps"]] == ["shop"]
    assert_unchanged(shop, before)


@pytest.mark.parametrize("data", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello
    b"hello there\r\n\r\n",
    b"GET /v1/apps HTTP/9.9\r\n\r\n",
    b"GET /v1/apps HTTP/1.1\r\nHost x\r\n\r\n",
    b"POST /v1/apps HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/apps HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
    b"G\x00T / HTTP/1.1\r\n\r\n",
    bytes((i * 7919) % 256 for i in range(4096)),
], ids=["tls", "words", "version", "header-without-colon", "bad-length", "two-lengths",
        "nul-in-method", "noise"])
def test_garbage_that_is_not_http_is_400_and_closed(shop, data):
    before = snapshot(shop)
    for tcp in (False, True):
        status, doc = raw_exchange(shop, data, tcp=tcp)
        assert_error(status, doc, 400, "bad_request")
    assert_unchanged(shop, before)


def test_half_a_request_then_hangup_does_not_hurt(shop):
    before = snapshot(shop)
    for tcp in (False, True):
        with connect(shop, tcp) as s:
            s.sendall(b"POST /v1/apps/shop/scale HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"processes\":")
    assert_unchanged(shop, before)


def test_a_head_that_trickles_in_gets_408_and_a_silent_connection_is_closed(shop):
    before = snapshot(shop)
    head = b"GET /v1/apps HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with connect(shop, tcp=True) as slow, connect(shop, tcp=True) as silent, connect(shop) as local:
        # One byte at a time, each well within the idle timeout: bytes do
        # not extend the head's deadline.
        slow.settimeout(0.5)
        got = b""
        for i in range(len(head)):
            slow.sendall(head[i:i + 1])
            try:
                got = slow.recv(65536)
            except socket.timeout:
                continue
            break
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert b'"request_timeout"' in got, got
        silent.settimeout(30 * SLOW)
        assert silent.recv(100) == b""
        local.settimeout(30 * SLOW)
        assert local.recv(100) == b""
    assert_unchanged(shop, before)


def test_connections_beyond_the_cap_are_closed_and_the_unix_socket_stays_open(daemon):
    d = daemon
    held = []
    try:
        for _ in range(512):
            s = socket.create_connection(("127.0.0.1", d.api_port), timeout=10 * SLOW)
            s.sendall(b"GET /v1/apps HTTP/1.1\r\n")  # half a request, then nothing
            held.append(s)
        extra = socket.create_connection(("127.0.0.1", d.api_port), timeout=10 * SLOW)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert extra.recv(100) == b""
        except ConnectionResetError:
            pass
        extra.close()
        # The local user is not locked out by a TCP flood.
        assert d.request("GET", "/v1/apps")[0] == 200
        r = d.cli("apps")
        assert r.returncode == 0, r.stderr
    finally:
        for s in held:
            s.close()
    # Room again once they are gone.
    wait_for(lambda: d.request("GET", "/healthz", tcp=True)[0] == 200, timeout=10,
             what="the TCP API to take connections again")
    assert "connections are open on the TCP API" in d.read_log()


def test_duplicate_authorization_headers_or_space_before_colon_are_400(shop):
    before = snapshot(shop)
    tok = shop.admin_token
    for extra in [f"Authorization: Bearer {tok}\r\nAuthorization: Bearer {tok}\r\n",
                  f"Authorization: Bearer {tok}\r\nauthorization: Bearer pso_other\r\n",
                  f"Authorization : Bearer {tok}\r\n"]:
        for method, path, body in [("GET", "/v1/apps", b""),
                                   ("POST", "/v1/apps/shop/scale", b'{"processes":{"web":1}}'),
                                   ("POST", "/v1/apps/shop/releases", b"x" * 10)]:
            status, doc = raw_exchange(shop, req_bytes(method, path, body, extra + "Connection: close\r\n"),
                                       tcp=True)
            err = assert_error(status, doc, 400, "bad_request")
            assert "Authorization" in err["message"] or "colon" in err["message"], err
    assert_unchanged(shop, before)


def test_json_bodies_with_a_key_twice_are_400(shop):
    before = snapshot(shop)
    for raw in ['{"processes":{"web":0},"processes":{"web":3}}', '{"processes":{"web":0,"web":3}}',
                '{"processes":[{"a":1,"a":2}]}']:
        err = expect(shop, "POST", "/v1/apps/shop/scale", 400, "bad_request", raw=raw)
        assert "appears twice" in err["message"], err
    err = expect(shop, "POST", "/v1/tokens", 400, "bad_request", raw='{"role":"viewer","role":"admin"}')
    assert "'role'" in err["message"], err
    assert_unchanged(shop, before)


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    return buf


def test_expect_100_continue_is_answered_once_the_body_will_be_read(own_shop):
    shop = own_shop  # a failed upload leaves an event
    # An upload whose caller may deploy: 100, then the body, then the answer.
    with connect(shop) as s:
        s.sendall(req_bytes("POST", "/v1/apps/shop/releases",
                            extra="Content-Length: 10\r\nExpect: 100-continue\r\nConnection: close\r\n"))
        assert read_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"not a tgz!")
        [(status, _, _)] = read_responses(s, ["POST"], expect_close=True)
        assert status == 400, status
    # Refused before the body: no 100 at all.
    with connect(shop, tcp=True) as s:
        s.sendall(req_bytes("POST", "/v1/apps/shop/releases",
                            extra="Content-Length: 10\r\nExpect: 100-continue\r\n"))
        head = read_head(s)
        assert head.startswith(b"HTTP/1.1 401 "), head
    # A JSON body within the limit is read; one over it is refused unread.
    with connect(shop) as s:
        body = b'{"processes":{"web":1},"processes":{"web":2}}'
        s.sendall(req_bytes("POST", "/v1/apps/shop/scale",
                            extra=f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                                  "Expect: 100-continue\r\nConnection: close\r\n"))
        assert read_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        [(status, _, _)] = read_responses(s, ["POST"], expect_close=True)
        assert status == 400
    with connect(shop) as s:
        s.sendall(req_bytes("POST", "/v1/apps/shop/scale",
                            extra="Content-Length: 2000000\r\nExpect: 100-continue\r\n"))
        head = read_head(s)
        assert head.startswith(b"HTTP/1.1 413 "), head
    assert [p["instances"] for p in shop.ok("GET", "/v1/apps/shop")["processes"]] == [2, 1]


# ---- unknown things ----

APP_ENDPOINTS = [
    ("GET", "/v1/apps/nope", None),
    ("DELETE", "/v1/apps/nope", None),
    ("GET", "/v1/apps/nope/instances", None),
    ("GET", "/v1/apps/nope/logs", None),
    ("POST", "/v1/apps/nope/scale", {"processes": {"web": 1}}),
    ("POST", "/v1/apps/nope/restart", None),
    ("POST", "/v1/apps/nope/restart", {"process": "web"}),
    ("POST", "/v1/apps/nope/stop", None),
    ("POST", "/v1/apps/nope/start", {}),
    ("POST", "/v1/apps/nope/instances/nope.web.1/restart", None),
]


def test_unknown_app_is_404_on_every_app_endpoint(shop):
    before = snapshot(shop)
    for method, path, body in APP_ENDPOINTS:
        err = expect(shop, method, path, 404, "not_found", body=body)
        assert "'nope'" in err["message"], (method, path, err)
        # An app is not found by a prefix, a case variant or a trailing space either.
        for other in ("sho", "SHOP", "shop-", "shop%20"):
            expect(shop, method, path.replace("nope", other, 1), 404, "not_found", body=body)
    assert_unchanged(shop, before)


def test_unknown_process_in_scale_is_404_and_nothing_is_scaled(shop):
    before = snapshot(shop)
    err = expect(shop, "POST", "/v1/apps/shop/scale", 404, "not_found", body={"processes": {"web": 3, "nope": 1}})
    assert "'nope'" in err["message"]
    expect(shop, "POST", "/v1/apps/shop/scale", 404, "not_found", body={"processes": {"nope": 1, "worker": 2}})
    expect(shop, "POST", "/v1/apps/shop/scale", 404, "not_found", body={"processes": {"Web": 1}})
    assert_unchanged(shop, before)
    assert [p["instances"] for p in shop.ok("GET", "/v1/apps/shop")["processes"]] == [2, 1]


def test_unknown_process_or_instance_in_restart_stop_start_is_404(shop):
    before = snapshot(shop)
    for path, body in [
        ("/v1/apps/shop/restart", {"process": "nope"}),
        ("/v1/apps/shop/restart", {"instance": "shop.web.9"}),
        ("/v1/apps/shop/restart", {"instance": "shop.nope.1"}),
        ("/v1/apps/shop/stop", {"process": "nope"}),
        ("/v1/apps/shop/start", {"process": "nope"}),
        ("/v1/apps/shop/instances/shop.web.3/restart", None),
        ("/v1/apps/shop/instances/shop.web.0/restart", None),
        ("/v1/apps/shop/instances/web.1/restart", None),
        ("/v1/apps/shop/instances/other.web.1/restart", None),
    ]:
        expect(shop, "POST", path, 404, "not_found", body=body)
    expect(shop, "DELETE", "/v1/tokens/tok_000000000000", 404, "not_found")
    assert_unchanged(shop, before)


def test_unknown_path_is_404(shop):
    before = snapshot(shop)
    for method, path in [("GET", "/"), ("GET", "/v1"), ("GET", "/v1/nope"), ("GET", "/v2/apps"),
                         ("GET", "/V1/apps"), ("GET", "/v1/apps/shop/nope"), ("POST", "/v1/apps/shop/scale/now"),
                         ("GET", "/v1/apps/shop/instances/shop.web.1"), ("GET", "/v1//apps"),
                         ("GET", "/healthz/x"), ("GET", "/v1/apps/shop/instances/shop.web.1/restart/x")]:
        err = expect(shop, method, path, 404, "not_found")
        assert "no such endpoint" in err["message"], (path, err)
    for path in ["/v1/apps/shop%00/instances", "/v1/apps/%zz", "/v1/apps/shop/../tokens"]:
        expect(shop, "GET", path, 400, "bad_request")
    assert_unchanged(shop, before)


def test_wrong_method_is_405(shop):
    before = snapshot(shop)
    for method, path in [("PUT", "/v1/apps"), ("DELETE", "/v1/apps"), ("PATCH", "/v1/apps/shop"),
                         ("POST", "/v1/apps/shop"), ("GET", "/v1/apps/shop/scale"), ("PUT", "/v1/apps/shop/scale"),
                         ("GET", "/v1/apps/shop/restart"), ("DELETE", "/v1/apps/shop/stop"),
                         ("GET", "/v1/apps/shop/instances/shop.web.1/restart"), ("POST", "/v1/instances"),
                         ("DELETE", "/v1/events"), ("POST", "/healthz"), ("PUT", "/v1/tokens"),
                         ("GET", "/v1/tokens/tok_1"), ("POST", "/v1/version")]:
        err = expect(shop, method, path, 405, "method_not_allowed")
        assert method in err["message"], err
    assert_unchanged(shop, before)


@pytest.mark.parametrize("path,allowed", [
    ("/v1/apps", {"GET", "HEAD", "POST", "OPTIONS"}),
    ("/v1/apps/shop", {"GET", "HEAD", "DELETE", "OPTIONS"}),
    ("/v1/apps/shop/scale", {"POST", "OPTIONS"}),
    ("/v1/tokens/tok_1", {"DELETE", "OPTIONS"}),
    ("/healthz", {"GET", "HEAD", "OPTIONS"}),
])
def test_405_and_options_name_the_allowed_methods(shop, path, allowed):
    before = snapshot(shop)
    for method in ["PUT", "OPTIONS"]:
        with connect(shop, tcp=True) as s:
            s.sendall(req_bytes(method, path, extra="Connection: close\r\n"))
            [(status, hdrs, body)] = read_responses(s, [method], expect_close=True)
        assert status == (200 if method == "OPTIONS" else 405), (method, status, body)
        assert "allow" in hdrs, hdrs
        assert {m.strip() for m in hdrs["allow"].split(",")} == allowed, hdrs["allow"]
    assert_unchanged(shop, before)


@pytest.mark.parametrize("path,body", [
    ("/v1/apps/shop/maintenance", {"enabled": True, "extra": 1}),
    ("/v1/apps/shop/maintenance", {"enabled": "yes"}),
    ("/v1/backup", {"extra": True}),
    ("/v1/backup", {"logs": "yes"}),
    ("/v1/apps/shop/run", {"command": "true", "extra": 1}),
    ("/v1/apps/shop/run", {"command": ""}),
    ("/v1/apps/shop/run", {"command": "true", "tty": "big"}),
])
def test_refused_fields_use_the_documented_bad_request_code(shop, path, body):
    before = snapshot(shop)
    expect(shop, "POST", path, 400, "bad_request", body=body)
    assert_unchanged(shop, before)


@pytest.mark.parametrize("path", [
    "/v1/events?limit=-1", "/v1/events?limit=0", "/v1/events?limit=1001", "/v1/events?limit=abc",
    "/v1/events?limit=", "/v1/events?limit", "/v1/events?limit=1.5", "/v1/events?limit=99999999999999999999",
    "/v1/events?after=-1", "/v1/events?after=x", "/v1/events?limit=%zz",
    "/v1/apps/shop/logs?lines=abc", "/v1/apps/shop/logs?lines=-1", "/v1/apps/shop/logs?lines=0",
    "/v1/apps/shop/logs?lines=10001", "/v1/apps/shop/logs?lines=2e3", "/v1/apps/shop/logs?after=-5",
    "/v1/apps/shop/logs?after=0x10",
])
def test_bad_query_parameters_are_400(shop, path):
    before = snapshot(shop)
    name = path.split("?")[1].split("=")[0]
    err = expect(shop, "GET", path, 400, "bad_request")
    assert f"'{name}'" in err["message"], err
    assert_unchanged(shop, before)


def test_query_parameter_edges_are_accepted(shop):
    assert len(shop.ok("GET", "/v1/events?limit=1")["events"]) == 1
    shop.ok("GET", "/v1/events?limit=1000&after=0")
    shop.ok("GET", "/v1/apps/shop/logs?lines=1")
    shop.ok("GET", "/v1/apps/shop/logs?lines=10000&after=0")


# ---- connections ----

def test_pipelined_keepalive_requests_are_answered_in_order(shop):
    before = snapshot(shop)
    for tcp in (False, True):
        auth = f"Authorization: Bearer {shop.admin_token}\r\n" if tcp else ""
        reqs = [
            ("GET", req_bytes("GET", "/v1/version", extra=auth)),
            ("GET", req_bytes("GET", "/v1/apps/nope", extra=auth)),
            ("POST", req_bytes("POST", "/v1/apps/shop/scale", b'{"processes":{"web":3,"nope":1}}', extra=auth)),
            ("POST", req_bytes("POST", "/v1/apps/shop/scale", b'{"processes":', extra=auth)),
            ("HEAD", req_bytes("HEAD", "/healthz")),
            ("GET", req_bytes("GET", "/v1/apps/shop/instances", extra=auth)),
            ("PUT", req_bytes("PUT", "/v1/apps", extra=auth)),
            ("GET", req_bytes("GET", "/healthz", extra="Connection: close\r\n")),
        ]
        with connect(shop, tcp) as s:
            s.sendall(b"".join(r for _, r in reqs[:3]))
            # The rest one byte at a time: message boundaries never line up with reads.
            for b in b"".join(r for _, r in reqs[3:]):
                s.sendall(bytes([b]))
            got = read_responses(s, [m for m, _ in reqs], expect_close=True)
        statuses = [g[0] for g in got]
        assert statuses == [200, 404, 404, 400, 200, 200, 405, 200], statuses
        assert json.loads(got[0][2]) == {"version": shop.ok("GET", "/v1/version")["version"]}
        assert "'nope'" in json.loads(got[1][2])["error"]["message"]
        assert int(got[4][1]["content-length"]) > 0 and got[4][2] == b""
        assert sorted(i["id"] for i in json.loads(got[5][2])["instances"]) == \
            ["shop.web.1", "shop.web.2", "shop.worker.1"]
        assert json.loads(got[7][2]) == {"status": "ok"}
        assert got[7][1].get("connection") == "close"
    assert_unchanged(shop, before)


def test_many_requests_on_one_connection(shop):
    with connect(shop) as s:
        s.sendall(req_bytes("GET", "/healthz") * 200)
        got = read_responses(s, ["GET"] * 200)
    assert all(g[0] == 200 and json.loads(g[2]) == {"status": "ok"} for g in got)
