"""HTTP agents against the fake agent service: JSON, streaming (SSE, NDJSON), secrets, and the SSRF guard."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.api import AgentCall, agent_run
from agents.base import AgentSpec
from agents.egress import EgressPolicy, guarded_client
from agents.errors import EgressRefused
from agents.kinds.http import HttpAgent
from tests.agents.fakes import AgentFakes


def call(step_input: dict[str, Any] | None = None, chunks: list[str] | None = None) -> AgentCall:
    return AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1, input=step_input or {},
                     context={}, timeout=5, on_chunk=chunks.append if chunks is not None else None)


def http_agent(url: str, **options: Any) -> HttpAgent:
    return HttpAgent(AgentSpec(name="probe", kind="http", options={"url": url, **options}))


def test_json_in_and_out_with_a_header_from_the_environment(agent_fakes: AgentFakes, monkeypatch: Any) -> None:
    monkeypatch.setenv("FAKE_SERVICE_TOKEN", "s3cret")

    result = agent_run(name="service", call=call({"q": 1}))

    assert result.output == {"echo": {"q": 1}, "token": "s3cret"}


def test_an_sse_stream_feeds_chunks_and_ends_with_its_result(agent_fakes: AgentFakes) -> None:
    chunks: list[str] = []

    result = agent_run(name="service_sse", call=call(chunks=chunks))

    assert chunks == ["one ", "two ", "three"] and result.output == {"n": 3}


def test_an_ndjson_stream_feeds_chunks_and_ends_with_its_output(agent_fakes: AgentFakes) -> None:
    chunks: list[str] = []

    result = agent_run(name="service_ndjson", call=call(chunks=chunks))

    assert chunks == ["one ", "two"] and result.output == {"n": 2}


def test_loopback_is_refused_unless_the_agent_allows_private_addresses(agent_fakes: AgentFakes) -> None:
    with pytest.raises(EgressRefused) as raised:
        agent_run(name="service_guarded", call=call())

    assert raised.value.code == "agent.egress_refused" and "127.0.0.1" in raised.value.message


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "http://[fe80::1]/",
    "http://localhost:9/",
    "http://10.0.0.7/",
    "http://0.0.0.0:9/",
])
def test_private_loopback_and_metadata_addresses_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        http_agent(url).run(call())


def test_the_metadata_address_is_refused_even_with_allow_private() -> None:
    with pytest.raises(EgressRefused) as raised:
        http_agent("http://169.254.169.254/latest/meta-data/", allow_private=True).run(call())

    assert "link-local" in raised.value.message


def test_a_name_that_resolves_to_a_private_address_is_refused(settings: Any) -> None:
    settings.AGENT_HOSTS = {"internal.example.com": "10.20.30.40"}  # what a rebinding DNS answer would say

    with pytest.raises(EgressRefused) as raised:
        http_agent("http://internal.example.com/agent").run(call())

    assert "10.20.30.40" in raised.value.message


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://10.0.0.7/admin",
    "http://localhost:1/",  # allow-listed name, but ::1 / 127.0.0.1 on other ports are not all allowed
    "http://elsewhere.example/",  # not on the allow-list at all
])
def test_a_redirect_to_a_private_or_unlisted_address_is_refused(agent_fakes: AgentFakes, target: str,
                                                                 settings: Any) -> None:
    settings.AGENT_HOSTS = {"localhost": "::1"}

    with pytest.raises(EgressRefused):
        agent_run(name="service_redirect", call=call({"to": target}))


def test_a_redirect_within_the_allowed_service_is_followed(agent_fakes: AgentFakes) -> None:
    result = agent_run(name="service_redirect", call=call({"to": "/svc/json"}))

    assert result.output["echo"] == {"to": "/svc/json"}


class _KeepAlive:
    """An HTTP/1.1 service that keeps connections open, notes each request's (client port, Cookie header)
    and sets a cookie on every answer."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str | None]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append((self.client_address[1], self.headers.get("Cookie")))
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Set-Cookie", f"session=s{len(seen)}; Path=/")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def keep_alive() -> Iterator[_KeepAlive]:
    service = _KeepAlive()
    yield service
    service.server.shutdown()
    service.server.server_close()


def test_an_agents_calls_reuse_one_kept_alive_connection_and_carry_no_cookie(keep_alive: _KeepAlive) -> None:
    agent = http_agent(f"http://127.0.0.1:{keep_alive.port}/agent", allow_private=True)

    outputs = [agent.run(call()).output for _ in range(3)]

    # One TCP connection for the three calls (a client per call opened three), and the cookie the service set
    # on one call (one owner's step) is not sent with the next.
    assert outputs == [{"ok": True}] * 3
    assert len({port for port, _ in keep_alive.seen}) == 1 and [cookie for _, cookie in keep_alive.seen] == [None] * 3


def test_two_names_at_one_address_never_share_a_connection(keep_alive: _KeepAlive, settings: Any) -> None:
    settings.AGENT_HOSTS = {"one.example": "127.0.0.1", "two.example": "127.0.0.1"}
    policy = EgressPolicy(frozenset({f"one.example:{keep_alive.port}", f"two.example:{keep_alive.port}"}),
                          allow_private=True)

    with guarded_client(policy, timeout=5) as client:
        for host in ("one.example", "two.example", "one.example", "two.example"):
            client.post(f"http://{host}:{keep_alive.port}/agent", json={}).raise_for_status()

    # A connection is made for one name and carries only that name's requests: two connections, each reused.
    ports = [port for port, _ in keep_alive.seen]
    assert ports[0] == ports[2] and ports[1] == ports[3] and ports[0] != ports[1]
