"""The router speaks HTTP/1.1 correctly: keep-alive and pipelining, chunked
bodies both ways, 100-continue, HTTP/1.0 clients, HEAD, bodiless statuses,
large streamed bodies, WebSocket tunnels, hop-by-hop and forwarding headers,
request ids, and every smuggling and limit case answered with the right
status and no harm to the daemon. The backend is tests/e2e/backends/echo_server.py."""
import base64
import hashlib
import json
import re
import select
import socket
import struct
import threading
import time

import pytest

from conftest import Daemon, SLOW, wait_for
from router_helpers import (RawReader, assert_alive, echo, echo_spec, get, header_values,
                            module_daemon, pattern_bytes, raw_connect, raw_exchange, reset_vm_hwm,
                            router_log_lines, stop_daemon, vm_hwm_kib, wait_routed)

HOST = "shop.test"
H = f"Host: {HOST}\r\n".encode()
RID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    d = module_daemon(tmp_path_factory)
    d.apply(echo_spec("echo", instances=1,
                      routes=f"[{{host: {HOST}}}, {{host: small.test, max_body: 1K}}]"))
    d.apply(echo_spec("empty", instances=0, routes="[{host: empty.test}]"))
    d.apply(echo_spec("pair", instances=2, routes="[{host: pair.test}]"))
    # Ready by its check, yet nothing listens: every connection is refused.
    d.apply("""app: deaf
processes:
  web:
    command: sleep 1000
    health: {cmd: "true", interval: 1s}
    routes: [{host: deaf.test}]
""")
    d.wait_ready("echo", 1)
    d.wait_ready("pair", 2)
    d.wait_ready("deaf", 1)
    wait_routed(d, HOST)
    yield d
    stop_daemon(d)


@pytest.fixture
def router(shared):
    """The shared daemon; after each test it must still be alive and routing."""
    yield shared
    assert_alive(shared, HOST)


def backend_saw(d, needle, app="echo"):
    lines = d.ok("GET", f"/v1/apps/{app}/logs?lines=10000")["lines"]
    return [l["line"] for l in lines if l["stream"] == "stdout" and needle in l["line"]]


# ---------------------------------------------------------------- keep-alive

