"""The SSRF guard for outgoing agent calls: which hosts and addresses an agent may reach.

A request may go only to an allow-listed host name (the agent's own URL's host, its ``allowed_hosts``,
settings.AGENT_ALLOWED_HOSTS; ``*`` there means any host). The name is resolved here, every address it
resolves to is checked, and the connection goes to the checked address (the URL's host is replaced by
it; the Host header and TLS SNI keep the name), so a second, different DNS answer cannot slip past.
Redirects are followed by httpx through the same transport, so every hop is checked the same way; a hop
to the agent's own host must keep its port (another allowed host: its scheme's default port), and the
agent's configured headers (``headers``, ``header_env``), ``Authorization`` and ``Cookie`` are sent to the
agent's own origin only, never after a redirect to another.

Addresses that are not public (loopback, private, CGNAT, unspecified, multicast, reserved) are refused
unless the agent says ``allow_private: true`` or lists their network (``allow_private: [10.1.0.0/16]``,
settings.AGENT_PRIVATE_NETWORKS). Link-local addresses (169.254.0.0/16 with the cloud metadata service,
fe80::/10) are refused even with ``allow_private: true``: only a listed network lets them through. An IPv6
address that carries an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16,
Teredo) is judged as that IPv4 as well.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import httpx
from django.conf import settings

from agents.errors import AgentConfigError, EgressRefused

log = logging.getLogger("agents")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# IPv6 forms that carry an IPv4 address inside (judged as that IPv4): NAT64 (RFC 6052 well-known prefix and
# RFC 8215 local-use), and, below, IPv4-mapped, IPv4-compatible, 6to4 and Teredo.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries (NAT64, 6to4, IPv4-mapped/compatible, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if any(address in network for network in _NAT64):
        found.append(low32)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (not :: or ::1)
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client)
    return found


@dataclass(frozen=True)
class EgressPolicy:
    hosts: frozenset[str]
    networks: tuple[IpNetwork, ...] = ()
    allow_private: bool = False
    # (scheme, host, port) of the agent's own URL: a redirect to the same host must keep its port, and headers
    # named in ``secret_headers`` are sent to this origin only (never after a redirect to another).
    origin: tuple[str, str, int] | None = None
    secret_headers: frozenset[str] = frozenset({"authorization", "cookie", "proxy-authorization"})

    @classmethod
    def for_agent(cls, name: str, url: str, options: dict[str, Any]) -> EgressPolicy:
        """The policy of one agent from its options and the settings. Raises AgentConfigError."""
        host = httpx.URL(url).host.lower()
        hosts = {host, *(h.lower() for h in options.get("allowed_hosts") or ()),
                 *(h.lower() for h in settings.AGENT_ALLOWED_HOSTS)}
        allow = options.get("allow_private", False)
        listed = list(settings.AGENT_PRIVATE_NETWORKS) + (list(allow) if isinstance(allow, list) else [])
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in listed)
        except ValueError as exc:
            raise AgentConfigError(f"agent {name!r}: bad network in allow_private: {exc}") from exc
        parsed = httpx.URL(url)
        origin = (parsed.scheme, host, parsed.port or _default_port(parsed.scheme))
        secret = {h.lower() for h in (options.get("header_env") or {})} | {
            h.lower() for h in (options.get("headers") or {})}
        return cls(frozenset(hosts), networks, allow is True, origin,
                   frozenset(secret) | cls.secret_headers)

    def check_host(self, host: str) -> None:
        host = host.lower()
        if "*" in self.hosts or host in self.hosts or any(h.rsplit(":", 1)[0] == host for h in self.hosts):
            return
        raise EgressRefused(f"host {host!r} is not on the agent's allow-list")

    def check_port(self, scheme: str, host: str, port: int) -> None:
        """The agent's own host only on its own port; any other allowed host only on its scheme's default."""
        if self.origin is None:
            return
        if host.lower() == self.origin[1]:
            if port != self.origin[2]:
                raise EgressRefused(f"{host}:{port} is not the agent's port ({self.origin[2]})")
        elif port != _default_port(scheme) and f"{host.lower()}:{port}" not in self.hosts:
            raise EgressRefused(f"{host}:{port}: another host only on {scheme}'s default port, or as "
                                "'host:port' in allowed_hosts")

    def same_origin(self, scheme: str, host: str, port: int) -> bool:
        return self.origin == (scheme, host.lower(), port)

    def check_address(self, host: str, address: IpAddress) -> None:
        """Raises EgressRefused unless ``address`` is public or explicitly allowed; an IPv6 address that
        carries an IPv4 address (NAT64, 6to4, mapped, compatible, Teredo) must pass as that IPv4 too."""
        if isinstance(address, ipaddress.IPv6Address):
            for inner in embedded_ipv4(address):
                self.check_address(host, inner)
            if address.ipv4_mapped is not None:
                return  # judged as its IPv4 above
        if address.is_global and not address.is_multicast:
            return
        if any(address in network for network in self.networks):
            return
        if self.allow_private and not address.is_link_local:
            return
        kind = "link-local (cloud metadata)" if address.is_link_local else "private or loopback"
        raise EgressRefused(f"{host!r} resolves to {address}, a {kind} address the agent may not reach")


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address ``host`` resolves to: an IP literal as is, settings.AGENT_HOSTS (static
    name -> address pins, like curl's --resolve), else the system resolver. Raises EgressRefused."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    pinned = settings.AGENT_HOSTS.get(host.lower().rstrip("."))
    if pinned:
        return [ipaddress.ip_address(pinned)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise EgressRefused(f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def checked_address(policy: EgressPolicy, host: str, port: int) -> IpAddress:
    """The address to connect to: every address of ``host`` must pass, the first is used."""
    policy.check_host(host)
    addresses = resolve(host, port)
    for address in addresses:
        policy.check_address(host, address)
    return addresses[0]


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that connects only to addresses the policy allows (see the module doc).

    Connections are kept alive and reused, in one pool per host name: a connection is made to the address
    checked for one name (and, over TLS, verified for that name), so it only ever carries that name's
    requests, never another name's that happens to resolve to the same address."""

    MAX_HOSTS = 32  # pools kept; past that the oldest is dropped (its idle connections close when collected)

    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        self.policy = policy
        self._kwargs = kwargs
        self._pools: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _pool(self, host: str) -> httpx.HTTPTransport:
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                if len(self._pools) >= self.MAX_HOSTS:
                    del self._pools[next(iter(self._pools))]  # not closed: another thread may be using it
                pool = self._pools[host] = httpx.HTTPTransport(**self._kwargs)
            return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise EgressRefused(f"scheme {url.scheme!r} is not allowed")
        port = url.port or _default_port(url.scheme)
        try:
            self.policy.check_port(url.scheme, url.host, port)
            address = checked_address(self.policy, url.host, port)
        except EgressRefused as exc:
            log.warning("agents.egress.refused", extra={"url": str(url), "reason": exc.message})
            raise
        headers = request.headers
        if not self.policy.same_origin(url.scheme, url.host, port):  # a redirect elsewhere: no secrets
            headers = httpx.Headers([(k, v) for k, v in request.headers.multi_items()
                                     if k.lower() not in self.policy.secret_headers])
        # A copy aimed at the checked address: the caller's request keeps its URL, so httpx resolves a
        # relative redirect against the name, and the next hop is checked by name again.
        extensions = {**request.extensions, **({"sni_hostname": url.host} if url.scheme == "https" else {})}
        pinned = httpx.Request(request.method, url.copy_with(host=str(address)), headers=headers,
                               stream=request.stream, extensions=extensions)
        return self._pool(url.host.lower()).handle_request(pinned)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


