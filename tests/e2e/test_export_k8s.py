"""`paasops export kubernetes`: a deployed app with two process types,
routes (exact host, wildcard, no host), health checks, limits, config vars
with a secret, and autoscaling, exported as a List (--json), as a YAML
stream that must read back as the same objects, and as a Dockerfile; and
the refusals (unknown app, no live release, bad namespace or image)."""
import json
import os
import re
import sys

import pytest

from conftest import wait_for
from test_deploy import APP_PY, cli_ok

PYTHON = sys.executable
SECRET = "s3cr3t-value-never-shown"
WORKER_CMD = "echo 'tick: #1' \"quoted\"; exec sleep 600"

SPEC = f"""app: shop
build: "echo built > BUILT"
env: {{LOG_LEVEL: info, GREETING: "hello: world # not a comment"}}
processes:
  web:
    command: {PYTHON} app.py
    instances: 2
    health: {{http: /healthz, interval: 2s, timeout: 1500ms, unhealthy: 4, boot_deadline: 30s}}
    resources: {{memory: 256M, cpu: 0.5}}
    stop_timeout: 7s
    routes:
      - {{host: shop.example.com}}
      - {{host: "*.shop.example.com", path: /api}}
      - {{path: /status}}
    deploy: {{min_healthy: 300ms}}
    autoscale: {{min: 2, max: 5, metric: cpu, target: 0.25}}
  worker:
    command: {json.dumps(WORKER_CMD)}
    instances: 1
    env: {{QUEUE: jobs, LOG_LEVEL: debug}}
    health: {{cmd: "test -e BUILT", interval: 1s}}
    stop_timeout: 3s
    restart: on-failure
    autoscale: {{min: 1, max: 4, metric: rps, target: 50}}
"""


@pytest.fixture
def shop(daemon, tmp_path):
    """The app deployed, with a plain and a secret config var."""
    d = tmp_path / "src"
    d.mkdir()
    (d / "app.py").write_text(APP_PY)
    (d / "VERSION").write_text("v1")
    (d / "paasops.yaml").write_text(SPEC)
    cli_ok(daemon, "deploy", str(d), "--wait")
    cli_ok(daemon, "config", "set", "shop", "DATABASE_URL=postgres://db:5432/shop", "--wait")
    cli_ok(daemon, "config", "set", "shop", f"API_KEY={SECRET}", "--secret", "--wait")
    return daemon


def export_json(daemon, *args):
    r = cli_ok(daemon, "export", "kubernetes", "shop", "--json", *args)
    return json.loads(r.stdout)


