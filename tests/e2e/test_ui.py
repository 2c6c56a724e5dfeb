"""The web dashboard under /ui/: its files are public and served with headers
that confine the page (CSP, nosniff, no referrer) and revalidate by ETag;
no path under /ui reaches data without a token; the page has no inline
script or style, its JavaScript parses, and every /v1 call it makes exists
in the API."""
import html.parser
import http.client
import os
import re
import shutil
import subprocess
import urllib.parse

import pytest

from conftest import ROOT, SLOW, UnixHTTPConnection, hello_spec

ASSETS = os.path.join(ROOT, "src", "ui", "assets")
CSP = "default-src 'self'; frame-ancestors 'none'"


def get(d, path, headers=None, method="GET", unix=False):
    """One request without a token; answers (status, headers, body bytes)."""
    conn = (UnixHTTPConnection(d.sock, timeout=30 * SLOW) if unix
            else http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=30 * SLOW))
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def read_asset(name):
    with open(os.path.join(ASSETS, name), "rb") as f:
        return f.read()


class Page(html.parser.HTMLParser):
    """What of index.html matters here: what it loads, and anything inline."""

    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.inline = [], [], []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.in_script = True
            if "src" in a:
                self.scripts.append(a["src"])
            else:
                self.inline.append("<script> without src")
        if tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(a["href"])
        if tag == "style":
            self.inline.append("<style>")
        for k, v in attrs:
            if k == "style" or k.startswith("on") or (v or "").strip().lower().startswith("javascript:"):
                self.inline.append(f"<{tag} {k}={v!r}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.inline.append("script body: " + data.strip()[:40])


def page():
    p = Page()
    p.feed(read_asset("index.html").decode())
    return p


def assert_ui_headers(h):
    assert h["Content-Security-Policy"] == CSP
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"


def test_ui_index_is_public_html_with_security_headers(daemon):
    status, h, body = get(daemon, "/ui/")
    assert status == 200, body
    assert h["Content-Type"] == "text/html; charset=utf-8"
    assert_ui_headers(h)
    assert h["Cache-Control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{64}"', h["ETag"]), h["ETag"]
    assert body == read_asset("index.html")
    # The unix socket serves it too, and /ui/index.html is the same page.
    assert get(daemon, "/ui/", unix=True)[2] == body
    assert get(daemon, "/ui/index.html")[2] == body


def test_ui_files_the_page_loads_are_served_with_their_types(daemon):
    p = page()
    assert p.scripts and p.styles, "the page loads no script or style sheet"
    want = [(src, "text/javascript; charset=utf-8") for src in p.scripts] + \
           [(href, "text/css; charset=utf-8") for href in p.styles]
    for ref, ctype in want:
        path = urllib.parse.urljoin("/ui/", ref)
        status, h, body = get(daemon, path)
        assert status == 200, (path, body)
        assert h["Content-Type"] == ctype, path
        assert_ui_headers(h)
        assert body == read_asset(os.path.basename(path))


def test_ui_every_asset_in_the_repo_is_served_byte_for_byte(daemon):
    names = sorted(os.listdir(ASSETS))
    assert {"index.html", "app.js", "style.css"} <= set(names)
    for name in names:
        status, h, body = get(daemon, "/ui/" + name)
        assert status == 200, (name, body)
        assert body == read_asset(name), name
        assert int(h["Content-Length"]) == len(body)
        # HEAD: the same headers, no body.
        hstatus, hh, hbody = get(daemon, "/ui/" + name, method="HEAD")
        assert (hstatus, hbody) == (200, b"")
        assert hh["ETag"] == h["ETag"] and hh["Content-Length"] == h["Content-Length"]


def test_ui_etag_round_trip_answers_304(daemon):
    status, h, body = get(daemon, "/ui/app.js")
    etag = h["ETag"]
    for inm in (etag, "W/" + etag, f'"other", {etag}', "*"):
        status, h2, body2 = get(daemon, "/ui/app.js", {"If-None-Match": inm})
        assert status == 304, inm
        assert body2 == b""
        assert h2["ETag"] == etag
        assert h2["Cache-Control"] == "no-cache"
        assert_ui_headers(h2)
    # Another file's tag, or a stale one, gets the file.
    other = get(daemon, "/ui/style.css")[1]["ETag"]
    assert other != etag
    for inm in (other, '"' + "0" * 64 + '"'):
        status, _, body3 = get(daemon, "/ui/app.js", {"If-None-Match": inm})
        assert status == 200 and body3 == body


def test_ui_without_slash_redirects_to_the_page(daemon):
    for method in ("GET", "HEAD"):
        status, h, _ = get(daemon, "/ui", method=method)
        assert status in (301, 308)
        assert h["Location"] == "/ui/"


def test_ui_unknown_files_are_404(daemon):
    for path in ("/ui/nope", "/ui/app.js/", "/ui/index.html/x", "/ui/..", "/ui/%2e%2e", "/ui/app.js.map"):
        status, _, body = get(daemon, path)
        assert status == 404, (path, status, body)
    # Only GET (and HEAD) are served.
    assert get(daemon, "/ui/", method="POST")[0] == 405


def test_ui_path_tricks_never_serve_data_without_a_token(daemon):
    daemon.apply(hello_spec(instances=1))
    daemon.wait_ready("hello", 1)
    tricks = ["/ui/../v1/apps", "/ui/%2e%2e/v1/apps", "/ui/%2E%2E%2Fv1%2Fapps", "/ui/..%2fv1%2fapps",
              "/ui/%2e%2e%2f%2e%2e%2fv1%2fapps", "/ui/./../v1/apps", "/ui//../v1/apps",
              "/ui/..%5cv1%5capps", "/ui/%252e%252e%252fv1%252fapps", "/ui/..;/v1/apps",
              "/ui/%2e%2e/v1/apps/hello", "/ui/..%2f..%2fv1%2ftokens", "/ui/%00/../v1/apps"]
    for path in tricks:
        status, _, body = get(daemon, path)
        assert status in (400, 404), (path, status, body)
        assert b"hello" not in body and b'"apps"' not in body, (path, body)
    # The API itself still wants a token over TCP.
    status, _, body = get(daemon, "/v1/apps")
    assert status == 401, body
    status, _, body = get(daemon, "/v1/apps", {"Referer": "http://127.0.0.1/ui/"})
    assert status == 401, body


def test_ui_page_has_no_inline_script_or_style():
    p = page()
    assert p.inline == [], p.inline
    js = read_asset("app.js").decode()
    # Data reaches the DOM as text only.
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                   "new Function", "setAttribute('style'", ".style."):
        assert banned not in js, banned


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_ui_javascript_parses():
    r = subprocess.run(["node", "--check", os.path.join(ASSETS, "app.js")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ui_every_api_call_of_the_page_exists(daemon):
    js = read_asset("app.js").decode()
    calls = re.findall(r"'(GET|POST|PUT|DELETE) (/v1/[^'?]*)'", js)
    # Every /v1 path is in the page's table, where this test sees it.
    assert len(calls) == js.count("/v1/") and len(calls) >= 10, calls
    assert ("POST", "/v1/apps/{app}/restart") in calls and ("POST", "/v1/apps/{app}/scale") in calls
    daemon.apply(hello_spec(instances=1))
    daemon.wait_ready("hello", 1)
    viewer = daemon.ok("POST", "/v1/tokens", {"role": "viewer"})["token"]
    before = daemon.instances("hello")
    for method, path in calls:
        assert set(re.findall(r"\{(\w+)\}", path)) <= {"app"}, path
        path = path.replace("{app}", "hello")
        status, doc = daemon.request(method, path, body={} if method != "GET" else None,
                                     token=viewer, tcp=True)
        if method == "GET":
            assert status == 200, (method, path, status, doc)  # a viewer sees every view
        else:
            # The route exists with this method; a viewer may not change anything.
            assert status == 403 and doc["error"]["code"] == "forbidden", (method, path, status, doc)
    after = daemon.instances("hello")
    assert [(i["id"], i["pid"]) for i in after] == [(i["id"], i["pid"]) for i in before]