_tls: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """One TLS context for every agent call: building one loads the CA bundle (~15-50 ms of CPU), far more than
    a call's own work. Built once, under a lock: a worker's first burst asks for it from every thread at once
    (``functools.cache`` would let each of them build its own). An SSLContext is safe to share between threads."""
    global _tls
    if _tls is None:
        with _tls_lock:
            if _tls is None:
                _tls = httpx.create_ssl_context()
    return _tls


def guarded_client(policy: EgressPolicy, *, timeout: float, headers: dict[str, str] | None = None,
                   max_redirects: int = 5) -> httpx.Client:
    """An httpx client whose every request and redirect hop passes the SSRF guard."""
    return httpx.Client(transport=GuardedTransport(policy, verify=ssl_context()), timeout=timeout,
                        headers=headers, follow_redirects=True, max_redirects=max_redirects)


class KeptClient:
    """An httpx client per thread, built on the thread's first call and kept, so that an agent's calls reuse
    their connections: no TCP and TLS handshake, nor a client and its pool built, per call (a worker's
    threads are long-lived). Per thread rather than one for all: httpcore 1.0.9's pool, shared by many
    threads, polls each of its idle connections on every request (with 200 threads calling at once, 13 ms of
    a worker's CPU per call instead of 5) and can close a connection it has just handed to a waiting request
    (encode/httpcore#1110). A forked child builds its own. It keeps no cookies: a cookie one call was given
    (one owner's step) is never sent with another's."""

    def __init__(self, build: Callable[[], httpx.Client]) -> None:
        self._build = build
        self._local = threading.local()

    def get(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None or self._local.pid != os.getpid():
            client = self._build()
            client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            self._local.client, self._local.pid = client, os.getpid()
        return client


def webhook_policy(url: str) -> EgressPolicy:
    """The guard for a webhook (an integrator's endpoint, an approval escalation): any public host, on the
    URL's own origin; private and loopback networks only if listed in settings.WEBHOOK_PRIVATE_NETWORKS;
    never link-local (cloud metadata) unless listed. Raises EgressRefused for a URL that is not http(s)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise EgressRefused(f"a webhook must be an http(s) URL, not {url[:100]!r}")
    try:
        networks = tuple(ipaddress.ip_network(n, strict=False)
                         for n in getattr(settings, "WEBHOOK_PRIVATE_NETWORKS", []))
    except ValueError as exc:
        raise EgressRefused(f"bad network in WEBHOOK_PRIVATE_NETWORKS: {exc}") from exc
    host = parsed.host.lower()
    return EgressPolicy(frozenset({host}), networks, False,
                        (parsed.scheme, host, parsed.port or _default_port(parsed.scheme)))


def webhook_check(url: str) -> None:
    """Refuse (EgressRefused) a webhook URL whose host resolves to an address the guard would not reach."""
    policy = webhook_policy(url)
    parsed = httpx.URL(url)
    checked_address(policy, parsed.host, parsed.port or _default_port(parsed.scheme))

