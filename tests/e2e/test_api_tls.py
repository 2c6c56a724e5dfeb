"""The TCP API over TLS (`serve --api-tls-cert/--api-tls-key`): curl and the
CLI (`--server https://...`, `--cacert`, PAASOPS_CACERT) get through with a
trusted certificate for the right name and are refused otherwise; plain HTTP
on the TLS port gets a 400 in clear, silent clients are closed, neither hurts the daemon;
an upload of a few MB streams through TLS; bad certificate files stop the
start with a message that names them. Certificates come from a throwaway CA
made with the `openssl` command once per test session."""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BIN, SLOW, Daemon, free_port, wait_for


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


def server_cert(dir, name, san, ca="ca"):
    """A key and a certificate signed by the CA for the subjectAltName san."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=dir)
    with open(os.path.join(dir, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
            cwd=dir)
    return os.path.join(dir, f"{name}.pem"), os.path.join(dir, f"{name}.key")


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=paasops test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    c = {"dir": d, "ca": os.path.join(d, "ca.pem")}
    c["cert"], c["key"] = server_cert(d, "server", "IP:127.0.0.1,DNS:localhost")
    c["other_cert"], c["other_key"] = server_cert(d, "other", "DNS:other.example")
    # The certificate and its key in one file, as --api-tls-key allows.
    c["combined"] = os.path.join(d, "combined.pem")
    with open(c["combined"], "w") as out:
        for p in (c["cert"], c["key"]):
            with open(p) as f:
                out.write(f.read())
    return c


def tls_daemon(tmp_path, *flags):
    """A Daemon started with flags; its API and router ports differ (two
    free_port() calls in a row may hand out the same one)."""
    d = Daemon(tmp_path)
    while d.api_port == d.http_port:
        d.api_port = free_port()
    return d.start(extra=list(flags))


def make_token(d, role="admin", apps=None):
    body = {"role": role, **({"apps": apps} if apps else {})}
    status, doc = d.request("POST", "/v1/tokens", body)
    assert status == 201, (status, doc)
    return doc["token"]


SPEC = """app: {app}
processes:
  web:
    command: sleep 1000
    instances: 1
    stop_timeout: 5s
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory, certs):
    """A daemon whose TCP API speaks TLS, with app 'a' and an admin token."""
    d = tls_daemon(tmp_path_factory.mktemp("api-tls"), "--api-tls-cert", certs["cert"],
                   "--api-tls-key", certs["key"])
    d.apply(SPEC.format(app="a"))
    d.token = make_token(d)
    d.url = f"https://127.0.0.1:{d.api_port}"
    yield d
    assert d.proc.poll() is None, f"daemon died:\n{d.read_log()}"
    d.instances()
    assert d.stop() == 0, d.read_log()


def https_get(d, path, ca, host="127.0.0.1", token=None):
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, d.api_port, context=ctx, timeout=30 * SLOW)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def cli_env(**extra):
    e = {"PAASOPS_CACERT": ""}
    e.update(extra)
    return e


# ---- clients that trust the certificate ----

def test_start_up_line_names_the_https_address(tls):
    assert f"and https://127.0.0.1:{tls.api_port}" in tls.read_log(), tls.read_log()


def test_the_dashboard_is_served_over_tls(tls, certs):
    status, body = https_get(tls, "/ui/", certs["ca"])
    assert status == 200 and b"<html" in body.lower()
    assert https_get(tls, "/v1/apps", certs["ca"])[0] == 401


def test_curl_with_the_ca_lists_apps(tls, certs):
    for host in ("127.0.0.1", "localhost"):
        r = subprocess.run(["curl", "-sS", "--fail-with-body", "--cacert", certs["ca"],
                            f"https://{host}:{tls.api_port}/v1/apps",
                            "-H", f"Authorization: Bearer {tls.token}"],
                           capture_output=True, text=True, timeout=30 * SLOW)
        assert r.returncode == 0, r
        assert [a["name"] for a in json.loads(r.stdout)["apps"]] == ["a"], r.stdout


def test_tls_needs_a_token_like_plain_tcp(tls, certs):
    status, body = https_get(tls, "/v1/apps", certs["ca"])
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized", body
    assert https_get(tls, "/healthz", certs["ca"])[0] == 200


def test_cli_with_cacert_lists_apps(tls, certs):
    r = tls.cli("--server", tls.url, "--cacert", certs["ca"], "--token", tls.token, "apps",
                env=cli_env())
    assert r.returncode == 0, r
    assert r.stdout.splitlines()[1].split()[0] == "a", r.stdout


