"""echo_server: a small threaded HTTP/1.1 backend for the router's end-to-end
tests, run by paasops as an app. Standard library only. It listens on
$HOST:$PORT, keeps connections alive, and answers:

  GET  /healthz          "ok"; 503 while the file $STATE_DIR/$PAASOPS_INSTANCE.sick exists
  *    anything else     500 while the file $STATE_DIR/$PAASOPS_INSTANCE.fail exists
  *    /slow?ms=N        the echo below, after N milliseconds
  GET  /status/N         status N (no body for 1xx, 204 and 304)
  GET  /bytes?n=N        N bytes of the pattern bytes(range(256)) repeated, with Content-Length
  GET  /chunked?n=N&size=S  N chunks of S pattern bytes, chunked, with a trailer
  GET  /hop              a response carrying hop-by-hop headers
  *    /reset            reads the request, then resets the connection (no answer)
  GET  /ws               a minimal WebSocket handshake, then echoes raw bytes;
                         b"close-please" makes it close the connection
  *    anything else     a JSON echo: instance, method, path, version, headers,
                         body (when small), body_len, body_sha256, chunked,
                         trailers, expect_continue

Request bodies are read streaming (Content-Length or chunked); Expect:
100-continue is honoured by sending "100 Continue" before the body is read.
It prints one line per request. On SIGTERM it appends "sigterm inflight=N"
to $STATE_DIR/$PAASOPS_INSTANCE.events and exits at once, so a test can tell
whether a request was still in flight when the instance was signalled."""
import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

INSTANCE = os.environ.get("PAASOPS_INSTANCE", "echo")
STATE_DIR = os.environ.get("STATE_DIR", "")
PATTERN = bytes(range(256)) * 256  # 64 KiB
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ECHO_BODY_MAX = 1024 * 1024

lock = threading.Lock()
inflight = 0


def state_file(suffix):
    return os.path.join(STATE_DIR, f"{INSTANCE}.{suffix}") if STATE_DIR else None


def on_term(signum, frame):
    path = state_file("events")
    if path:
        with open(path, "a") as f:
            f.write(f"sigterm inflight={inflight} time={time.time():.3f}\n")
    os._exit(0)


