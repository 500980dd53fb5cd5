"""docs/integrators.md runs as written: every ``sh`` and ``python`` block, in order, against a real uvicorn
process and a real worker (``text`` blocks are shown, not run)."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest
from oauth2_provider.models import Application
from rest_framework.authtoken.models import Token

from integrations import webhooks
from tests.conftest import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]

BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_every_example_of_the_integrator_guide_runs(asgi_server: str, user: Any) -> None:
    token = Token.objects.create(user=user).key
    blocks = BLOCK.findall((ROOT / "docs" / "integrators.md").read_text())
    assert [kind for kind, _ in blocks].count("sh") >= 2 and [k for k, _ in blocks].count("python") >= 5
    app = Application.objects.create(user=user, name="doc", client_type=Application.CLIENT_CONFIDENTIAL,
                                     authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
                                     client_secret="doc-client-secret")
    namespace: dict[str, Any] = {"BASE": asgi_server, "TOKEN": token, "CLIENT_ID": app.client_id,
                                 "CLIENT_SECRET": "doc-client-secret"}

    for kind, code in blocks:
        if kind == "sh":
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", code.rstrip() + " --fail-with-body"],
                                    env={**os.environ, "BASE": asgi_server, "TOKEN": token},
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, (code, result.stdout, result.stderr)
            assert '"error"' not in result.stdout
        else:
            exec(compile(code, "docs/integrators.md", "exec"), namespace)  # noqa: S102 - our own doc

    signed = b'{"id": "d1", "type": "plan.completed"}'
    headers = {"Webhook-Id": "d1", "Webhook-Timestamp": str(int(__import__("time").time()))}
    headers["Webhook-Signature"] = webhooks.sign("whsec_doc", "d1", int(headers["Webhook-Timestamp"]), signed)
    assert namespace["verify_webhook"]("whsec_doc", headers, signed)  # the doc's receiver agrees with ours
    assert not namespace["verify_webhook"]("whsec_doc", headers, signed + b" ")
