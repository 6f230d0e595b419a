"""The HTTP/1.1 protocol `tokens-forge serve` runs: uvicorn's httptools protocol with a deadline
for the request headers (TF_HEADER_TIMEOUT_S).

uvicorn's protocol has none: a connection that sends half its headers, or nothing at all, is held
open for ever, and a few thousand of them exhaust the worker's file descriptors (slowloris). The
deadline runs while the connection waits for a request's headers: from the moment it is accepted,
and again each time a response completes; it stops when the headers are complete. A request whose
headers arrived is never touched by it: a slow body, a long stream, a slow reader."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokens_forge.config import get_settings

_SAID = b"the request headers did not arrive in time\n"
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                   b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_SAID), _SAID))


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """`uvicorn --http tokens_forge.http_protocol:HeaderTimeoutProtocol`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = False  # bytes of the awaited request have arrived (a partial request)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            self._header_bytes = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a queued request's headers are complete already
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_bytes = False
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        # A 408 only to a client that started a request: on an idle keep-alive connection an
        # unasked-for answer could be read as the answer to a request crossing it on the wire.
        if self._header_bytes:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
