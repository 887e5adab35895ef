"""deploy/ holds together: every service the compose file waits on exists, every variable it
requires is in the README's .env example, each service connects to NATS as its own user of
nats/users.conf, and the image installs the lock."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_every_dependency_names_a_service_and_a_condition():
    for name, service in SERVICES.items():
        for needed, how in (service.get("depends_on") or {}).items():
            assert needed in SERVICES, (name, needed)
            assert how["condition"] in ("service_healthy", "service_completed_successfully"), (name, needed)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[needed], f"{name} waits for {needed}, which has no healthcheck"


def test_every_required_variable_is_in_the_readme_env_example():
    required = set(re.findall(r"\$\{([A-Z_]+):\?\}", (DEPLOY / "compose.yaml").read_text()))
    example = (DEPLOY / "README.md").read_text()
    assert required and all(re.search(rf"^{var}=", example, re.M) for var in required), sorted(required)


def test_each_service_connects_as_its_own_nats_user():
    users = set(re.findall(r"\{user: (\w+),", (DEPLOY / "nats" / "users.conf").read_text()))
    for name in ("api", "webhooks", "projector", "pipeline", "ledger"):
        url = SERVICES[name]["environment"]["NATS_URL"]
        assert {part.split("://")[1].split(":")[0] for part in url.split(",")} == {name} and name in users
    assert SERVICES["init"]["environment"]["NATS_URL"].startswith("nats://operator:")


def test_only_the_proxy_publishes_ports_and_the_image_installs_the_lock():
    assert [name for name, service in SERVICES.items() if service.get("ports")] == ["proxy"]
    assert "--require-hashes" in (DEPLOY / "Dockerfile").read_text()


def rendered_manifests() -> list[dict]:
    """deploy/kustomization.yaml as `kubectl kustomize` renders it (offline)."""
    import shutil
    import subprocess

    import pytest

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the Kubernetes manifests are not rendered (apt install kubectl)")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_kubernetes_manifests_render_and_validate_against_the_api_schemas():
    import kubernetes_validate

    manifests = rendered_manifests()
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests}
    for name in ("api", "webhooks", "pipeline", "ledger", "projector"):
        assert ("Deployment", name) in kinds
    assert ("StatefulSet", "nats") in kinds and ("Job", "genrail-init") in kinds
    for doc in manifests:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema in kubernetes-validate (checked below)
        kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_every_service_has_probes_resources_and_its_own_nats_user_and_keda_reads_the_work_consumer():
    manifests = rendered_manifests()
    deployments = {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == "Deployment"}
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert "livenessProbe" in container and container["resources"]["requests"], name
        if name in ("api", "webhooks"):
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {part.split("://")[1].split(":")[0] for part in env["NATS_URL"].split(",")} == {name}
    [scaled] = [doc for doc in manifests if doc["kind"] == "ScaledObject"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == ("JOBS", "pipeline")
