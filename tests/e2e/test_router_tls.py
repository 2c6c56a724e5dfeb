"""HTTPS in the router (`serve --https ADDR --tls-cert F --tls-key F ...`):
SNI picks each site's certificate (exact names, one-label wildcards, the
common name of a certificate without subjectAltName, the first pair as the
default), everything the plain listener does works over TLS (routing,
keep-alive, pipelining, chunked and large bodies, 100-continue, WebSocket),
X-Forwarded-Proto says how the request came in, plain HTTP on the HTTPS
port gets a 400, plaintext and slow handshakes are counted and closed, routes can redirect plain HTTP to HTTPS,
bad certificate files stop the start, and SIGHUP swaps certificates for new
handshakes while open connections keep going. Certificates come from a
throwaway CA made with the `openssl` command; clients verify them for real."""
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BIN, SLOW, Daemon, free_port, wait_for
from router_helpers import (RawReader, echo_spec, get, header_values, pattern_bytes, raw_exchange, stop_daemon,
                            wait_routed)


# ---------------------------------------------------------------- certificates

def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


def leaf(dir, name, san=None, cn=None, serial=None):
    """A key and a certificate signed by the CA: for subjectAltName san, or
    with only a common name when san is None."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn or name}",
            cwd=dir)
    with open(os.path.join(dir, f"{name}.ext"), "w") as f:
        if san:
            f.write(f"subjectAltName={san}\n")
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    serial_args = ["-set_serial", str(serial)] if serial else ["-CAcreateserial"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            *serial_args, "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=dir)
    return os.path.join(dir, f"{name}.pem"), os.path.join(dir, f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=paasops router test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    p = {"dir": d, "ca": os.path.join(d, "ca.pem")}
    p["default"] = leaf(d, "default", "DNS:default.test")
    p["shop"] = leaf(d, "shop", "DNS:shop.test,DNS:www.shop.test")
    p["blog"] = leaf(d, "blog", "DNS:blog.test")
    p["wild"] = leaf(d, "wild", "DNS:*.apps.test")
    p["exact"] = leaf(d, "exact", "DNS:admin.apps.test")
    p["legacy"] = leaf(d, "legacy", None, cn="legacy.test")
    return p


def der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def client_ctx(pki, verify=True, alpn=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if not verify:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(d, pki, sni, verify=True, alpn=None, timeout=10):
    """A TLS socket to the HTTPS listener; sni None sends no server name."""
    raw = socket.create_connection(("127.0.0.1", d.https_port), timeout=timeout * SLOW)
    ctx = client_ctx(pki, verify=verify and sni is not None, alpn=alpn)
    return ctx.wrap_socket(raw, server_hostname=sni)


def served_cert(d, pki, sni, verify=True):
    with tls_connect(d, pki, sni, verify=verify) as s:
        return s.getpeercert(binary_form=True)


def pairs(pki, *names):
    out = []
    for n in names:
        out += ["--tls-cert", pki[n][0], "--tls-key", pki[n][1]]
    return out


def https_daemon(tmp_path, flags, **kw):
    d = Daemon(tmp_path, **kw)
    d.https_port = free_port()
    while d.https_port in (d.http_port, d.api_port):
        d.https_port = free_port()
    d.start(extra=["--https", f"127.0.0.1:{d.https_port}", *flags])
    return d


def curl(d, pki, url, *args, host="shop.test"):
    r = subprocess.run(["curl", "-sS", "--max-time", str(int(20 * SLOW)), "--cacert", pki["ca"],
                        "--resolve", f"{host}:{d.https_port}:127.0.0.1", *args, url],
                       capture_output=True, timeout=30 * SLOW)
    return r


def metric(d, name):
    status, text = d.request("GET", "/metrics")
    assert status == 200
    text = text.decode() if isinstance(text, bytes) else str(text)
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


ROUTES = ("[{host: shop.test}, {host: www.shop.test}, {host: blog.test, path: /b}, "
          "{host: '*.apps.test'}, {host: legacy.test}, {host: default.test}, "
          "{host: secure.test, https: redirect}, {host: open.test, https: allow}]")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, pki):
    d = https_daemon(tmp_path_factory.mktemp("rt-tls"),
                     ["--header-timeout", "2s",
                      *pairs(pki, "default", "shop", "blog", "wild", "exact", "legacy")])
    d.apply(echo_spec("echo", routes=ROUTES))
    d.wait_ready("echo", 1)
    wait_routed(d, "shop.test")
    yield d
    stop_daemon(d)


@pytest.fixture
def router(shared, pki):
    """The shared daemon; after each test it must still serve HTTPS."""
    yield shared
    assert shared.proc.poll() is None, f"daemon died:\n{shared.read_log()[-3000:]}"
    assert https_get(shared, pki, "/alive")[0] == 200


def https_get(d, pki, path, host="shop.test", method="GET", body=None, headers=None, timeout=10):
    c = http.client.HTTPSConnection(host, d.https_port, context=client_ctx(pki), timeout=timeout * SLOW)
    # Connect to 127.0.0.1 while SNI and the certificate check use host.
    c.sock = client_ctx(pki).wrap_socket(
        socket.create_connection(("127.0.0.1", d.https_port), timeout=timeout * SLOW), server_hostname=host)
    try:
        h = {"Host": host}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# ---------------------------------------------------------------- SNI

def test_sni_picks_each_hosts_certificate_and_verifies(router, pki):
    for sni, name in [("shop.test", "shop"), ("www.shop.test", "shop"), ("blog.test", "blog"),
                      ("x.apps.test", "wild"), ("SHOP.Test", "shop")]:
        assert served_cert(router, pki, sni) == der(pki[name][0]), sni


def test_an_exact_name_wins_over_an_earlier_wildcard(router, pki):
    assert served_cert(router, pki, "admin.apps.test") == der(pki["exact"][0])


def test_unknown_names_and_no_sni_get_the_first_pair(router, pki):
    for sni in ("unknown.test", "a.b.apps.test", "apps.test"):
        assert served_cert(router, pki, sni, verify=False) == der(pki["default"][0]), sni
    assert served_cert(router, pki, None) == der(pki["default"][0])


def test_a_certificate_without_subject_alt_name_is_picked_by_its_common_name(router, pki):
    assert served_cert(router, pki, "legacy.test", verify=False) == der(pki["legacy"][0])


def test_alpn_offers_http11_only_and_tls12_works(router, pki):
    with tls_connect(router, pki, "shop.test", alpn=["h2", "http/1.1"]) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    with tls_connect(router, pki, "shop.test", alpn=["h2"]) as s:
        assert s.selected_alpn_protocol() is None  # no h2, and no failed handshake either
    ctx = client_ctx(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", router.https_port), timeout=10 * SLOW)
    with ctx.wrap_socket(raw, server_hostname="shop.test") as s:
        assert s.version() == "TLSv1.2"
        assert "GCM" in s.cipher()[0] or "CHACHA20" in s.cipher()[0], s.cipher()


# ---------------------------------------------------------------- proxying over TLS

def test_curl_is_routed_by_host_and_path_with_forwarded_proto_https(router, pki):
    r = curl(router, pki, f"https://shop.test:{router.https_port}/some/path?q=1", "-v")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["path"] == "/some/path?q=1"
    assert header_values(doc, "X-Forwarded-Proto") == ["https"]
    assert "ALPN: server accepted http/1.1" in r.stderr.decode() or \
        "ALPN, server accepted to use http/1.1" in r.stderr.decode(), r.stderr.decode()
    # blog.test routes only /b.
    r = curl(router, pki, f"https://blog.test:{router.https_port}/b/x", host="blog.test")
    assert json.loads(r.stdout)["path"] == "/b/x"
    r = curl(router, pki, f"https://blog.test:{router.https_port}/other", "-o", "/dev/null",
             "-w", "%{http_code}", host="blog.test")
    assert r.stdout == b"404"
    # A client cannot claim https on the plain listener.
    status, _, body = get(router, "/p", "shop.test", headers={"X-Forwarded-Proto": "https"})
    assert status == 200 and header_values(json.loads(body), "X-Forwarded-Proto") == ["http"]


def test_keep_alive_and_pipelining_over_tls(router, pki):
    s = tls_connect(router, pki, "shop.test")
    rd = RawReader(s)
    for k in range(3):
        s.sendall(f"GET /ka/{k} HTTP/1.1\r\nHost: shop.test\r\n\r\n".encode())
        r = rd.read_response()
        assert r.status == 200 and json.loads(r.body)["path"] == f"/ka/{k}"
    s.sendall(b"".join(f"GET /pipe/{k} HTTP/1.1\r\nHost: shop.test\r\n\r\n".encode() for k in range(10)))
    for k in range(10):
        r = rd.read_response()
        assert r.status == 200 and json.loads(r.body)["path"] == f"/pipe/{k}"
    s.sendall(b"GET /bye HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
    r = rd.read_response()
    assert r.status == 200 and r.header("Connection").lower() == "close"
    assert rd.closed(timeout=5)
    s.close()


def test_chunked_upload_and_chunked_download_over_tls(router, pki):
    s = tls_connect(router, pki, "shop.test")
    rd = RawReader(s)
    s.sendall(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n")
    parts = [b"hello ", b"chunked ", b"world"]
    for p in parts:
        s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
    s.sendall(b"0\r\n\r\n")
    r = rd.read_response()
    doc = json.loads(r.body)
    assert r.status == 200 and doc["body"] == "hello chunked world" and doc["chunked"] is True
    s.sendall(b"GET /chunked?n=5&size=1000 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    r = rd.read_response()
    assert r.status == 200 and r.header("Transfer-Encoding").lower() == "chunked"
    assert r.body == pattern_bytes(1000) * 5
    s.close()


def test_several_megabytes_stream_both_ways_over_tls(router, pki):
    size = 8 * 1024 * 1024
    body = pattern_bytes(size)
    status, _, out = https_get(router, pki, "/big", method="POST", body=body, timeout=60)
    doc = json.loads(out)
    assert status == 200 and doc["body_len"] == size
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    s = tls_connect(router, pki, "shop.test", timeout=60)
    s.sendall(f"GET /bytes?n={size} HTTP/1.1\r\nHost: shop.test\r\n\r\n".encode())
    r = RawReader(s).read_response()
    s.close()
    assert r.status == 200 and r.body == body


def test_expect_100_continue_over_tls(router, pki):
    s = tls_connect(router, pki, "shop.test")
    rd = RawReader(s)
    s.sendall(b"PUT /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    _, status, _, _ = rd.read_head()  # times out if the 100 never comes
    assert status == 100
    s.sendall(b"hello there")
    r = rd.read_response()
    assert r.status == 200 and json.loads(r.body)["expect_continue"] is True
    s.close()


def test_websocket_tunnel_over_tls(router, pki):
    import base64
    s = tls_connect(router, pki, "shop.test")
    key = base64.b64encode(b"0123456789abcdef").decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    rd = RawReader(s)
    _, status, headers, _ = rd.read_head()
    assert status == 101, headers
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert dict((k.lower(), v) for k, v in headers)["sec-websocket-accept"] == accept
    for k in range(3):
        msg = f"frame {k} ".encode() * 100
        s.sendall(msg)
        assert rd.read_exact(len(msg)) == msg
    big = pattern_bytes(300_000)
    s.sendall(big)
    assert rd.read_exact(len(big)) == big
    s.sendall(b"close-please")
    assert rd.closed(timeout=5)
    s.close()


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(router, pki):
    """TCP half-close after a whole request, as on the plain listener: the
    TLS session may not read any more, but its answer still goes out."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(pki).wrap_bio(inc, out, server_hostname="shop.test")
    s = socket.create_connection(("127.0.0.1", router.https_port), timeout=10 * SLOW)

    def pump():
        if out.pending:
            s.sendall(out.read())
        data = s.recv(65536)
        if data:
            inc.write(data)
        else:
            inc.write_eof()
        return data

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
    obj.write(b"GET /half HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    s.sendall(out.read())
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        try:
            chunk = obj.read(65536)
        except ssl.SSLWantReadError:
            if not pump():
                break
            continue
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break
        if not chunk:
            break
        got += chunk
    s.close()
    assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got[:300]
    assert b'"path": "/half"' in got or b'"path":"/half"' in got, got[-300:]


def test_error_pages_and_limits_apply_over_tls(router, pki):
    status, headers, body = https_get(router, pki, "/x", host="default.test")
    assert status == 200
    s = tls_connect(router, pki, "shop.test")
    rd = RawReader(s)
    s.sendall(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
    r = rd.read_response()
    assert r.status == 404 and b"no route for host 'nowhere.test'" in r.body
    s.sendall(b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    r = rd.read_response()
    assert r.status == 431
    assert rd.closed(timeout=5)
    s.close()


def test_the_access_log_and_stats_count_tls_requests(router, pki):
    before = router.ok("GET", "/v1/apps/echo/stats")["requests"]
    for _ in range(3):
        assert https_get(router, pki, "/counted")[0] == 200
    wait_for(lambda: router.ok("GET", "/v1/apps/echo/stats")["requests"] >= before + 3,
             what="stats to count the HTTPS requests")

    def logged():
        lines = router.ok("GET", "/v1/apps/echo/logs?lines=10000")["lines"]
        return [l for l in lines if l["stream"] == "router" and 'path="/counted"' in l["line"]]
    wait_for(lambda: len(logged()) >= 3, what="access log lines for HTTPS requests")


def test_tls_connections_are_spread_over_the_workers_and_counted(tmp_path, pki):
    """HTTPS connections go through the same hand-over as plain ones: the
    worker that takes one runs its handshake, and every connection, failed
    handshakes included, leaves the counts when it closes."""
    d = https_daemon(tmp_path, ["--router-workers", "4", *pairs(pki, "shop")])
    conns = []
    try:
        d.apply(echo_spec("echo", routes="[{host: shop.test}]"))
        d.wait_ready("echo", 1)
        wait_routed(d, "shop.test")
        base = d.ok("GET", "/v1/apps/echo/stats")["router"]
        for _ in range(40):
            s = tls_connect(d, pki, "shop.test")
            conns.append((s, RawReader(s)))
            s.sendall(b"GET /spread HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            assert conns[-1][1].read_response().status == 200
        rt = d.ok("GET", "/v1/apps/echo/stats")["router"]
        per = rt["client_connections_per_worker"]
        assert sum(per) == 40 and max(per) - min(per) <= 2, per
        assert rt["connections_moved"] > base["connections_moved"], rt
        for s, rd in conns:
            s.sendall(b"GET /again HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            r = rd.read_response()
            assert r.status == 200 and header_values(json.loads(r.body), "X-Forwarded-Proto") == ["https"]
        for _ in range(5):  # failed handshakes
            with socket.create_connection(("127.0.0.1", d.https_port), timeout=5 * SLOW) as raw:
                raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
                try:
                    while raw.recv(65536):
                        pass
                except ConnectionResetError:
                    pass
    finally:
        for s, _ in conns:
            s.close()
    try:
        wait_for(lambda: d.ok("GET", "/v1/apps/echo/stats")["router"]["client_connections_per_worker"] == [0] * 4,
                 what="every worker's connection count to drop to 0")
        assert d.ok("GET", "/v1/apps/echo/stats")["router"]["tls_handshake_failures"] >= 5
    finally:
        stop_daemon(d)


# ---------------------------------------------------------------- hostile clients

def test_plaintext_to_the_https_port_gets_a_400_and_is_counted(router, pki):
    before = router.ok("GET", "/v1/apps/echo/stats")["router"]["tls_handshake_failures"]
    s = socket.create_connection(("127.0.0.1", router.https_port), timeout=5 * SLOW)
    s.sendall(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    data = b""
    start = time.monotonic()
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        assert time.monotonic() - start < 5 * SLOW, "the connection stayed open"
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"\r\nConnection: close" in head and b"\r\nX-Request-Id: " in head, head
    assert body.startswith(b"400 plain HTTP request sent to the HTTPS port; use https://\n"), body
    assert b"request id: " in body
    # curl over plain HTTP shows the same answer.
    r = subprocess.run(["curl", "-sS", "-H", "Host: shop.test", f"http://127.0.0.1:{router.https_port}/"],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 0 and r.stdout.startswith("400 plain HTTP request"), r
    # Neither TLS nor HTTP: closed without an answer.
    with socket.create_connection(("127.0.0.1", router.https_port), timeout=5 * SLOW) as raw:
        raw.sendall(b"\x01\x02\x03 not a protocol\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = raw.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert not got.startswith(b"HTTP/"), got
    wait_for(lambda: router.ok("GET", "/v1/apps/echo/stats")["router"]["tls_handshake_failures"] > before,
             what="the failed handshake to be counted")
    wait_for(lambda: (metric(router, "paasops_router_tls_handshake_failures_total") or 0) > before,
             what="the metric to count the failed handshake")
    status, text = router.request("GET", "/metrics")
    body = text if isinstance(text, bytes) else str(text).encode()
    assert b"# TYPE paasops_router_tls_handshake_failures_total counter\n" in body
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r


def test_a_slow_handshake_is_closed_at_the_header_timeout(router, pki):
    # A real ClientHello, sent a byte at a time: trickling must not extend the deadline.
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(pki).wrap_bio(inc, out, server_hostname="shop.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert len(hello) > 100
    s = socket.create_connection(("127.0.0.1", router.https_port), timeout=10 * SLOW)
    start = time.monotonic()
    closed = False
    for b in hello[:-1]:  # never the whole hello: the handshake cannot finish
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        # The pace is for the deadline's sake; nothing here waits for a condition.
        time.sleep(0.05)
        if time.monotonic() - start > 6 * SLOW:
            break
    if not closed:
        s.settimeout(6 * SLOW)
        try:
            while s.recv(65536):
                pass  # an alert may come before the end
            closed = True
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
    elapsed = time.monotonic() - start
    s.close()
    assert closed, "the slow handshake was never closed"
    assert 1.5 <= elapsed <= 6 * SLOW, elapsed  # --header-timeout 2s


def test_a_silent_client_is_closed_at_the_header_timeout(router, pki):
    s = socket.create_connection(("127.0.0.1", router.https_port), timeout=10 * SLOW)
    start = time.monotonic()
    try:
        assert s.recv(65536) == b""
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - start
    s.close()
    assert 1.5 <= elapsed <= 6 * SLOW, elapsed


# ---------------------------------------------------------------- redirects

def test_a_redirect_route_answers_plain_http_with_308_to_https(router, pki):
    status, headers, body = get(router, "/cart/add?item=3&n=1", "secure.test", method="POST", body=b"x=1")
    assert status == 308, body
    assert headers["location"] == f"https://secure.test:{router.https_port}/cart/add?item=3&n=1"
    status, headers, _ = get(router, "/", "Secure.Test:8080")
    assert status == 308 and headers["location"] == f"https://secure.test:{router.https_port}/"
    # OPTIONS * names no path: it goes to the site's root.
    r, _ = raw_exchange(router, b"OPTIONS * HTTP/1.1\r\nHost: secure.test\r\n\r\n")
    assert r.status == 308 and r.header("Location") == f"https://secure.test:{router.https_port}/", r
    # Over HTTPS the same route is served (its certificate is the default one).
    c = http.client.HTTPSConnection("127.0.0.1", router.https_port, context=client_ctx(pki, verify=False),
                                    timeout=10 * SLOW)
    c.request("GET", "/cart", headers={"Host": "secure.test"})
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    assert r.status == 200 and header_values(doc, "X-Forwarded-Proto") == ["https"]


def test_allow_routes_serve_plain_http(router, pki):
    for host in ("open.test", "shop.test"):
        status, _, body = get(router, "/plain", host)
        assert status == 200 and json.loads(body)["path"] == "/plain", host


def test_the_https_spec_key_is_checked(router, tmp_path):
    status, doc = router.request("POST", "/v1/apps", {"spec": echo_spec(
        "bad", routes="[{host: bad.test, https: redirekt}]"), "dir": str(tmp_path),
        "filename": "paasops.yaml"})
    assert status == 422, doc
    details = doc["error"]["details"]
    assert len(details) == 1 and re.match(
        r"paasops\.yaml:\d+:\d+: 'https' in route 1 of process 'web' must be one of 'allow' or "
        r"'redirect', found 'redirekt' \(did you mean 'redirect'\?\)$", details[0]), details


# ---------------------------------------------------------------- start-up

def serve(tmp_path, *flags):
    """`paasops serve` expected to fail at start: (exit code, output)."""
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--http", f"127.0.0.1:{free_port()}",
                        *flags], capture_output=True, text=True, timeout=30 * SLOW)
    assert not os.path.exists(tmp_path / "data" / "paasops.sock"), "something started"
    return r.returncode, r.stdout + r.stderr


def test_start_up_refuses_bad_certificate_files_naming_them(tmp_path, pki):
    https = ["--https", f"127.0.0.1:{free_port()}"]
    missing = str(tmp_path / "missing.pem")
    rc, out = serve(tmp_path, *https, "--tls-cert", missing, "--tls-key", pki["shop"][1])
    assert rc != 0 and f"cannot read TLS certificate '{missing}'" in out, out
    rc, out = serve(tmp_path, *https, "--tls-cert", pki["shop"][1], "--tls-key", pki["shop"][1])
    assert rc != 0 and (f"cannot use TLS certificate '{pki['shop'][1]}': no PEM certificate in it "
                        "(no '-----BEGIN CERTIFICATE-----' line)") in out, out
    rc, out = serve(tmp_path, *https, "--tls-cert", str(tmp_path), "--tls-key", pki["shop"][1])
    assert rc != 0 and f"cannot read TLS certificate '{tmp_path}': Is a directory" in out, out
    rc, out = serve(tmp_path, *https, "--tls-cert", pki["shop"][0], "--tls-key", pki["shop"][0])
    assert rc != 0 and (f"cannot use TLS key '{pki['shop'][0]}': no private key in it that "
                        "OpenSSL can read") in out, out
    cut = tmp_path / "cut.pem"
    cut.write_text(open(pki["shop"][0]).read()[:200])
    rc, out = serve(tmp_path, *https, "--tls-cert", str(cut), "--tls-key", pki["shop"][1])
    assert rc != 0 and (f"cannot use TLS certificate '{cut}': a PEM block in it has no matching "
                        "'-----END ...-----' line") in out, out
    # The second pair's key belongs to another certificate.
    rc, out = serve(tmp_path, *https, *pairs(pki, "default"), "--tls-cert", pki["shop"][0],
                    "--tls-key", pki["blog"][1])
    assert rc != 0 and f"TLS key '{pki['blog'][1]}' does not match the certificate '{pki['shop'][0]}'" in out, out


def test_start_up_refuses_incomplete_tls_flags(tmp_path, pki):
    https = ["--https", f"127.0.0.1:{free_port()}"]
    rc, out = serve(tmp_path, *https, "--tls-cert", pki["shop"][0])
    assert rc == 2 and f"--tls-cert '{pki['shop'][0]}' needs a --tls-key" in out, out
    # Each key comes right after its certificate.
    rc, out = serve(tmp_path, *https, "--tls-cert", pki["shop"][0], "--tls-cert", pki["blog"][0],
                    "--tls-key", pki["shop"][1], "--tls-key", pki["blog"][1])
    assert rc == 2 and f"--tls-cert '{pki['shop'][0]}' needs a --tls-key after it" in out, out
    rc, out = serve(tmp_path, *https, "--tls-key", pki["shop"][1], "--tls-cert", pki["shop"][0])
    assert rc == 2 and f"--tls-key '{pki['shop'][1]}' needs a --tls-cert before it" in out, out
    rc, out = serve(tmp_path, *https)
    assert rc == 2 and "--https needs a certificate" in out, out
    rc, out = serve(tmp_path, *pairs(pki, "shop"))
    assert rc == 2 and "--tls-cert needs --https" in out, out
    rc, out = serve(tmp_path, "--https", "nowhere", *pairs(pki, "shop"))
    assert rc != 0 and "invalid --https address 'nowhere'" in out, out


# ---------------------------------------------------------------- SIGHUP

def test_sighup_swaps_certificates_for_new_handshakes_and_keeps_open_connections(tmp_path, pki):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "site.pem"), str(live / "site.key")
    api_cert, api_key = str(live / "api.pem"), str(live / "api.key")
    v1 = leaf(pki["dir"], "site-v1", "DNS:shop.test,IP:127.0.0.1", serial=1001)
    v2 = leaf(pki["dir"], "site-v2", "DNS:shop.test,IP:127.0.0.1", serial=1002)
    for src, dst in ((v1[0], cert), (v1[1], key), (v1[0], api_cert), (v1[1], api_key)):
        shutil.copy(src, dst)
    d = https_daemon(tmp_path, ["--tls-cert", cert, "--tls-key", key,
                                "--api-tls-cert", api_cert, "--api-tls-key", api_key])
    try:
        d.apply(echo_spec("echo", routes="[{host: shop.test}]"))
        d.wait_ready("echo", 1)
        wait_routed(d, "shop.test")

        def api_cert_der():
            raw = socket.create_connection(("127.0.0.1", d.api_port), timeout=10 * SLOW)
            with client_ctx(pki).wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return s.getpeercert(binary_form=True)

        assert served_cert(d, pki, "shop.test") == der(v1[0])
        assert api_cert_der() == der(v1[0])
        old = tls_connect(d, pki, "shop.test")
        rd = RawReader(old)
        old.sendall(b"GET /before HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        assert rd.read_response().status == 200

        for src, dst in ((v2[0], cert), (v2[1], key), (v2[0], api_cert), (v2[1], api_key)):
            shutil.copy(src, dst)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served_cert(d, pki, "shop.test") == der(v2[0]),
                 what="new handshakes to get the new certificate")
        wait_for(lambda: api_cert_der() == der(v2[0]), what="the API to serve the new certificate")
        # The connection opened before keeps its session and keeps working.
        assert old.getpeercert(binary_form=True) == der(v1[0])
        for k in range(3):
            old.sendall(f"GET /after/{k} HTTP/1.1\r\nHost: shop.test\r\n\r\n".encode())
            r = rd.read_response()
            assert r.status == 200 and json.loads(r.body)["path"] == f"/after/{k}"
        old.close()

        # A bad file at the next SIGHUP: the old certificate stays, the daemon serves on.
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: f"keeping the previous TLS certificate: cannot use TLS certificate '{cert}'" in d.read_log(),
                 what="the reload error naming the file")
        assert d.proc.poll() is None
        assert served_cert(d, pki, "shop.test") == der(v2[0])
        assert https_get(d, pki, "/still")[0] == 200
        assert "api: TLS certificates reloaded" in d.read_log()
    finally:
        stop_daemon(d)
