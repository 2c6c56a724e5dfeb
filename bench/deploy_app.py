"""The app bench/deploy deploys: a tiny threaded keep-alive HTTP/1.1 server.

Listens on 127.0.0.1:$PORT. Every path answers 200 with a short text body
"deploy-bench VERSION pid PID\n" (and the header X-App-Version: VERSION);
/healthz answers the same way. VERSION is read once, at start, from the file
VERSION in the working directory (the app directory), so a process reports
the code it was started with, not what was copied over it afterwards.

Nothing special on SIGTERM (the default action: the process dies at once),
like most hand-written servers; with DEPLOY_APP_BOOT=SECONDS it sleeps that
long before listening (a slower-booting app). Python 3 standard library only.
"""

import http.server
import os
import socketserver
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"    # keep-alive
    server_version = "deploy-bench"
    sys_version = ""
    # Headers and body are two writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def do_GET(self):
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.server.version)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256     # the default (5) drops SYNs under a burst of new connections


def main():
    port = int(os.environ["PORT"])
    with open("VERSION") as f:
        version = f.read().strip()
    boot = float(os.environ.get("DEPLOY_APP_BOOT", "0") or 0)
    if boot > 0:
        time.sleep(boot)
    srv = Server(("127.0.0.1", port), Handler)
    srv.version = version
    srv.body = f"deploy-bench {version} pid {os.getpid()}\n".encode()
    print(f"deploy-bench {version} listening on 127.0.0.1:{port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
