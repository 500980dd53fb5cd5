"""A small offline kustomize renderer for the features deploy/k8s uses: ``resources`` (files and
directories with a kustomization.yaml), ``namespace``, ``images`` (newName/newTag) and ``labels``
(metadata only, no selectors). Anything else in a kustomization is refused, so a manifest change that
needs real kustomize fails the render test instead of rendering wrongly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "labels"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass"}


def render(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomization fields this renderer does not know: {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources.extend(render(path))
        else:
            resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for item in spec.get("labels", []):
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(item["pairs"])
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for resource in resources:
            for container in _containers(resource):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}" if "newTag" in image \
                        else image.get("newName", name)
    return resources


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    spec = resource.get("spec", {})
    if resource["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return spec["template"]["spec"]  # type: ignore[no-any-return]
    if resource["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    pod = pod_spec(resource)
    return [*pod.get("initContainers", []), *pod["containers"]] if pod else []


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return _containers(resource)
