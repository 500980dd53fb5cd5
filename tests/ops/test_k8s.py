"""deploy/k8s: rendered (an offline renderer, checked against `kubectl kustomize` where it exists) and
validated against the Kubernetes schemas (kubernetes-validate); then what each workload must have."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.ops.kustomize import containers, pod_spec, render

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "production"
KUBERNETES_VERSION = "1.33"
CRDS = {("keda.sh/v1alpha1", "ScaledObject")}  # not in the Kubernetes schemas: checked by hand below


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["metadata"]["name"]): r for r in render(OVERLAY)}


def test_the_overlay_renders_like_kustomize(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {kind for kind, _ in rendered} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                              "PodDisruptionBudget", "Job", "ScaledObject"}
    assert all(r["metadata"]["namespace"] == "orchestrator" for r in rendered.values())
    images = {c["image"] for r in rendered.values() for c in containers(r)}
    assert images == {"registry.example.com/agent-orchestrator:0.1.0"}
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: rendered by tests/ops/kustomize.py only")
    out = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60, check=True)
    theirs = {(r["kind"], r["metadata"]["name"]): r for r in yaml.safe_load_all(out.stdout) if r}
    assert theirs == rendered


def test_every_manifest_validates_against_the_kubernetes_schemas(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    for resource in rendered.values():
        if (resource["apiVersion"], resource["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)  # raises ValidationError


def test_the_validator_refuses_a_broken_manifest(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(rendered[("Deployment", "orchestrator-web")]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_workloads_have_probes_resources_and_no_inline_secrets(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    web = containers(rendered[("Deployment", "orchestrator-web")])[0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for resource in rendered.values():
        for container in containers(resource):
            assert container["resources"]["requests"] and container["resources"]["limits"], resource["metadata"]
            assert pod_spec(resource)["securityContext"]["runAsNonRoot"] is True  # type: ignore[index]
    assert not any(kind == "Secret" for kind, _ in rendered)  # created from the secret store, never committed
    flower = containers(rendered[("Deployment", "orchestrator-flower")])[0]
    auth = next(e for e in flower["env"] if e["name"] == "FLOWER_BASIC_AUTH")
    assert auth["valueFrom"]["secretKeyRef"]["name"] == "orchestrator-secrets"
    assert not any("basic-auth" in part for part in flower["command"])


def test_scaling_objects_target_the_right_workloads(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    hpa = rendered[("HorizontalPodAutoscaler", "orchestrator-web")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orchestrator-web"}
    scaled = rendered[("ScaledObject", "orchestrator-worker-agents")]["spec"]
    target = rendered[("Deployment", scaled["scaleTargetRef"]["name"])]
    assert containers(target)[0]["command"][containers(target)[0]["command"].index("-Q") + 1] == "agents"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == "agents"
    assert int(trigger["metadata"]["listLength"]) > 0 and scaled["minReplicaCount"] >= 1
    beat = rendered[("Deployment", "orchestrator-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    for (kind, name), pdb in rendered.items():
        if kind == "PodDisruptionBudget":
            wanted = pdb["spec"]["selector"]["matchLabels"].items()
            selected = [r for r in rendered.values()
                        if r["kind"] == "Deployment" and wanted <= r["spec"]["template"]["metadata"]["labels"].items()]
            assert len(selected) == 1, name
    job = containers(rendered[("Job", "orchestrator-migrate")])[0]
    assert job["command"][-2:] == ["migrate", "--noinput"]
