"""The web process's ASGI application: Django's, with one fast path for live streams (``live.LiveResponse``)."""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponseBase

from streams.live import LiveResponse


class LiveASGIHandler(ASGIHandler):
    """Django's ASGIHandler; a ``LiveResponse`` sends its chunks through its own ``pump`` (the headers and the
    closing message as Django sends them). Everything else, Django's own path."""

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        if not isinstance(response, LiveResponse):
            await super().send_response(response, send)
            return
        headers = [(str(k).encode("ascii"), str(v).encode("latin1")) for k, v in response.items()]
        headers += [(b"Set-Cookie", c.OutputString().encode("ascii")) for c in response.cookies.values()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await response.pump(send)
        await send({"type": "http.response.body"})