def by_kind(items, kind):
    return {o["metadata"]["name"]: o for o in items if o["kind"] == kind}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_export_maps_processes_routes_probes_and_secrets(shop):
    lst = export_json(shop, "--namespace", "prod", "--image", "registry.example.com/shop:1")
    assert lst["apiVersion"] == "v1" and lst["kind"] == "List"
    items = lst["items"]
    assert [o["kind"] for o in items] == ["Secret", "Deployment", "HorizontalPodAutoscaler",
                                         "Service", "Deployment", "Ingress"]
    assert all(o["metadata"]["namespace"] == "prod" for o in items)
    # The secret's value is nowhere; its key is a placeholder to fill in.
    assert SECRET not in json.dumps(lst)
    secret = by_kind(items, "Secret")["shop-secrets"]
    assert secret["stringData"] == {"API_KEY": ""}
    assert "API_KEY" in secret["metadata"]["annotations"]["paasops.io/fill-in"]

    deps = by_kind(items, "Deployment")
    web, worker = deps["shop-web"], deps["shop-worker"]
    for name, dep in (("web", web), ("worker", worker)):
        md = dep["metadata"]
        assert md["labels"] == {"app.kubernetes.io/name": "shop", "app.kubernetes.io/component": name,
                                "app.kubernetes.io/managed-by": "paasops-export"}
        assert md["annotations"]["paasops.io/release"] == "v3"
        assert dep["spec"]["template"]["metadata"]["labels"] == md["labels"]
        sel = dep["spec"]["selector"]["matchLabels"]
        assert sel == {"app.kubernetes.io/name": "shop", "app.kubernetes.io/component": name}
    assert web["spec"]["replicas"] == 2 and worker["spec"]["replicas"] == 1

    wc = web["spec"]["template"]["spec"]["containers"][0]
    assert wc["image"] == "registry.example.com/shop:1"
    # As the supervisor runs it: a simple command is exec'd by the shell.
    assert wc["command"] == ["/bin/sh", "-c", f"exec {PYTHON} app.py"]
    env = env_of(wc)
    assert env["PORT"] == "8080" and env["HOST"] == "0.0.0.0"
    assert env["GREETING"] == "hello: world # not a comment" and env["LOG_LEVEL"] == "info"
    assert env["DATABASE_URL"] == "postgres://db:5432/shop"
    assert env["API_KEY"] == {"secretKeyRef": {"name": "shop-secrets", "key": "API_KEY"}}
    assert env["PAASOPS_INSTANCE"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert wc["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert wc["resources"] == {"limits": {"cpu": "500m", "memory": str(256 << 20)}}
    assert wc["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
                                    "timeoutSeconds": 2, "successThreshold": 1, "failureThreshold": 4}
    assert wc["livenessProbe"]["failureThreshold"] == 4 and wc["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert wc["startupProbe"]["failureThreshold"] == 15  # 30 s boot deadline / 2 s
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 7
    assert web["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}

    kc = worker["spec"]["template"]["spec"]["containers"][0]
    assert kc["command"] == ["/bin/sh", "-c", WORKER_CMD]
    kenv = env_of(kc)
    assert kenv["LOG_LEVEL"] == "debug" and kenv["QUEUE"] == "jobs"  # the process's env wins
    assert [e["name"] for e in kc["env"]].count("LOG_LEVEL") == 1
    assert kenv["API_KEY"]["secretKeyRef"]["key"] == "API_KEY"
    assert "ports" not in kc and "resources" not in kc
    assert kc["readinessProbe"]["exec"] == {"command": ["/bin/sh", "-c", "test -e BUILT"]}
    assert kc["readinessProbe"]["periodSeconds"] == 1 and kc["readinessProbe"]["failureThreshold"] == 3
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3
    # rps needs a custom metrics adapter: replicas stay, the choice is recorded.
    assert "custom metrics adapter" in worker["metadata"]["annotations"]["paasops.io/autoscale"]
    assert "restart: on-failure" in worker["metadata"]["annotations"]["paasops.io/not-translated"]

    hpa = by_kind(items, "HorizontalPodAutoscaler")["shop-web"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-web"}
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "AverageValue", "averageValue": "250m"}}}]

    svc = by_kind(items, "Service")
    assert list(svc) == ["shop-web"]  # the worker has no routes
    assert svc["shop-web"]["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                                 "protocol": "TCP"}]
    assert svc["shop-web"]["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]

    ing = by_kind(items, "Ingress")["shop"]
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    backend = {"service": {"name": "shop-web", "port": {"number": 80}}}
    assert ing["spec"]["rules"] == [
        {"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}},
        {"host": "*.shop.example.com", "http": {"paths": [{"path": "/api", "pathType": "Prefix", "backend": backend}]}},
        {"http": {"paths": [{"path": "/status", "pathType": "Prefix", "backend": backend}]}},
    ]

    # The endpoint answers the same List; without --image the image is APP:vN.
    api = shop.ok("GET", "/v1/apps/shop/export/kubernetes")
    assert api["items"][1]["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:v3"
    assert all("namespace" not in o["metadata"] for o in api["items"])


def yaml_leaves(text):
    """Every key and scalar of the YAML stream, in order, read with the one
    rule the writer keeps: each line is `---`, a comment, or indentation,
    "- " markers, then a JSON-quoted key with a colon and/or a JSON scalar."""
    out = []
    line_re = re.compile(r'^ *(?:- )*(?:("(?:[^"\\]|\\.)*"):(?: (.+))?|(.+))$')
    for line in text.splitlines():
        if line == "---" or line.startswith("#"):
            continue
        m = line_re.match(line)
        assert m, f"unexpected YAML line {line!r}"
        key, val, bare = m.groups()
        if key is not None:
            out.append(json.loads(key))
        scalar = val if key is not None else bare
        if scalar is not None:
            out.append(json.loads(scalar))
    return out


def json_leaves(v, out):
    if isinstance(v, dict):
        if not v:
            out.append({})
        for k, x in v.items():
            out.append(k)
            json_leaves(x, out)
    elif isinstance(v, list):
        if not v:
            out.append([])
        for x in v:
            json_leaves(x, out)
    else:
        out.append(v)
    return out


def test_yaml_stream_reads_back_as_the_json_export(shop, tmp_path):
    lst = export_json(shop)
    r = cli_ok(shop, "export", "kubernetes", "shop")
    text = r.stdout
    assert SECRET not in text and SECRET not in r.stderr
    assert "fill in the values of Secret 'shop-secrets'" in r.stderr
    assert text.splitlines().count("---") == len(lst["items"])
    # Every string is a JSON-quoted scalar, so ": ", "#" and quotes survive.
    assert '"value": "hello: world # not a comment"' in text
    assert json.dumps(WORKER_CMD) in text
    assert yaml_leaves(text) == [x for o in lst["items"] for x in json_leaves(o, [])]
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml:
        assert list(yaml.safe_load_all(text)) == lst["items"]

    # -o writes the same stream to a file.
    out = tmp_path / "shop.yaml"
    r = cli_ok(shop, "export", "kubernetes", "shop", "-o", str(out))
    assert r.stdout == "" and out.read_text() == text
    assert f"wrote Kubernetes manifests to '{out}'" in r.stderr


def test_dockerfile_copies_the_release_and_runs_its_build(shop):
    r = cli_ok(shop, "export", "kubernetes", "shop", "--dockerfile")
    text = r.stdout
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[:3] == ["FROM debian:12-slim", "WORKDIR /app", "COPY . /app"]
    run = [ln for ln in lines if ln.startswith("RUN ")]
    assert len(run) == 1
    argv = json.loads(run[0][4:])
    assert argv[0] == "env" and argv[-3:] == ["/bin/sh", "-c", "echo built > BUILT"]
    assert "GREETING=hello: world # not a comment" in argv and "PAASOPS_RELEASE=v3" in argv
    assert "DATABASE_URL=postgres://db:5432/shop" in argv
    assert not [a for a in argv if a.startswith("API_KEY")] and SECRET not in text
    assert not [ln for ln in lines if ln.startswith(("CMD", "ENTRYPOINT"))]
    # The build context named in the header is the live release's directory.
    dockerfile = shop.ok("GET", "/v1/apps/shop/export/dockerfile?image=reg.example.com/shop:9")
    rel = shop.ok("GET", "/v1/apps/shop/releases/v3")
    assert dockerfile["context"] == rel["dir"] and dockerfile["release"] == 3
    assert f"docker build -t reg.example.com/shop:9 -f Dockerfile {rel['dir']}" in dockerfile["dockerfile"]
    assert os.path.exists(os.path.join(rel["dir"], "BUILT"))


def test_bad_input_is_refused(shop, tmp_path):
    r = shop.cli("export", "kubernetes", "nope", "--json")
    assert r.returncode == 1 and "app 'nope' not found" in r.stderr, r
    assert shop.request("GET", "/v1/apps/nope/export/kubernetes")[0] == 404
    for ns in ("Prod", "-x", "a_b", "x" * 64, ""):
        r = shop.cli("export", "kubernetes", "shop", "--namespace", ns)
        assert r.returncode == 2 and "invalid --namespace" in r.stderr and r.stdout == "", (ns, r)
    for img in ("", "shop latest", "a\tb"):
        r = shop.cli("export", "kubernetes", "shop", "--image", img)
        assert r.returncode == 2 and "invalid --image" in r.stderr and r.stdout == "", (img, r)
    status, doc = shop.request("GET", "/v1/apps/shop/export/kubernetes?namespace=Prod")
    assert status == 400 and "invalid namespace 'Prod'" in doc["error"]["message"]
    status, doc = shop.request("GET", "/v1/apps/shop/export/kubernetes?image=a%20b")
    assert status == 400 and "invalid image" in doc["error"]["message"]
    assert shop.request("GET", "/v1/apps/shop/export/dockerfile?image=")[0] == 400
    r = shop.cli("export", "kubernetes", "shop", "-o", str(tmp_path / "no" / "such" / "dir"))
    assert r.returncode == 1 and "cannot write" in r.stderr
    r = shop.cli("export", "kubernetes", "shop", "--dockerfile", "--namespace", "prod")
    assert r.returncode == 2 and "--namespace has no meaning with --dockerfile" in r.stderr


def test_export_needs_read_access_to_the_app(shop):
    def token(*args):
        return cli_ok(shop, "tokens", "create", *args).stdout.strip()
    viewer, other = token("--role", "viewer", "--app", "shop"), token("--role", "viewer", "--app", "blog")
    for path in ("/v1/apps/shop/export/kubernetes", "/v1/apps/shop/export/dockerfile"):
        assert shop.request("GET", path, token=viewer, tcp=True)[0] == 200
        assert shop.request("GET", path, token=other, tcp=True)[0] == 403
        assert shop.request("GET", path, tcp=True)[0] == 401


def test_app_without_a_live_release_is_refused(daemon, tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    (d / "app.py").write_text(APP_PY)
    (d / "VERSION").write_text("v1")
    (d / "paasops.yaml").write_text('app: broken\nbuild: "exit 3"\nprocesses:\n  web:\n'
                                    f'    command: {PYTHON} app.py\n')
    assert daemon.cli("deploy", str(d), "--wait").returncode == 1
    r = daemon.cli("export", "kubernetes", "broken")
    assert r.returncode == 1 and r.stdout == "", r
    assert "error: app 'broken' has no live release to export: deploy it first" in r.stderr, r.stderr
    status, doc = daemon.request("GET", "/v1/apps/broken/export/dockerfile")
    assert status == 409 and doc["error"]["code"] == "conflict"