def test_keepalive_serves_several_requests_on_one_connection(router):
    s = raw_connect(router)
    rd = RawReader(s)
    for k in range(5):
        s.sendall(f"GET /ka/{k} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        r = rd.read_response()
        assert r.status == 200
        assert json.loads(r.body)["path"] == f"/ka/{k}"
        assert (r.header("Connection") or "").lower() != "close"
    assert not rd.closed(timeout=0.3)
    # A client that says close gets its answer, then the close.
    s.sendall(f"GET /bye HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    r = rd.read_response()
    assert r.status == 200 and r.header("Connection").lower() == "close"
    assert rd.closed()
    s.close()


def test_pipelined_requests_answer_in_order(router):
    s = raw_connect(router)
    rd = RawReader(s)
    # The first is the slowest: answers must still come back in request order.
    s.sendall(b"GET /slow?ms=300 HTTP/1.1\r\n" + H + b"\r\n"
              b"POST /p2 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"
              b"GET /p3 HTTP/1.1\r\n" + H + b"\r\n")
    got = []
    for _ in range(3):
        r = rd.read_response()
        assert r.status == 200
        doc = json.loads(r.body)
        got.append((doc["path"], doc["body"]))
    assert got == [("/slow?ms=300", ""), ("/p2", "abc"), ("/p3", "")]
    # A burst of many in one write.
    s.sendall(b"".join(b"GET /burst/%d HTTP/1.1\r\n" % k + H + b"\r\n" for k in range(100)))
    paths = [json.loads(rd.read_response().body)["path"] for _ in range(100)]
    assert paths == [f"/burst/{k}" for k in range(100)]
    s.close()


# ---------------------------------------------------------------- chunked

def test_chunked_request_body_reaches_the_backend_whole_and_trailers_are_dropped(router):
    s = raw_connect(router)
    rd = RawReader(s)
    s.sendall(b"POST /chunky HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n")
    time.sleep(0.05)  # a body that arrives in pieces
    s.sendall(b"1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: evil\r\nContent-Length: 1\r\n\r\n")
    r = rd.read_response()
    assert r.status == 200
    doc = json.loads(r.body)
    assert doc["body"] == "hello world!"
    assert doc["chunked"] is True
    assert doc["trailers"] == []
    assert not header_values(doc, "X-Trailer")
    # The connection is still in sync for the next request.
    s.sendall(b"GET /after-trailers HTTP/1.1\r\n" + H + b"\r\n")
    r = rd.read_response()
    assert r.status == 200 and json.loads(r.body)["path"] == "/after-trailers"
    s.close()


def test_chunked_response_passes_through_without_trailers(router):
    s = raw_connect(router)
    rd = RawReader(s)
    s.sendall(b"GET /chunked?n=40&size=1000 HTTP/1.1\r\n" + H + b"\r\n")
    r = rd.read_response()
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.header("Content-Length") is None
    assert r.body == pattern_bytes(1000) * 40
    assert r.trailers == [] and r.header("Trailer") is None
    s.sendall(b"GET /next HTTP/1.1\r\n" + H + b"\r\n")
    assert json.loads(rd.read_response().body)["path"] == "/next"
    s.close()


# ---------------------------------------------------------------- versions and methods

def test_http10_client_gets_a_length_or_a_close(router):
    # A length-delimited answer: HTTP/1.0, Content-Length, then close.
    r, rd = raw_exchange(router, b"GET /ten HTTP/1.0\r\n" + H + b"\r\n")
    assert r.version == "HTTP/1.0" and r.status == 200
    assert int(r.header("Content-Length")) == len(r.body)
    assert json.loads(r.body)["path"] == "/ten"
    assert rd.closed()
    # A chunked backend answer cannot be chunked to a 1.0 client: close-delimited.
    r, rd = raw_exchange(router, b"GET /chunked?n=3&size=7 HTTP/1.0\r\n" + H + b"\r\n")
    assert r.status == 200 and r.header("Transfer-Encoding") is None
    assert r.body == pattern_bytes(7) * 3
    assert rd.eof or rd.closed()
    # An HTTP/1.0 keep-alive client keeps its connection.
    s = raw_connect(router)
    rd = RawReader(s)
    for k in range(2):
        s.sendall(f"GET /ten/{k} HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n".encode())
        r = rd.read_response()
        assert r.status == 200 and r.header("Connection").lower() == "keep-alive"
        assert json.loads(r.body)["path"] == f"/ten/{k}"
    s.close()


def test_head_keeps_content_length_and_sends_no_body(router):
    s = raw_connect(router)
    rd = RawReader(s)
    s.sendall(b"HEAD /bytes?n=12345 HTTP/1.1\r\n" + H + b"\r\n")
    r = rd.read_response(head_request=True)
    assert r.status == 200 and r.header("Content-Length") == "12345"
    # No body bytes follow: the next answer starts right away.
    s.sendall(b"GET /after-head HTTP/1.1\r\n" + H + b"\r\n")
    r = rd.read_response()
    assert json.loads(r.body)["path"] == "/after-head"
    s.close()


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_have_no_body(router, status):
    s = raw_connect(router)
    rd = RawReader(s)
    s.sendall(f"GET /status/{status} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    r = rd.read_response()
    assert r.status == status
    assert r.header("Transfer-Encoding") is None
    if status == 204:
        assert r.header("Content-Length") is None
    s.sendall(b"GET /after HTTP/1.1\r\n" + H + b"\r\n")
    r = rd.read_response()
    assert r.status == 200 and json.loads(r.body)["path"] == "/after"
    s.close()


def test_expect_100_continue_is_relayed_before_the_body(router):
    s = raw_connect(router)
    rd = RawReader(s)
    s.sendall(b"PUT /upload HTTP/1.1\r\n" + H + b"Content-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    version, status, _, _ = rd.read_head()  # times out if the 100 never comes
    assert status == 100
    s.sendall(b"hello there")
    r = rd.read_response()
    assert r.status == 200
    doc = json.loads(r.body)
    assert doc["body"] == "hello there" and doc["expect_continue"] is True
    s.close()


# ---------------------------------------------------------------- large bodies

def test_large_bodies_stream_both_ways_with_bounded_memory(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        d.apply(echo_spec("big", routes=f"[{{host: {HOST}}}]"))
        d.wait_ready("big", 1)
        wait_routed(d, HOST)
        size = 24 * 1024 * 1024
        body = pattern_bytes(size)
        reset_vm_hwm(d.proc.pid)
        base = vm_hwm_kib(d.proc.pid)
        # Up: the backend hashes what it reads.
        doc = echo(d, "/up", HOST, method="POST", body=body, timeout=60)
        assert doc["body_len"] == size
        assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
        # Down: a client that waits before reading must not make the router buffer it all.
        s = raw_connect(d, timeout=60)
        s.sendall(f"GET /bytes?n={size} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        time.sleep(1.0)
        rd = RawReader(s)
        r = rd.read_response()
        s.close()
        assert r.status == 200 and len(r.body) == size and r.body == body
        grown = vm_hwm_kib(d.proc.pid) - base
        # AddressSanitizer quarantines freed buffers, so RSS says nothing there.
        with open(f"/proc/{d.proc.pid}/maps") as f:
            asan = "libasan" in f.read()
        assert asan or grown < 8 * 1024, f"the daemon's peak RSS grew by {grown} KiB moving {size >> 20} MiB each way"
    finally:
        stop_daemon(d)


def test_clients_resetting_mid_response_leave_the_router_serving(tmp_path):
    """Clients that reset their connection while their answers stream in
    make the router's writes fail at any point of a response, also when the
    response has just completed: the router must end those requests once.
    (Its own daemon: the burst of requests would crowd the shared backend's log.)"""
    d = Daemon(tmp_path).start()
    try:
        d.apply(echo_spec("resets", routes=f"[{{host: {HOST}}}]"))
        d.wait_ready("resets", 1)
        wait_routed(d, HOST)
        stop = time.monotonic() + 3

        def hammer(n):
            while time.monotonic() < stop and d.proc.poll() is None:
                try:
                    s = raw_connect(d, timeout=5)
                    s.sendall(f"GET /bytes?n={n} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                    s.recv(1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass  # the daemon's survival is what is checked

        threads = [threading.Thread(target=hammer, args=(n,))
                   for n in (4096, 65536, 200000, 1 << 20) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30 * SLOW)
        assert_alive(d, HOST)
    finally:
        stop_daemon(d)


# ---------------------------------------------------------------- headers

def test_hop_by_hop_headers_are_removed_both_ways(router):
    r, _ = raw_exchange(router, b"GET /hop-req HTTP/1.1\r\n" + H +
                        b"Connection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                        b"Upgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-Secret: 42\r\nX-Public: 7\r\n\r\n")
    doc = json.loads(r.body)
    names = {k.lower() for k, _ in doc["headers"]}
    for hop in ("connection", "keep-alive", "te", "upgrade", "proxy-connection", "x-secret"):
        assert hop not in names, f"{hop} reached the backend"
    assert header_values(doc, "X-Public") == ["7"]
    # A name listed on a second Connection line is just as hop-by-hop.
    r, _ = raw_exchange(router, b"GET /hop-req2 HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\n"
                        b"X-Other: 1\r\nConnection: X-Other\r\nX-Public: 8\r\n\r\n")
    doc = json.loads(r.body)
    names = {k.lower() for k, _ in doc["headers"]}
    assert "x-other" not in names and "connection" not in names
    assert header_values(doc, "X-Public") == ["8"]
    # "Connection: close" names a header called Close too.
    r, _ = raw_exchange(router, b"GET /hop-req3 HTTP/1.1\r\n" + H + b"Connection: close\r\n"
                        b"Close: x\r\nX-Public: 9\r\n\r\n")
    doc = json.loads(r.body)
    assert "close" not in {k.lower() for k, _ in doc["headers"]}
    assert header_values(doc, "X-Public") == ["9"]
    # And from the backend to the client.
    r, _ = raw_exchange(router, b"GET /hop HTTP/1.1\r\n" + H + b"\r\n")
    assert r.status == 200 and r.body == b"hop\n"
    names = {k.lower() for k, _ in r.headers}
    assert "x-resp-secret" not in names and "keep-alive" not in names and "proxy-connection" not in names
    assert r.header("X-Kept") == "yes"


def test_connection_cannot_strip_the_framing_or_host_of_a_request(router):
    # Were Content-Length dropped as "listed in Connection", the backend would
    # read the body as a second request with forwarding headers of the
    # client's choosing.
    marker = f"/smuggled-{time.monotonic_ns()}"
    inner = f"GET {marker} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n".encode()
    r, _ = raw_exchange(router, b"POST /framed HTTP/1.1\r\n" + H +
                        b"Connection: content-length, host\r\nContent-Length: %d\r\n\r\n" % len(inner) +
                        inner)
    assert r.status == 200
    doc = json.loads(r.body)
    assert doc["path"] == "/framed" and doc["body"] == inner.decode()
    assert header_values(doc, "Content-Length") == [str(len(inner))]
    assert header_values(doc, "Host") == [HOST]
    after = f"/after-{time.monotonic_ns()}"
    assert get(router, after, HOST)[0] == 200
    wait_for(lambda: backend_saw(router, after), what="the request after it in the backend's log")
    assert not backend_saw(router, marker), "the body reached the backend as a request"


def test_pipelined_requests_beyond_the_pending_limit_are_all_answered(router):
    # Over 1 MiB of pipelined requests behind a slow one: the router stops
    # reading at its limit and must read on once it has worked through them.
    pad = b"X-Pad: " + b"p" * 1000 + b"\r\n"
    n = 1500
    s = raw_connect(router, timeout=20)
    rd = RawReader(s)
    reqs = [b"GET /slow?ms=300 HTTP/1.1\r\n" + H + b"\r\n"]
    reqs += [b"GET /many/%d HTTP/1.1\r\n" % k + H + pad + b"\r\n" for k in range(n)]
    sender = threading.Thread(target=s.sendall, args=(b"".join(reqs),), daemon=True)
    sender.start()
    assert json.loads(rd.read_response().body)["path"] == "/slow?ms=300"
    paths = [json.loads(rd.read_response().body)["path"] for _ in range(n)]
    assert paths == [f"/many/{k}" for k in range(n)]
    sender.join(10)
    s.close()


def test_forwarding_headers_and_request_ids_are_added(router):
    doc = echo(router, "/fwd", f"{HOST}:8080", headers={"X-Forwarded-For": "203.0.113.9",
                                                        "X-Forwarded-Proto": "https",
                                                        "X-Forwarded-Host": "evil.test"})
    assert header_values(doc, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert header_values(doc, "X-Forwarded-Proto") == ["http"]
    assert header_values(doc, "X-Forwarded-Host") == [f"{HOST}:8080"]
    generated = header_values(doc, "X-Request-Id")
    assert len(generated) == 1 and RID.match(generated[0])
    assert header_values(echo(router, "/fwd2", HOST), "X-Forwarded-For") == ["127.0.0.1"]
    # Several X-Forwarded-For lines are one list: none is lost.
    r, _ = raw_exchange(router, b"GET /fwd3 HTTP/1.1\r\n" + H + b"X-Forwarded-For: 198.51.100.1\r\n"
                        b"X-Forwarded-For: 198.51.100.2, 198.51.100.3\r\n\r\n")
    assert header_values(json.loads(r.body), "X-Forwarded-For") == \
        ["198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1"]
    # A sane incoming id is kept, end to end.
    status, headers, body = get(router, "/rid", HOST, headers={"X-Request-Id": "abc-123_x.y:z"})
    assert header_values(json.loads(body), "X-Request-Id") == ["abc-123_x.y:z"]
    assert headers["x-request-id"] == "abc-123_x.y:z"
    # An insane one is replaced.
    for bad in ("has space", "x" * 300, "<script>"):
        status, headers, body = get(router, "/rid-bad", HOST, headers={"X-Request-Id": bad})
        ids = header_values(json.loads(body), "X-Request-Id")
        assert len(ids) == 1 and RID.match(ids[0]), ids
        assert headers["x-request-id"] == ids[0]
    # The id travels to the access log, with the rest of the request.
    status, headers, _ = get(router, "/logged?q=1", HOST, headers={"X-Request-Id": "trace-me-42"})
    line = wait_for(lambda: [l for l in router_log_lines(router, "echo") if "request_id=trace-me-42" in l],
                    what="access log line")[0]
    for part in ("method=GET", f"host={HOST}", 'path="/logged?q=1"', "status=200", "instance=echo.web.1",
                 "client=127.0.0.1", "duration_ms="):
        assert part in line, line
    assert re.search(r"^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z request_id=", line), line
    assert re.search(r" bytes=\d+ duration_ms=\d+\.\d{3} instance=", line), line


def test_error_pages_carry_the_request_id(router):
    # No route: 404 names the host; the id is in the header and the body.
    r, _ = raw_exchange(router, b"GET / HTTP/1.1\r\nHost: nowhere.test\r\nX-Request-Id: lost-1\r\n\r\n")
    assert r.status == 404
    assert r.header("X-Request-Id") == "lost-1"
    assert b"nowhere.test" in r.body and b"lost-1" in r.body
    # Rejected while parsing the head: still an id, generated.
    r, _ = raw_exchange(router, b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Bad: a\rb\r\n\r\n")
    assert r.status == 400
    rid = r.header("X-Request-Id")
    assert rid and RID.match(rid), r
    assert rid.encode() in r.body


# ---------------------------------------------------------------- upgrades

def ws_handshake(router, early=b""):
    """Opens a WebSocket through the router; `early` goes in the same write
    as the handshake, before any answer."""
    s = raw_connect(router)
    key = base64.b64encode(b"0123456789abcdef").decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode() + early)
    rd = RawReader(s)
    version, status, headers, _ = rd.read_head()
    assert status == 101, headers
    h = {k.lower(): v for k, v in headers}
    expect = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert h["sec-websocket-accept"] == expect
    assert h["upgrade"].lower() == "websocket" and h["connection"].lower() == "upgrade"
    return s, rd


def test_websocket_tunnel_echoes_both_ways_until_the_client_closes(router):
    s, rd = ws_handshake(router, early=b"early bird")
    assert rd.read_exact(10) == b"early bird"
    for k in range(3):
        msg = f"frame {k} ".encode() * 100
        s.sendall(msg)
        assert rd.read_exact(len(msg)) == msg
    big = pattern_bytes(300_000)
    s.sendall(big)
    assert rd.read_exact(len(big)) == big
    s.close()
    wait_for(lambda: backend_saw(router, "ws: client closed"), what="the backend to see the close")


def test_websocket_tunnel_ends_when_the_backend_closes(router):
    s, rd = ws_handshake(router)
    s.sendall(b"ping")
    assert rd.read_exact(4) == b"ping"
    s.sendall(b"close-please")
    assert rd.closed(timeout=5), "the router kept the client side open"
    s.close()


def test_refused_upgrade_keeps_the_worker_serving(router):
    """An upgrade the backend answers with 200 (or the router answers itself)
    leaves the connection unusable for HTTP: it must be closed, not spun on."""
    for first in (b"GET /no-upgrade HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: foo\r\n\r\n",
                  b"GET / HTTP/1.1\r\nHost: nowhere.test\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n",
                  b"CONNECT shop.test:443 HTTP/1.1\r\n" + H + b"\r\n"):
        r, rd = raw_exchange(router, first + b"GET /second HTTP/1.1\r\n" + H + b"\r\n", timeout=5)
        assert r.status in (200, 400, 404)
        assert r.header("Connection").lower() == "close"
        assert rd.closed(timeout=5)
    # Every worker still answers.
    for _ in range(20):
        assert get(router, "/probe", HOST, timeout=5)[0] == 200


# ---------------------------------------------------------------- smuggling and limits

def assert_rejected(router, data, status, smuggled=None):
    r, rd = raw_exchange(router, data, timeout=5)
    assert r.status == status, r
    assert r.header("Connection").lower() == "close"
    assert rd.closed(), "the connection stayed open after a framing error"
    if smuggled:
        # Anything smuggled would reach the backend before a request sent after it.
        marker = f"/marker-{time.monotonic_ns()}"
        assert get(router, marker, HOST)[0] == 200
        wait_for(lambda: backend_saw(router, marker), what="the marker request in the backend's log")
        assert not backend_saw(router, smuggled), "a smuggled request reached the backend"
    return r


def test_content_length_with_transfer_encoding_is_400(router):
    assert_rejected(router, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 46\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"0\r\n\r\nGET /smuggled-clte HTTP/1.1\r\n" + H + b"\r\n", 400, "/smuggled-clte")
    assert_rejected(router, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                    b"5c\r\nGET /smuggled-tecl HTTP/1.1\r\n" + H + b"\r\n0\r\n\r\n", 400, "/smuggled-tecl")


@pytest.mark.parametrize("te,status", [
    (b"gzip, chunked", 501), (b"gzip", 501), (b"xchunked", 501), (b"chunked, gzip", 400),
], ids=["gzip-chunked", "gzip", "xchunked", "chunked-gzip"])
def test_transfer_codings_other_than_chunked_are_refused(router, te, status):
    """Only chunked is understood (501 otherwise); a coding after chunked
    makes the framing unreadable (400)."""
    path = b"/te-" + te.replace(b", ", b"-")
    chunk = b"GET /smuggled" + path + b" HTTP/1.1\r\n" + H + b"\r\n"
    body = b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n"
    assert_rejected(router, b"POST " + path + b" HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + te + b"\r\n\r\n" + body,
                    status, "/smuggled" + path.decode())
    assert not backend_saw(router, "POST " + path.decode())
    # An obfuscated header name is no Transfer-Encoding either.
    assert_rejected(router, b"POST " + path + b" HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n" + body, 400)


def test_differing_content_lengths_are_400(router):
    assert_rejected(router, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 40\r\n\r\n"
                    b"abcGET /smuggled-cl HTTP/1.1\r\n" + H + b"\r\n", 400, "/smuggled-cl")


def test_invalid_chunk_size_is_400(router):
    assert_rejected(router, b"POST /bad-chunk HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    b"zz\r\nabc\r\n0\r\n\r\n", 400)
    assert_rejected(router, b"POST /bad-chunk HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    b"-1\r\nabc\r\n0\r\n\r\n", 400)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\nHost: shop.test\n\n",
    b"GET / HTTP/1.1\r\nHost: shop.test\nX-A: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-A: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-A\r: b\r\n\r\n",
], ids=["bare-lf", "bare-lf-in-block", "bare-cr-in-value", "bare-cr-in-name"])
def test_bare_cr_or_lf_in_the_head_is_400(router, data):
    assert_rejected(router, data, 400)


def test_header_block_over_64k_is_431(router):
    many = b"".join(b"X-Pad-%d: %s\r\n" % (k, b"v" * 1000) for k in range(70))
    r = assert_rejected(router, b"GET / HTTP/1.1\r\n" + H + many + b"\r\n", 431)
    assert b"431" in r.body
    # Just under the limit still passes.
    ok = b"".join(b"X-Pad-%d: %s\r\n" % (k, b"v" * 1000) for k in range(60))
    r, _ = raw_exchange(router, b"GET /big-head HTTP/1.1\r\n" + H + ok + b"\r\n")
    assert r.status == 200


def test_body_over_the_route_max_body_is_413(router):
    small = b"Host: small.test\r\n"
    r = assert_rejected(router, b"POST / HTTP/1.1\r\n" + small + b"Content-Length: 1025\r\n\r\n" + b"a" * 1025, 413)
    assert b"1024 bytes" in r.body
    # Chunked, so the size is only known while streaming.
    chunk = b"200\r\n" + b"a" * 512 + b"\r\n"
    assert_rejected(router, b"POST / HTTP/1.1\r\n" + small + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n", 413)
    # A client that asks before sending is answered at once, without a 100.
    r = assert_rejected(router, b"POST / HTTP/1.1\r\n" + small + b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n", 413)
    # At the limit it passes.
    r, _ = raw_exchange(router, b"POST /limit HTTP/1.1\r\n" + small + b"Content-Length: 1024\r\n\r\n" + b"a" * 1024)
    assert r.status == 200 and json.loads(r.body)["body_len"] == 1024


def test_no_ready_instance_is_503_naming_the_app(router):
    r, _ = raw_exchange(router, b"GET / HTTP/1.1\r\nHost: empty.test\r\n\r\n")
    assert r.status == 503
    assert b"no ready instance for app 'empty'" in r.body
    assert r.header("X-Request-Id").encode() in r.body


def test_slow_headers_get_408_and_a_silent_instance_gets_504(tmp_path):
    d = Daemon(tmp_path).start(extra=["--header-timeout", "1s", "--response-timeout", "2s"])
    try:
        d.apply(echo_spec("echo", routes=f"[{{host: {HOST}}}]"))
        d.wait_ready("echo", 1)
        wait_routed(d, HOST)
        # Slowloris: part of a head, then nothing.
        s = raw_connect(d)
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Slow: ")
        rd = RawReader(s)
        r = rd.read_response()
        took = time.monotonic() - t0
        assert r.status == 408 and 0.9 <= took <= 3 * SLOW, (r, took)
        assert RID.match(r.header("X-Request-Id")), r
        assert rd.closed()
        s.close()
        # Trickling bytes does not buy more time.
        s = raw_connect(d)
        t0 = time.monotonic()
        rd = RawReader(s)
        for b in b"GET /trickle HTTP/1.1\r\nHost: shop.test\r\nX-Slow: " + b"z" * 100:
            if select.select([s], [], [], 0.1)[0]:
                break  # the answer is there: stop before the router has closed on us
            s.sendall(bytes([b]))
        r = rd.read_response()
        took = time.monotonic() - t0
        assert r.status == 408 and took <= 3 * SLOW, (r, took)
        s.close()
        # A keep-alive connection idle between requests is not a slow client.
        s = raw_connect(d)
        rd = RawReader(s)
        s.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        assert rd.read_response().status == 200
        time.sleep(1.5)
        s.sendall(b"GET /second HTTP/1.1\r\n" + H + b"\r\n")
        assert json.loads(rd.read_response().body)["path"] == "/second"
        # Nor does a connection that served requests give a slow head more time.
        time.sleep(0.5)
        t0 = time.monotonic()
        s.sendall(b"GET /third HTTP/1.1\r\nHost: shop.test\r\nX-Slow: ")
        r = rd.read_response()
        took = time.monotonic() - t0
        assert r.status == 408 and 0.9 <= took <= 3 * SLOW, (r, took)
        s.close()
        # An instance that never answers: 504 after the response timeout, naming it.
        t0 = time.monotonic()
        r, _ = raw_exchange(d, b"GET /slow?ms=20000 HTTP/1.1\r\n" + H + b"\r\n", timeout=15)
        took = time.monotonic() - t0
        assert r.status == 504 and 1.9 <= took <= 5 * SLOW, (r, took)
        assert b"echo.web.1" in r.body
        assert get(d, "/alive", HOST)[0] == 200
        st = d.ok("GET", "/v1/apps/echo/stats")
        assert st["status"]["5xx"] >= 1
        # Timeouts count towards ejecting a hung instance, like 5xx
        # answers: three in a row (the answer to /alive started over).
        assert st["ejections"] == 0, st
        slow = [threading.Thread(target=raw_exchange, args=(d, b"GET /slow?ms=20000 HTTP/1.1\r\n" + H + b"\r\n", 15))
                for _ in range(3)]
        for t in slow:
            t.start()
        for t in slow:
            t.join(timeout=20 * SLOW)
        assert d.ok("GET", "/v1/apps/echo/stats")["ejections"] == 1
    finally:
        stop_daemon(d)


# ---------------------------------------------------------------- strict requests and answers

def test_a_malformed_answer_is_502_and_the_request_is_never_sent_twice(router):
    """The instance answered, so it has seen the request: no retry, even
    with another instance there, and the answer names the real fault."""
    for host, app in (("pair.test", "pair"), (HOST, "echo")):
        for method in (b"GET", b"POST", b"DELETE"):
            path = f"/malformed-{method.decode()}-{time.monotonic_ns()}"
            r, _ = raw_exchange(router, method + b" " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() +
                                b"\r\nContent-Length: 0\r\n\r\n")
            assert r.status == 502 and b"the instance sent a malformed response" in r.body, r
            marker = f"/after-{time.monotonic_ns()}"
            assert get(router, marker, host)[0] == 200
            wait_for(lambda: backend_saw(router, marker, app), what="the marker in the backend's log")
            assert len(backend_saw(router, path, app)) == 1, backend_saw(router, path, app)


def test_a_refused_connection_with_no_other_instance_says_so(router):
    status, headers, body = get(router, "/", "deaf.test")
    assert status == 502, (status, body)
    assert b"cannot connect to the instance" in body and b"no ready instance" not in body, body
    assert RID.match(headers["x-request-id"])


def test_whitespace_around_header_values_is_not_part_of_them(router):
    r, _ = raw_exchange(router, b"GET /ows HTTP/1.1\r\nHost: shop.test \t\r\nX-A:  a b \t \r\nX-Empty:   \r\n\r\n")
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert header_values(doc, "Host") == ["shop.test"]
    assert header_values(doc, "X-Forwarded-Host") == ["shop.test"]
    assert header_values(doc, "X-A") == ["a b"]
    assert header_values(doc, "X-Empty") == [""]


def test_an_absolute_form_target_names_the_host_the_app_sees(router):
    r, _ = raw_exchange(router, b"GET http://Shop.Test/abs?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["path"] == "/abs?x=1"
    assert header_values(doc, "Host") == ["Shop.Test"]
    assert header_values(doc, "X-Forwarded-Host") == ["Shop.Test"]
    r, _ = raw_exchange(router, b"GET https://shop.test?q=1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    assert r.status == 200 and json.loads(r.body)["path"] == "/?q=1", r


@pytest.mark.parametrize("data", [
    b"POST /x HTTP/1.1\r\nHost: shop.test\r\n: 1\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.test/evil\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop .test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: user@shop.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.test:80x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    b"GET /a#frag HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    b"GET ftp://shop.test/ HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    b"GET http://user@shop.test/ HTTP/1.1\r\nHost: shop.test\r\n\r\n",
], ids=["empty-header-name", "host-path", "host-blank", "host-userinfo", "host-bad-port", "host-open-bracket",
        "fragment", "ftp-target", "target-userinfo"])
def test_invalid_requests_are_400(router, data):
    r = assert_rejected(router, data, 400)
    assert b"request id: " in r.body
    if data.startswith(b"POST /x"):
        assert r.body.startswith(b"400 a header without a name\n"), r.body
    elif b"Host: " in data and data.startswith(b"GET / "):
        assert r.body.startswith(b"400 malformed Host header\n"), r.body


def test_hosts_of_every_valid_form_are_routed(router):
    for host in (b"shop.test:8080", b"SHOP.test.", b"shop.test"):
        r, _ = raw_exchange(router, b"GET /h HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert r.status == 200, (host, r)
    # Literal addresses are valid hosts, answered by the default route (none here).
    for host in (b"[::1]:80", b"127.0.0.1"):
        r, _ = raw_exchange(router, b"GET /h HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert r.status == 404, (host, r)


def test_http10_clients_get_no_interim_answers(router):
    # 100-continue from an HTTP/1.0 client is ignored: the instance never sees it.
    s = raw_connect(router)
    s.sendall(b"POST /e10 HTTP/1.0\r\n" + H + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
    rd = RawReader(s)
    version, status, headers, head = rd.read_head()
    assert status == 200, head
    s.close()
    # An instance's 103 goes to HTTP/1.1 clients only.
    s = raw_connect(router)
    s.sendall(b"GET /early-hints HTTP/1.1\r\n" + H + b"\r\n")
    rd = RawReader(s)
    assert rd.read_head()[1] == 103
    r = rd.read_response()
    assert r.status == 200
    s.close()
    s = raw_connect(router)
    s.sendall(b"GET /early-hints HTTP/1.0\r\n" + H + b"\r\n")
    rd = RawReader(s)
    version, status, headers, head = rd.read_head()
    assert status == 200 and head.startswith(b"HTTP/1.0 200"), head
    s.close()


def test_http_versions_other_than_1_are_505(router):
    r = assert_rejected(router, b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505)
    assert r.head.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), r.head
    assert b"HTTP/2.0 is not supported" in r.body


def test_a_request_target_over_the_limit_is_414(router):
    r = assert_rejected(router, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414)
    assert r.head.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), r.head


def test_options_asterisk_goes_to_the_hosts_app(router):
    r, _ = raw_exchange(router, b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
    assert r.status == 200, r
    assert json.loads(r.body)["path"] == "*"


def test_reason_phrases_are_the_standard_ones(router):
    r, _ = raw_exchange(router, b"GET /status/206 HTTP/1.1\r\n" + H + b"\r\n")
    assert r.head.startswith(b"HTTP/1.1 206 Partial Content\r\n"), r.head
    r, _ = raw_exchange(router, b"GET /status/599 HTTP/1.1\r\n" + H + b"\r\n")
    assert r.head.startswith(b"HTTP/1.1 599 \r\n"), r.head
    r = assert_rejected(router, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 501)
    assert r.head.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), r.head


def test_an_instances_transfer_coding_stays_named(router):
    for path in (b"/coded", b"/coded?close=1"):
        r, _ = raw_exchange(router, b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
        assert r.status == 200 and r.header("Transfer-Encoding") == "gzip, chunked", r
        assert r.body == b"pretend-gzip-bytes"
        # HTTP/1.0 has no transfer codings: a coded body is refused, not passed as plain.
        r, _ = raw_exchange(router, b"GET " + path + b" HTTP/1.0\r\n" + H + b"\r\n")
        assert r.status == 502, r
