"""The SSRF guard's gaps found by a hostile integrator: IPv4 hidden in IPv6, redirects to another port of
the agent's host, and secret headers following a redirect to another origin."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import pytest

from agents.api import AgentCall
from agents.base import AgentSpec
from agents.egress import EgressPolicy
from agents.errors import EgressRefused
from agents.kinds.http import HttpAgent
from tests.agents.fakes import AgentFakes
from tests.fakes import FakeServer


def call(step_input: dict[str, Any]) -> AgentCall:
    return AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1, input=step_input,
                     context={}, timeout=5)


@pytest.mark.parametrize("address", [
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (metadata)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::a00:7",  # local-use NAT64 of 10.0.0.7
    "::127.0.0.1",  # IPv4-compatible
    "::a9fe:a9fe",  # IPv4-compatible metadata
    "::ffff:169.254.169.254",  # IPv4-mapped
    "2002:a9fe:a9fe::1",  # 6to4 of the metadata address
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
])
def test_an_ipv4_inside_an_ipv6_address_is_judged_as_that_ipv4(address: str) -> None:
    policy = EgressPolicy.for_agent("a", "https://agent.example.com/", {})

    with pytest.raises(EgressRefused):
        policy.check_address("agent.example.com", ipaddress.ip_address(address))


def test_a_public_ipv4_behind_nat64_still_passes() -> None:
    policy = EgressPolicy.for_agent("a", "https://agent.example.com/", {})

    policy.check_address("agent.example.com", ipaddress.ip_address("64:ff9b::808:808"))  # 8.8.8.8


def test_a_redirect_to_another_port_of_the_agents_host_is_refused(agent_fakes: AgentFakes,
                                                                  fake_server: FakeServer) -> None:
    agent = HttpAgent(AgentSpec(name="probe", kind="http", options={
        "url": f"{agent_fakes.url}/svc/redirect", "allow_private": ["127.0.0.1/32"]}))

    with pytest.raises(EgressRefused) as raised:
        agent.run(call({"to": f"http://127.0.0.1:{fake_server.port}/agent"}))

    assert "port" in raised.value.message


def _agent_with_secret(agent_fakes: AgentFakes) -> HttpAgent:
    port = agent_fakes.url.rsplit(":", 1)[1]
    return HttpAgent(AgentSpec(name="probe", kind="http", options={
        "url": f"{agent_fakes.url}/svc/redirect", "allow_private": ["127.0.0.1/32"],
        "allowed_hosts": [f"localhost:{port}"], "header_env": {"X-Service-Token": "FAKE_SERVICE_TOKEN"}}))


def test_secret_headers_never_follow_a_redirect_to_another_origin(agent_fakes: AgentFakes, monkeypatch: Any,
                                                                 settings: Any) -> None:
    monkeypatch.setenv("FAKE_SERVICE_TOKEN", "s3cret")
    settings.AGENT_HOSTS = {"localhost": "127.0.0.1"}
    port = agent_fakes.url.rsplit(":", 1)[1]

    elsewhere = _agent_with_secret(agent_fakes).run(call({"to": f"http://localhost:{port}/svc/json"}))
    same = _agent_with_secret(agent_fakes).run(call({"to": "/svc/json"}))

    assert elsewhere.output["token"] == ""  # reached, without the secret
    assert same.output["token"] == "s3cret"  # the agent's own origin keeps it


def test_the_tls_context_is_built_once_when_many_threads_ask_at_once(monkeypatch: Any) -> None:
    """A worker's first burst asks for it from every thread at once; each build loads the CA bundle."""
    import threading

    import httpx

    from agents import egress

    built: list[object] = []
    real = httpx.create_ssl_context

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(None)
        return real(*args, **kwargs)

    monkeypatch.setattr(egress, "_tls", None)
    monkeypatch.setattr(httpx, "create_ssl_context", counted)
    start, got = threading.Barrier(16), []
    threads = [threading.Thread(target=lambda: (start.wait(), got.append(egress.ssl_context()))) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 16 and len({id(context) for context in got}) == 1 and len(built) == 1
