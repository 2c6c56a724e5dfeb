"""Invalid specs, through the API and the CLI: every problem is reported as
FILE:LINE:COL: message, all at once, and a refused spec changes nothing (an
app of the same name keeps its spec, instances and processes)."""
import json
import os
import random
import socket
import subprocess
import time

import pytest

from conftest import BIN, SLOW, Daemon, pid_alive, wait_for

FILENAME = "deploy/paasops.yaml"

SPEC = """app: shop
processes:
  web:
    command: sleep 1000
    instances: 2
    stop_timeout: 5s
"""

# One file with a problem at nearly every level, and the exact report.
MULTI = """app: My_Shop
biuld: make
env:
  1BAD: x
  GOOD: y
  GOOD: z
processes:
  web:
    comand: ./server
    instances: -1
    health: {http: healthz, intervl: 5s}
    resources: {memory: 1M, cpu: 0}
    restart: sometimes
    routes: [{hots: shop.example.com}]
  Worker:
    command: ""
  web:
    command: ./other
alerts:
  - name: slow
    metric: http p95
    op: >
    value: x
"""
NAME_RULE = "(use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-')"
MULTI_DETAILS = [
    f"1:6: invalid app name 'My_Shop': it must be lowercase {NAME_RULE}",
    "2:1: unknown key 'biuld' at the top level (did you mean 'build'?)",
    "4:3: invalid env var name '1BAD' in 'env': use letters, digits and '_', not starting with a digit",
    "6:3: duplicate env var 'GOOD' in 'env' (first at 5:3)",
    "8:3: missing required key 'command' in process 'web'",
    "9:5: unknown key 'comand' in process 'web' (did you mean 'command'?)",
    "10:16: 'instances' in process 'web' must be an integer from 0 to 10000, found '-1'",
    "11:20: 'http' in 'health' of process 'web' must be a path like '/healthz': it must start with '/', found 'healthz'",
    "11:29: unknown key 'intervl' in 'health' of process 'web' (did you mean 'interval'?)",
    "12:25: 'memory' in 'resources' of process 'web' must be at least 4M, found '1M'",
    "12:34: 'cpu' in 'resources' of process 'web' must be a number greater than 0 and at most 1024, found '0'",
    "13:14: 'restart' in process 'web' must be one of 'always', 'on-failure' or 'never', found 'sometimes'",
    "14:15: unknown key 'hots' in route 1 of process 'web' (did you mean 'host'?)",
    f"15:3: invalid process name 'Worker': it must be lowercase {NAME_RULE}",
    "16:14: 'command' in process 'Worker' is empty",
    "17:3: duplicate process 'web' (first at 8:3)",
    "21:13: invalid metric name 'http p95' in alert 'slow': use letters, digits, '_' and ':', not starting with a digit",
    "22:9: 'op' in alert 'slow' is empty: quote the operator, e.g. op: \">\"",
    "23:12: 'value' in alert 'slow' must be a number, found 'x'",
]


def alias_bomb(levels=9):
    lines = ["app: shop", "processes:", "  web:", "    command: sleep 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# ---- the daemon shared by the API tests ----

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("spec-input")).start()
    d.apply(SPEC)
    d.wait_ready("shop", 2)
    yield d
    pids = [i["pid"] for i in d.instances()]
    assert d.stop() == 0, d.read_log()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="instances to be gone")


@pytest.fixture
def shop(shared):
    yield shared
    assert shared.proc.poll() is None, f"daemon died:\n{shared.read_log()}"


def snapshot(d):
    apps = {a["name"]: d.ok("GET", f"/v1/apps/{a['name']}") for a in d.ok("GET", "/v1/apps")["apps"]}
    insts = sorted((i["id"], i["pid"], i["state"], i["restarts"]) for i in d.instances())
    evs = d.events(limit=1)
    return apps, insts, evs[-1]["id"] if evs else 0


def assert_unchanged(d, before):
    apps, insts, last = before
    assert d.request("GET", "/healthz") == (200, {"status": "ok"})
    now_apps, now_insts, _ = snapshot(d)
    assert now_apps == apps
    assert now_apps["shop"]["spec_yaml"] == SPEC
    assert now_insts == insts
    assert all(pid_alive(pid) for _, pid, _, _ in insts)
    assert d.ok("GET", f"/v1/events?after={last}")["events"] == []