def pattern_bytes(n):
    out = []
    while n > 0:
        k = min(n, len(PATTERN))
        out.append(PATTERN[:k])
        n -= k
    return b"".join(out)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "echo"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def handle_expect_100(self):
        self.expect_continue = True
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def read_body(self):
        """Reads the whole request body streaming; returns (length, sha256, head bytes)."""
        h = hashlib.sha256()
        kept = []
        total = 0
        self.trailers = []
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            self.chunked = True
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                left = size
                while left:
                    piece = self.rfile.read(min(left, 65536))
                    if not piece:
                        raise ConnectionError("eof in chunk")
                    h.update(piece)
                    if total < ECHO_BODY_MAX:
                        kept.append(piece)
                    total += len(piece)
                    left -= len(piece)
                self.rfile.readline(16)
            while True:
                line = self.rfile.readline(65536)
                if line in (b"\r\n", b"\n", b""):
                    break
                self.trailers.append(line.decode("latin-1").strip())
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                piece = self.rfile.read(min(left, 65536))
                if not piece:
                    raise ConnectionError("eof in body")
                h.update(piece)
                if total < ECHO_BODY_MAX:
                    kept.append(piece)
                total += len(piece)
                left -= len(piece)
        return total, h.hexdigest(), b"".join(kept)

    def send(self, status, body=b"", headers=(), content_type="application/json"):
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Type", content_type)
        if status not in (204,) and status >= 200:
            self.send_header("Content-Length", str(len(body)))
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self._headers_buffer.append(b"\r\n" + body)  # head and body in one write
            self.flush_headers()
        else:
            self.end_headers()

    def dispatch(self):
        global inflight
        self.expect_continue = getattr(self, "expect_continue", False)
        self.chunked = False
        self.trailers = []
        # With the state file "stale", a kept-alive connection is closed when
        # its next request arrives, unanswered (a keep-alive timeout that
        # fires just then); a new connection is served.
        served = getattr(self, "served", 0)
        self.served = served + 1
        stale = state_file("stale")
        if served and stale and os.path.exists(stale):
            self.close_connection = True
            return
        print(f"{self.command} {self.path}", flush=True)
        with lock:
            inflight += 1
        try:
            self.route()
        finally:
            with lock:
                inflight -= 1
            self.expect_continue = False

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path == "/healthz":
            sick = state_file("sick")
            if sick and os.path.exists(sick):
                self.send(503, b"sick\n", content_type="text/plain")
            else:
                self.send(200, b"ok\n", content_type="text/plain")
            return
        fail = state_file("fail")
        if fail and os.path.exists(fail):
            self.read_body()
            self.send(500, f"{INSTANCE} failing\n".encode(), content_type="text/plain")
            return
        if path == "/ws":
            return self.websocket()
        if path == "/reset":
            self.read_body()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if path.startswith("/malformed"):
            # An answer no HTTP parser accepts (a four-digit status).
            self.read_body()
            self.wfile.write(b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok")
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/coded":
            # A body under a transfer coding other than chunked ("gzip"),
            # chunked on top unless ?close=1 (then delimited by the close).
            self.read_body()
            data = b"pretend-gzip-bytes"
            if q.get("close") == "1":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n" + data)
                self.close_connection = True
            else:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
                                 b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
            self.wfile.flush()
            return
        if path == "/early-hints":
            # An interim 103 before the echo.
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
        if path.startswith("/status/"):
            self.read_body()
            status = int(path[len("/status/"):])
            self.send(status, f"status {status}\n".encode(), headers=[("ETag", '"e1"')] if status == 304 else (),
                      content_type="text/plain")
            return
        if path == "/bytes":
            self.read_body()
            n = int(q.get("n", "0"))
            self.send_response_only(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                left = n
                while left:
                    k = min(left, len(PATTERN))
                    self.wfile.write(PATTERN[:k])
                    left -= k
            return
        if path == "/chunked":
            self.read_body()
            n, size = int(q.get("n", "3")), int(q.get("size", "10"))
            self.send_response_only(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for i in range(n):
                self.wfile.write(b"%x\r\n" % size + pattern_bytes(size) + b"\r\n")
            self.wfile.write(b"0\r\nX-Checksum: abc\r\n\r\n")
            return
        if path == "/hop":
            self.read_body()
            self.send(200, b"hop\n", content_type="text/plain",
                      headers=[("Connection", "X-Resp-Secret"), ("Keep-Alive", "timeout=99"),
                               ("X-Resp-Secret", "1"), ("Proxy-Connection", "keep-alive"),
                               ("X-Kept", "yes")])
            return
        if path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
        n, digest, body = self.read_body()
        doc = {
            "instance": INSTANCE,
            "pid": os.getpid(),
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": n,
            "body_sha256": digest,
            "body": body.decode("latin-1") if n <= 65536 else None,
            "chunked": self.chunked,
            "trailers": self.trailers,
            "expect_continue": self.expect_continue,
        }
        self.send(200, json.dumps(doc).encode())

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or "websocket" not in self.headers.get("Upgrade", "").lower():
            self.send(400, b"not a websocket handshake\n", content_type="text/plain")
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response_only(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        while True:
            data = self.rfile.read1(65536)
            if not data:
                print("ws: client closed", flush=True)
                return
            if b"close-please" in data:
                print("ws: closing", flush=True)
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = dispatch


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    signal.signal(signal.SIGTERM, on_term)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    srv = Server((host, port), Handler)
    print(f"echo {INSTANCE} listening on {host}:{port}", flush=True)
    srv.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    sys.exit(main())
