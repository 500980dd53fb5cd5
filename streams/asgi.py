"""The web process's ASGI application: Django's, with two fast paths.

* A sync view (the whole REST API, the admin) is served by Django's handler in sync mode, on a pool of
  ``WEB_THREADS`` threads, in one hop from the event loop. Django's ASGI path would run the middleware chain
  in async mode, where every sync middleware method is its own hop to the single thread-sensitive thread:
  more than a dozen thread switches per request, and one request at a time per process. Async views (the
  health checks, ``/orchestrate``'s waits) keep Django's async path.
* A ``LiveResponse`` (a live stream) sends its chunks through its own ``pump``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

from streams.live import LiveResponse


@lru_cache(maxsize=4096)
def _sync_view(path: str) -> bool:
    """Does ``path`` go to a sync view? (An unknown path answers Django's 404, a sync answer.)"""
    try:
        return not iscoroutinefunction(resolve(path).func)
    except Resolver404:
        return True


class LiveASGIHandler(ASGIHandler):
    """Django's ASGIHandler (reading the body, the disconnect watch, sending, closing), with the fast paths
    above."""

    def __init__(self) -> None:
        super().__init__()
        self._sync = BaseHandler()
        self._sync.load_middleware(is_async=False)
        self._threads = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="web")

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        if not _sync_view(request.path_info):
            return await super().run_get_response(request)
        response = await asyncio.get_running_loop().run_in_executor(self._threads, self._respond, request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response

    def _respond(self, request: HttpRequest) -> HttpResponseBase:
        # What request_started and request_finished do for the database, in the thread that uses it: a
        # connection unusable or past its age is dropped before, and this thread's connection goes back to the
        # pool as soon as the response is built (a live stream holds none while it runs).
        close_old_connections()
        try:
            return self._sync.get_response(request)
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