def apply_invalid(d, spec, tmp_path):
    """POSTs spec, requires a 422 with one well-formed detail per problem,
    and returns the details without the file name."""
    status, doc = d.request("POST", "/v1/apps", {"spec": spec, "dir": str(tmp_path), "filename": FILENAME})
    assert status == 422, f"{status} {doc}"
    err = doc["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == "invalid_spec" and FILENAME in err["message"], err
    details = err["details"]
    assert isinstance(details, list) and details, err
    out = []
    for line in details:
        assert line.startswith(FILENAME + ":"), line
        rest = line[len(FILENAME) + 1:]
        ln, col, msg = rest.split(":", 2)
        assert int(ln) >= 1 and int(col) >= 1 and msg.startswith(" ") and msg.strip(), line
        out.append(rest)
    return out


# ---- the API ----

def test_yaml_syntax_error_is_reported_alone_with_position(shop, tmp_path):
    before = snapshot(shop)
    spec = "app: shop\nprocesses:\n  web: {command: sleep 2\n  worker:\n    instances: -1\n"
    assert apply_invalid(shop, spec, tmp_path) == [
        "4:9: did not find expected ',' or '}' (while parsing a flow mapping at 3:8)"]
    assert_unchanged(shop, before)


def test_alias_bomb_is_refused_without_expanding(shop, tmp_path):
    before = snapshot(shop)
    t0 = time.monotonic()
    details = apply_invalid(shop, alias_bomb(), tmp_path)
    assert time.monotonic() - t0 < 2 * SLOW
    assert details[0] == "5:5: anchors and aliases are not supported"
    assert all("anchors and aliases are not supported" in d for d in details)
    # A merge key is an alias too.
    spec = "base: &b {command: sleep 2}\napp: shop\nprocesses:\n  web:\n    <<: *b\n"
    assert apply_invalid(shop, spec, tmp_path)[0] == "1:7: anchors and aliases are not supported"
    assert_unchanged(shop, before)


def test_ten_megabyte_spec_is_refused_by_size(shop, tmp_path):
    """The API's 1 MiB body limit comes first (413); the spec's own limit
    is the same, so no larger spec can slip through either way."""
    before = snapshot(shop)
    big = SPEC.replace("sleep 1000", "sleep 2000") + ("# " + "x" * 1022 + "\n") * 10240
    body = json.dumps({"spec": big, "dir": str(tmp_path)}).encode()
    head = f"POST /v1/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10 * SLOW)
        s.connect(shop.sock)
        try:
            s.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused from the headers: the daemon stops reading
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with the rest of the body unread; the answer came first
    status_line, rest = answer.split(b"\r\n", 1)
    assert status_line == b"HTTP/1.1 413 Content Too Large", answer[:300]
    doc = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert doc["error"]["code"] == "too_large", doc
    assert_unchanged(shop, before)


def test_binary_garbage_is_refused(shop, tmp_path):
    before = snapshot(shop)
    rnd = random.Random(7)
    # Not UTF-8: raw high bytes inside the JSON string.
    noise = bytes(rnd.randrange(0x80, 0x100) for _ in range(3000))
    raw = b'{"filename":"' + FILENAME.encode() + b'","spec":"app: shop\\n' + noise + b'"}'
    status, doc = shop.request("POST", "/v1/apps", raw=raw)
    assert status == 422, (status, doc)
    [d] = doc["error"]["details"]
    assert d.startswith(FILENAME + ":2:") and "the file must be UTF-8 text" in d, d
    # UTF-8 but control characters.
    assert "control characters are not allowed" in apply_invalid(shop, "app: shop\n\x01\x02\x7f\x1b[0m", tmp_path)[0]
    # NUL bytes (binary data) cannot even be carried in a JSON string faithfully.
    png = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
    status, doc = shop.request("POST", "/v1/apps", {"spec": "app: shop\n" + png, "dir": str(tmp_path)})
    assert status == 400 and doc["error"]["code"] == "bad_request", (status, doc)
    assert_unchanged(shop, before)


def test_unknown_keys_get_did_you_mean(shop, tmp_path):
    before = snapshot(shop)
    spec = """app: shop
procesess: {}
processes:
  web:
    comand: sleep 2
    command: sleep 2
    instaces: 3
    restart: on_failure
    health: {htp: /healthz}
    routes: [{hots: a.example.com, pth: /}]
    deploy: {stratgy: canary}
zzz: 1
"""
    assert apply_invalid(shop, spec, tmp_path) == [
        "2:1: unknown key 'procesess' at the top level (did you mean 'processes'?)",
        "5:5: unknown key 'comand' in process 'web' (did you mean 'command'?)",
        "7:5: unknown key 'instaces' in process 'web' (did you mean 'instances'?)",
        "8:14: 'restart' in process 'web' must be one of 'always', 'on-failure' or 'never', found 'on_failure' (did you mean 'on-failure'?)",
        "9:13: 'health' of process 'web' needs a check: 'http', 'tcp' or 'cmd'",
        "9:14: unknown key 'htp' in 'health' of process 'web' (did you mean 'http'?)",
        "10:15: unknown key 'hots' in route 1 of process 'web' (did you mean 'host'?)",
        "10:36: unknown key 'pth' in route 1 of process 'web' (did you mean 'path'?)",
        "11:14: unknown key 'stratgy' in 'deploy' of process 'web' (did you mean 'strategy'?)",
        "12:1: unknown key 'zzz' at the top level",
    ]
    assert_unchanged(shop, before)


def test_negative_and_absurd_instance_counts(shop, tmp_path):
    before = snapshot(shop)
    values = ["-1", "-0.5", "10001", "99999999999999999999", "1e9", "1.5", ".inf", "0x10", '"3"', "three", "[3]", ""]
    spec = "app: shop\nprocesses:\n" + "".join(
        f"  p{k}:\n    command: sleep 2\n    instances: {v}\n" for k, v in enumerate(values))
    details = apply_invalid(shop, spec, tmp_path)
    assert len(details) == len(values), details
    for k, (v, d) in enumerate(zip(values, details)):
        assert d.startswith(f"{3 * k + 5}:"), d
        assert f"'instances' in process 'p{k}'" in d and "0 to 10000" in d, d
    assert details[0] == "5:16: 'instances' in process 'p0' must be an integer from 0 to 10000, found '-1'"
    assert details[8] == "29:16: 'instances' in process 'p8' must be an integer from 0 to 10000, found the quoted string '3'"
    assert details[11] == "38:5: 'instances' in process 'p11' has no value (expected an integer from 0 to 10000)"
    assert_unchanged(shop, before)


def test_empty_or_missing_command(shop, tmp_path):
    before = snapshot(shop)
    spec = """app: shop
processes:
  web:
    command: ""
  a:
    command:
  b:
    command: "   "
  c:
    instances: 1
  d: ./server
"""
    assert apply_invalid(shop, spec, tmp_path) == [
        "4:14: 'command' in process 'web' is empty",
        "6:5: 'command' in process 'a' has no value (expected a string)",
        "8:14: 'command' in process 'b' is empty",
        "9:3: missing required key 'command' in process 'c'",
        "11:6: process 'd' must be a mapping, found './server' (write 'd: {command: ...}')",
    ]
    assert_unchanged(shop, before)


def test_duplicate_process_names_and_keys(shop, tmp_path):
    before = snapshot(shop)
    spec = """app: shop
processes:
  web:
    command: sleep 2
  web:
    command: sleep 3
app: shop
"""
    assert apply_invalid(shop, spec, tmp_path) == [
        "5:3: duplicate process 'web' (first at 3:3)",
        "7:1: duplicate key 'app' at the top level (first at 1:1)",
    ]
    assert_unchanged(shop, before)


@pytest.mark.parametrize("name,why", [
    ("a/b", "it contains '/'"),
    ("..", "it contains '.'"),
    ("../etc", "it contains '.'"),
    ("Shop", "it must be lowercase"),
    ("SHOP", "it must be lowercase"),
    ("my_app", "it contains '_'"),
    ("-shop", "it must not start or end with '-'"),
    ("a" * 64, "it is longer than 63 characters"),
])
def test_unsafe_app_names_are_refused(shop, tmp_path, name, why):
    before = snapshot(shop)
    spec = f"app: '{name}'\nprocesses:\n  web:\n    command: sleep 2\n"
    [d] = apply_invalid(shop, spec, tmp_path)
    assert d.startswith(f"1:6: invalid app name '{name[:40]}") and f": {why} {NAME_RULE}" in d, d
    assert_unchanged(shop, before)
    assert shop.request("GET", "/v1/apps/" + name.replace("/", "%2F"))[0] in (400, 404)


def test_unsafe_process_names_are_refused(shop, tmp_path):
    before = snapshot(shop)
    spec = "app: shop\nprocesses:\n  Web:\n    command: a\n  a/b:\n    command: b\n  '..':\n    command: c\n"
    details = apply_invalid(shop, spec, tmp_path)
    assert [d.split(": ", 1)[0] for d in details] == ["3:3", "5:3", "7:3"]
    assert all("invalid process name" in d for d in details)
    assert_unchanged(shop, before)


def test_several_errors_are_all_reported_in_order(shop, tmp_path):
    before = snapshot(shop)
    assert apply_invalid(shop, MULTI, tmp_path) == MULTI_DETAILS
    # The same errors in a spec that names the existing app.
    assert apply_invalid(shop, MULTI.replace("My_Shop", "shop"), tmp_path) == MULTI_DETAILS[1:]
    assert_unchanged(shop, before)
    assert [a["name"] for a in shop.ok("GET", "/v1/apps")["apps"]] == ["shop"]


def test_at_most_100_errors_then_a_count(shop, tmp_path):
    before = snapshot(shop)
    spec = "app: shop\nprocesses:\n  web:\n    command: x\nenv:\n" + "".join(f"  {k}X: a\n" for k in range(130))
    details = apply_invalid(shop, spec, tmp_path)
    assert len(details) == 101
    assert details[0].startswith("6:3: invalid env var name '0X'")
    assert details[99].startswith("105:3: invalid env var name '99X'")
    assert details[100] == "106:3: 30 more errors not shown"
    assert_unchanged(shop, before)


def test_safety_limits_of_the_parser(shop, tmp_path):
    before = snapshot(shop)
    head = "app: shop\nprocesses:\n  web:\n    command: x\n"
    assert apply_invalid(shop, head + "env: " + "[" * 70 + "]" * 70 + "\n", tmp_path) == \
        ["5:69: nesting is deeper than 64 levels"]
    [d] = apply_invalid(shop, head + "x: [" + ",".join(["1"] * 100001) + "]\n", tmp_path)
    assert d.startswith("5:") and d.endswith(": document has more than 100000 nodes"), d
    assert apply_invalid(shop, head + "---\napp: other\n", tmp_path) == ["5:1: multiple documents are not supported"]
    assert apply_invalid(shop, "app: !foo shop\n", tmp_path) == ["1:6: tags are not supported ('!foo')"]
    assert apply_invalid(shop, "# nothing\n", tmp_path) == \
        ["1:1: the file is empty: expected a mapping with 'app' and 'processes'"]
    assert apply_invalid(shop, "", tmp_path) == \
        ["1:1: the file is empty: expected a mapping with 'app' and 'processes'"]
    [d] = apply_invalid(shop, "- app: shop\n", tmp_path)
    assert d.startswith("1:1: ") and "found a list" in d, d
    assert_unchanged(shop, before)


def test_alert_rules_that_can_never_fire_are_refused(shop, tmp_path):
    before = snapshot(shop)
    details = apply_invalid(shop, SPEC + """alerts:
  - {name: fds, metric: paasops_instance_open_fd, op: ">", value: 1}
  - {name: slow, metric: paasops_http_request_duration_seconds, op: ">", value: 1}
  - {name: load, metric: paasops_host_load1, fn: p95, op: ">", value: 1}
  - {name: other, metric: paasops_instance_open_fds, match: {app: other}, op: ">", value: 1}
""", tmp_path)
    assert details == [
        "8:25: 'metric' in alert 'fds': unknown metric 'paasops_instance_open_fd' "
        "(did you mean 'paasops_instance_open_fds'?)",
        "9:26: 'metric' in alert 'slow': 'paasops_http_request_duration_seconds' is a histogram: "
        "ask for a quantile of it (p50, p90, p95 or p99), or for the series "
        "paasops_http_request_duration_seconds_count, paasops_http_request_duration_seconds_sum or "
        "paasops_http_request_duration_seconds_bucket",
        "10:50: 'fn' in alert 'load': 'paasops_host_load1' is a gauge: quantiles (p50, p90, p95, "
        "p99) need a histogram, such as paasops_http_request_duration_seconds",
        "11:62: label 'app' in 'match' in alert 'other' is implied (a spec's alerts see only its "
        "own app's series): leave it out",
    ], details
    assert_unchanged(shop, before)
    # paasops validate says the same without a daemon.
    f = tmp_path / "paasops.yaml"
    f.write_text(SPEC + "alerts:\n  - {name: fds, metric: paasops_instance_open_fd, op: \">\", value: 1}\n")
    r = run_cli("validate", "-f", str(f))
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr == (f"error: {f}:8:25: 'metric' in alert 'fds': unknown metric "
                        "'paasops_instance_open_fd' (did you mean 'paasops_instance_open_fds'?)\n")


def test_healthy_deadline_no_longer_than_min_healthy_is_refused(shop, tmp_path):
    before = snapshot(shop)
    details = apply_invalid(shop, SPEC + """    deploy: {healthy_deadline: 5s}
  worker:
    command: sleep 1000
    deploy: {min_healthy: 30s, healthy_deadline: 30s}
""", tmp_path)
    assert details == [
        "7:32: 'healthy_deadline' (5s) in 'deploy' of process 'web' must be longer than "
        "'min_healthy' (10s, the default): a new instance counts only once it has been healthy "
        "that long",
        "10:50: 'healthy_deadline' (30s) in 'deploy' of process 'worker' must be longer than "
        "'min_healthy' (30s): a new instance counts only once it has been healthy that long",
    ], details
    assert_unchanged(shop, before)


def test_invalid_spec_for_a_new_app_creates_nothing(shop, tmp_path):
    before = snapshot(shop)
    apply_invalid(shop, "app: fresh\nprocesses:\n  web:\n    command: sleep 2\n    instances: -3\n", tmp_path)
    assert shop.request("GET", "/v1/apps/fresh")[0] == 404
    assert_unchanged(shop, before)


# ---- the CLI ----

def run_cli(*args, cwd=None):
    """The CLI with no daemon anywhere: the server points at nothing."""
    env = dict(os.environ, PAASOPS_SERVER="unix:/nonexistent/paasops.sock")
    env.pop("PAASOPS_TOKEN", None)
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=30 * SLOW)


