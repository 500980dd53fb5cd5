"""The web process's ASGI application: Django's, with two fast paths.

* A sync view (the whole REST API, the admin) is served by Django's handler in sync mode, on a pool of
  ``WEB_THREADS`` threads, in one hop from the event loop. Django's ASGI path would run the middleware chain
  in async mode, where every sync middleware method is its own hop to the single thread-sensitive thread:
  more than a dozen thread switches per request, and one request at a time per process; and its
  ``request_started`` / ``request_finished`` receivers would each start and join a thread per request. Here
  they run in the pool thread too. Async views (the health checks, ``/orchestrate``'s waits) keep Django's
  async path.
* A ``LiveResponse`` (a live stream) sends its chunks through its own ``pump``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from functools import lru_cache
from typing import Any, cast

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase
from django.urls import Resolver404, resolve, set_script_prefix

from streams.live import LiveResponse


class _Sent(Exception):
    """The response went out: ends the disconnect watch."""


@lru_cache(maxsize=4096)
def _sync_view(path: str) -> bool:
    """Does ``path`` go to a sync view? (An unknown path answers Django's 404, a sync answer.)"""
    try:
        return not iscoroutinefunction(resolve(path).func)
    except Resolver404:
        return True


def _path_info(scope: dict[str, Any]) -> str:
    """The request's path below the script prefix, as ``ASGIRequest`` computes it."""
    path, prefix = scope["path"], get_script_prefix(scope).rstrip("/")
    return path[len(prefix):] if prefix and (path.startswith(prefix + "/") or path == prefix) else path


class LiveASGIHandler(ASGIHandler):
    """Django's ASGIHandler (reading the body, the disconnect watch, sending, closing), with the fast paths
    above."""

    def __init__(self) -> None:
        super().__init__()
        self._sync = BaseHandler()
        self._sync.load_middleware(is_async=False)
        self._threads = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="web")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _sync_view(_path_info(scope)):
            await self._handle_sync(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _handle_sync(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``handle`` for a sync view, but what it does in sync code (the request_started signal,
        building the request, the middleware and view, closing the response) runs in this process's pool, one
        hop each way. Django's own path runs each sync signal receiver through a thread-sensitive context that
        starts and joins a new thread per request: that alone was a third of a trivial request's CPU."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        with closing(body_file):
            response = await loop.run_in_executor(self._threads, self._respond, scope, body_file)
            try:
                async with asyncio.TaskGroup() as tasks:  # a client that leaves ends a live stream's pump
                    tasks.create_task(self.listen_for_disconnect(receive))
                    await self.send_response(response, send)
                    raise _Sent
            except BaseExceptionGroup as group:  # as Django's handle: one error is raised as itself
                rest = group.split((_Sent, RequestAborted))[1]
                if rest is not None:
                    raise (rest.exceptions[0] if len(rest.exceptions) == 1 else rest) from None
            finally:
                if response.streaming:  # a rendered response was closed in its thread
                    await loop.run_in_executor(self._threads, response.close)

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        # What request_started and request_finished do for the database, in the thread that uses it: a
        # connection unusable or past its age is dropped before, and this thread's connection goes back to the
        # pool as soon as the response is built (a live stream holds none while it runs).
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        try:
            request, error = self.create_request(scope, body_file)
            response = cast(HttpResponseBase, self._sync.get_response(request) if request is not None else error)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
            if not response.streaming:
                response.close()  # request_finished: its content is built, nothing is left to release later
            return response
        finally:
            close_old_connections()

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        if not isinstance(response, LiveResponse):
            await super().send_response(response, send)
            return
        headers = [(str(k).encode("ascii"), str(v).encode("latin1")) for k, v in response.items()]
        headers += [(b"Set-Cookie", c.OutputString().encode("ascii")) for c in response.cookies.values()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await response.pump(send)
        await send({"type": "http.response.body"})
