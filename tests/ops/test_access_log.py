"""uvicorn's access log: one JSON line per request by default, none when the web process is started with
``--no-access-log`` (settings' LOGGING used to give the access logger its handler back after uvicorn had
removed it, so the flag did nothing)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import ARTIFACTS
from tests.ops.web import web_process

pytestmark = pytest.mark.django_db(transaction=True)


def _access_lines(args: tuple[str, ...]) -> list[dict[str, object]]:
    log_path = ARTIFACTS / "ops-web.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    with web_process({}, args=args) as url:
        for _ in range(3):
            assert httpx.get(f"{url}/health/live", timeout=10).status_code == 200
    with open(log_path, "rb") as log:
        log.seek(start)
        lines = [json.loads(line) for line in log.read().decode().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "uvicorn.access"]


@pytest.mark.parametrize(("args", "logged"), [((), 3), (("--no-access-log",), 0)], ids=["default", "off"])
def test_the_access_log_follows_uvicorns_flag(args: tuple[str, ...], logged: int) -> None:
    access = _access_lines(args)

    assert len([line for line in access if line.get("path") == "/health/live"]) == logged
    if logged:
        assert {"method": "GET", "status": 200}.items() <= access[-1].items()