def test_cli_validate_good_file_without_a_daemon(tmp_path):
    f = tmp_path / "paasops.yaml"
    f.write_text(SPEC)
    r = run_cli("validate", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert f"{f}: valid spec for app 'shop' (processes: web)" in r.stdout
    # The default file name, in the working directory.
    r = run_cli("validate", cwd=tmp_path)
    assert r.returncode == 0 and "valid spec for app 'shop'" in r.stdout, r.stderr


def test_cli_validate_bad_file_prints_every_position(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(MULTI)
    r = run_cli("validate", "-f", str(f))
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines == [f"error: {f}:{d}" for d in MULTI_DETAILS]


@pytest.mark.parametrize("kind", ["syntax", "bomb", "huge", "binary", "missing"])
def test_cli_validate_refuses_hostile_files(tmp_path, kind):
    f = tmp_path / "paasops.yaml"
    if kind == "syntax":
        f.write_text("app: shop\nprocesses:\n  web: {command: x\n")
        want = f"{f}:4:1: did not find expected ',' or '}}'"
    elif kind == "bomb":
        f.write_text(alias_bomb())
        want = f"{f}:5:5: anchors and aliases are not supported"
    elif kind == "huge":
        f.write_bytes(b"app: shop\n" + b"#" * (10 * 1024 * 1024 - 11) + b"\n")
        want = f"{f}:1:1: file is too large (10485760 bytes; the limit is 1048576)"
    elif kind == "binary":
        f.write_bytes(b"app: shop\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
        want = f"{f}:4:1: file contains a NUL byte (binary data?)"
    else:
        want = str(f)
    t0 = time.monotonic()
    r = run_cli("validate", "-f", str(f))
    assert time.monotonic() - t0 < 5 * SLOW
    assert r.returncode != 0, r.stdout
    assert want in r.stderr, r.stderr


def test_cli_apply_bad_file_prints_each_detail_and_exits_1(daemon, tmp_path):
    d = daemon
    good = tmp_path / "paasops.yaml"
    good.write_text(SPEC.replace("instances: 2", "instances: 0"))
    r = d.cli("apply", "-f", str(good))
    assert r.returncode == 0, r.stderr
    before = d.ok("GET", "/v1/apps/shop")
    last = d.events(limit=1)[-1]["id"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(MULTI.replace("My_Shop", "shop"))
    r = d.cli("apply", "-f", str(bad))
    assert r.returncode == 1, (r.stdout, r.stderr)
    for detail in MULTI_DETAILS[1:]:
        assert f"error: {bad}:{detail}\n" in r.stderr, r.stderr
    assert r.stdout == ""

    huge = tmp_path / "huge.yaml"
    huge.write_bytes(SPEC.encode() + b"#" * (10 * 1024 * 1024))
    r = d.cli("apply", "-f", str(huge))
    assert r.returncode == 1 and str(huge) in r.stderr, r.stderr

    assert d.ok("GET", "/v1/apps/shop") == before
    assert d.ok("GET", f"/v1/events?after={last}")["events"] == []