def test_cli_takes_the_ca_from_PAASOPS_CACERT(tls, certs):
    r = tls.cli("apps", "--json", server=tls.url, token=tls.token,
                env=cli_env(PAASOPS_CACERT=certs["ca"]))
    assert r.returncode == 0, r
    assert [a["name"] for a in json.loads(r.stdout)["apps"]] == ["a"], r.stdout


def test_cli_streams_logs_over_https(tls, certs):
    r = tls.cli("logs", "a", "-n", "5", server=tls.url, token=tls.token,
                env=cli_env(PAASOPS_CACERT=certs["ca"]))
    assert r.returncode == 0, r


def test_cli_follows_logs_over_https_until_interrupted(tls, certs):
    tls.apply("""app: ticker
processes:
  web:
    command: sh -c 'while true; do echo tick; sleep 0.2; done'
    instances: 1
    stop_timeout: 5s
""")
    env = dict(os.environ, PAASOPS_SERVER=tls.url, PAASOPS_TOKEN=tls.token,
               PAASOPS_CACERT=certs["ca"])
    p = subprocess.Popen([BIN, "logs", "ticker", "-f", "-n", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Lines keep coming over the one chunked answer, through TLS (the
        # app's own lines follow the release's build line).
        lines = [p.stdout.readline() for _ in range(5)]
        assert sum(line.rstrip().endswith(": tick") for line in lines) >= 3, lines
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10 * SLOW) == 0, p.stderr.read()
        tls.ok("DELETE", "/v1/apps/ticker")


def test_deploy_uploads_a_few_megabytes_over_https(tls, certs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "paasops.yaml").write_text(SPEC.format(app="big"))
    # Random bytes do not compress: the upload stays a few MB on the wire.
    (src / "blob.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    tok = make_token(tls, "deployer", ["big"])
    r = tls.cli("deploy", str(src), server=tls.url, token=tok, timeout=120,
                env=cli_env(PAASOPS_CACERT=certs["ca"]))
    assert r.returncode == 0, r
    assert "release v1 of app 'big' created" in r.stdout, r.stdout
    rel = tls.ok("GET", "/v1/apps/big/releases")["releases"]
    assert [x["version"] for x in rel] == [1], rel
    tls.ok("DELETE", "/v1/apps/big")


# ---- clients that must be refused ----

def test_cli_without_the_ca_fails_verification(tls):
    r = tls.cli("apps", server=tls.url, token=tls.token, env=cli_env())
    assert r.returncode == 3, r
    assert f"cannot reach paasops at {tls.url}: certificate verify failed" in r.stderr, r.stderr
    assert r.stdout == ""


def test_a_missing_cacert_file_is_a_usage_error(tls, tmp_path):
    missing = str(tmp_path / "nope.pem")
    r = tls.cli("apps", "--cacert", missing, server=tls.url, token=tls.token, env=cli_env())
    assert r.returncode == 2 and missing in r.stderr, r


def test_cli_refuses_a_certificate_for_another_name(tmp_path, certs):
    d = tls_daemon(tmp_path, "--api-tls-cert", certs["other_cert"], "--api-tls-key",
                   certs["other_key"])
    try:
        url = f"https://127.0.0.1:{d.api_port}"
        r = d.cli("apps", "--cacert", certs["ca"], server=url, token=make_token(d), env=cli_env())
        assert r.returncode == 3, r
        assert f"cannot reach paasops at {url}: certificate verify failed: IP address mismatch" \
            in r.stderr, r.stderr
        # The chain itself is trusted: with the name it was made for, it passes.
        ctx = ssl.create_default_context(cafile=certs["ca"])
        with socket.create_connection(("127.0.0.1", d.api_port), timeout=10 * SLOW) as s:
            with ctx.wrap_socket(s, server_hostname="other.example") as t:
                assert t.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        assert d.stop() == 0, d.read_log()


def read_until_closed(s, bound):
    """Everything the peer sends until it closes; fails when it stays open
    longer than bound seconds."""
    s.settimeout(bound)
    got = b""
    start = time.monotonic()
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError(f"the daemon kept the connection open for {bound:.0f}s")
        if not chunk:
            break
        got += chunk
    return got, time.monotonic() - start


def test_plain_http_to_the_tls_port_gets_a_400_and_the_daemon_keeps_serving(tls, certs):
    for method in (b"GET", b"POST", b"HEAD", b"PUT"):
        with socket.create_connection(("127.0.0.1", tls.api_port), timeout=10 * SLOW) as s:
            s.sendall(method + b" /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
            got, _ = read_until_closed(s, 10 * SLOW)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got
        assert b"Connection: close" in head
        assert json.loads(body) == {"error": {"code": "plain_http",
                                              "message": "plain HTTP request sent to the HTTPS API; use https://"}}
    # curl says what it got, and the daemon is unharmed.
    r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{tls.api_port}/healthz"],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 0 and "use https://" in r.stdout, r
    # Bytes that are neither TLS nor HTTP are closed without an answer.
    with socket.create_connection(("127.0.0.1", tls.api_port), timeout=10 * SLOW) as s:
        s.sendall(b"\x01\x02garbage\r\n\r\n")
        got, _ = read_until_closed(s, 10 * SLOW)
    assert not got.startswith(b"HTTP/"), got
    assert tls.proc.poll() is None
    assert https_get(tls, "/healthz", certs["ca"])[0] == 200


def test_a_client_that_sends_nothing_is_closed_after_the_handshake_timeout(tls, certs):
    with socket.create_connection(("127.0.0.1", tls.api_port), timeout=10 * SLOW) as s:
        got, took = read_until_closed(s, 20 * SLOW)
    assert got == b"" and took >= 5, (got, took)
    assert https_get(tls, "/healthz", certs["ca"])[0] == 200


def test_keep_alive_requests_over_one_tls_connection(tls, certs):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    conn = http.client.HTTPSConnection("127.0.0.1", tls.api_port, context=ctx, timeout=30 * SLOW)
    try:
        for _ in range(3):
            conn.request("GET", "/v1/apps/a", headers={"Authorization": f"Bearer {tls.token}"})
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["name"] == "a"
    finally:
        conn.close()


# ---- start-up ----

def serve(tmp_path, *flags):
    """Runs `paasops serve` expected to fail at start: (exit code, output)."""
    port = free_port()
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--http", "off",
                        "--api", f"127.0.0.1:{port}", *flags],
                       capture_output=True, text=True, timeout=30 * SLOW)
    return r.returncode, r.stdout + r.stderr


def test_a_missing_certificate_stops_the_start(tmp_path, certs):
    missing = str(tmp_path / "missing.pem")
    rc, out = serve(tmp_path, "--api-tls-cert", missing, "--api-tls-key", certs["key"])
    assert rc != 0, out
    assert f"cannot read TLS certificate '{missing}'" in out, out
    assert not os.path.exists(tmp_path / "data" / "paasops.sock")


def test_a_key_that_does_not_match_stops_the_start(tmp_path, certs):
    rc, out = serve(tmp_path, "--api-tls-cert", certs["cert"], "--api-tls-key", certs["other_key"])
    assert rc != 0, out
    assert f"TLS key '{certs['other_key']}' does not match" in out, out


def test_a_file_that_is_no_certificate_stops_the_start(tmp_path, certs):
    rc, out = serve(tmp_path, "--api-tls-cert", certs["key"], "--api-tls-key", certs["key"])
    assert rc != 0, out
    assert f"cannot use TLS certificate '{certs['key']}'" in out, out


def test_tls_flags_need_the_api_and_a_certificate(tmp_path, certs):
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--http", "off",
                        "--api-tls-cert", certs["cert"]],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 2 and "--api-tls-cert needs --api" in r.stderr, r
    rc, out = serve(tmp_path, "--api-tls-key", certs["key"])
    assert rc == 2 and "--api-tls-key needs --api-tls-cert" in out, out


def test_key_in_the_certificate_file(tmp_path, certs):
    d = tls_daemon(tmp_path, "--api-tls-cert", certs["combined"])
    try:
        assert https_get(d, "/healthz", certs["ca"])[0] == 200
    finally:
        assert d.stop() == 0, d.read_log()


def test_plain_api_on_a_public_address_is_warned_about(tmp_path):
    d = Daemon(tmp_path, api=False)
    port = free_port()
    while port == d.http_port:
        port = free_port()
    d.start(extra=["--api", f"0.0.0.0:{port}"])
    try:
        assert "0.0.0.0:" + str(port) + " is not a loopback address" in d.read_log(), d.read_log()
    finally:
        assert d.stop() == 0, d.read_log()
    (tmp_path / "loopback").mkdir()
    d2 = tls_daemon(tmp_path / "loopback")
    try:
        assert "not a loopback address" not in d2.read_log()
    finally:
        assert d2.stop() == 0, d2.read_log()


def test_doctor_counts_tls_as_protecting_an_api_off_loopback(tmp_path, certs):
    # The same address without TLS warns (tests/e2e/test_doctor.py); with it,
    # the exposure check is satisfied.
    d = Daemon(tmp_path, api=False).start(extra=["--api", f"0.0.0.0:{free_port()}",
                                                 "--api-tls-cert", certs["cert"],
                                                 "--api-tls-key", certs["key"]])
    try:
        doc = d.ok("GET", "/v1/doctor")
        api = [c for c in doc["checks"] if c["id"] == "api-exposure"][0]
        assert api["status"] == "ok", api
    finally:
        d.stop()
