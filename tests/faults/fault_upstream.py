"""A fault-injecting OpenAI-compatible upstream with byte-level control: a raw asyncio TCP server
(no web framework between the test and the wire), run as its own process:

    python tests/faults/fault_upstream.py --port N

Every answer closes the connection (`Connection: close`), so one request is one TCP connection and
a fault never leaks into the next request. The behaviour is chosen by the upstream model name
(the route's `upstream_model`), like the built-in mock's:

  ok                 a normal answer (JSON or SSE by `stream`), usage included; n = min(max_tokens, 16) words
  slow:<ms>          wait, then a normal answer
  reset_before       read the request, then reset the connection (RST) before any byte
  reset_mid:<k>      stream: headers + k content events, then RST; JSON: headers + half the body, then RST
  stall_before       read the request, then send nothing, ever
  stall_headers      stream: the 200 SSE headers, then nothing
  stall_mid:<k>      stream: k content events, then nothing
  drip:<ms>          the whole answer (status line included) one byte every <ms>
  drip_tail:<ms>     stream: everything at once but the closing `data: [DONE]`, dripped a byte every <ms>
  nodone:<k>         stream: k content events and the usage chunk, then a clean end without [DONE]
  half:<k>           stream: k content events, then half an event, then a clean end
  badutf8            invalid UTF-8 inside a content string (SSE data or the JSON body), usage included
  huge:<mb>          JSON: a valid answer of about <mb> MB (usage included)
  endless            stream: content events forever
  html               200 with Content-Type: text/html (a page with blank lines), stream or not
  nochoices          200 JSON without `choices` (stream: chunks without choices, then [DONE])
  overusage          a normal answer whose usage claims 10^9 prompt and completion tokens
  usage:<p>:<c>      a normal answer whose usage claims p prompt and c completion tokens (any size)
  words:<k>:<w>      k content events of w words each and no usage at all (stream), or that text (JSON)
  big:<k>            stream: k content events of about 2 KB each (usage claims k tokens), fast
  echo_auth          400 whose JSON error body and `X-Echo-Authorization` header quote the
                     Authorization header it received (stream: 200 and an SSE error event quoting it)
  echo_auth_ok       200, a normal answer whose content and `X-Echo-Authorization` response header
                     quote the Authorization header it received (stream: in a content event)

prompt_tokens = ceil(characters of the message contents / 4), as the built-in mock counts.
GET /_ready answers 200; GET /_log answers the (model, stream) of every chat request so far."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import time

from tokens_forge.mock.upstream import prompt_tokens  # the same token count as the built-in mock

LOG: list[tuple[str, bool]] = []



def head(status: str, ctype: str, *, length: int | None = None, chunked: bool = False,
         extra: tuple[str, ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", "Connection: close", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def ev(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class Answer:
    def __init__(self, body: dict):
        self.body = body
        self.model = str(body.get("model", ""))
        self.stream = bool(body.get("stream"))
        self.n = min(body.get("max_tokens") or body.get("max_completion_tokens") or 16, 16)
        self.pt = prompt_tokens(body)
        self.base = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": self.model}

    def role_event(self) -> bytes:
        return ev({**self.base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}]})

    def content_event(self, i: int) -> bytes:
        return ev({**self.base, "choices": [{"index": 0, "delta": {"content": (" " if i else "") + f"w{i}"},
                                             "finish_reason": None}]})

    def tail_events(self, k: int, *, pt: int | None = None, ct: int | None = None) -> bytes:
        pt = self.pt if pt is None else pt
        ct = k if ct is None else ct
        return (ev({**self.base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                + ev({**self.base, "choices": [],
                      "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}})
                + b"data: [DONE]\n\n")

    def sse(self, *, pt: int | None = None, ct: int | None = None) -> bytes:
        out = self.role_event() + b"".join(self.content_event(i) for i in range(self.n))
        return out + self.tail_events(self.n, pt=pt, ct=ct)

    def json_body(self, *, pt: int | None = None, ct: int | None = None, content: str | None = None) -> bytes:
        pt = self.pt if pt is None else pt
        ct = self.n if ct is None else ct
        text = " ".join(f"w{i}" for i in range(self.n)) if content is None else content
        return json.dumps({"id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()),
                           "model": self.model,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}},
                          separators=(",", ":")).encode()

    def full(self, **kw) -> bytes:
        if self.stream:
            return head("200 OK", "text/event-stream", chunked=True) + chunk(self.sse(**kw)) + LAST_CHUNK
        b = self.json_body(**kw)
        return head("200 OK", "application/json", length=len(b)) + b


def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def until_peer_closes(reader: asyncio.StreamReader, seconds: float = 3600) -> None:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except (TimeoutError, OSError):
        pass


async def serve_chat(body: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    a = Answer(body)
    name, _, arg = a.model.partition(":")
    LOG.append((a.model, a.stream))
    w = writer.write

    if name == "ok":
        w(a.full())
    elif name == "slow":
        await asyncio.sleep(int(arg) / 1000)
        w(a.full())
    elif name == "reset_before":
        reset(writer)
        return
    elif name == "reset_mid":
        if a.stream:
            w(head("200 OK", "text/event-stream", chunked=True))
            w(chunk(a.role_event() + b"".join(a.content_event(i) for i in range(int(arg or 3)))))
        else:
            b = a.json_body()
            w(head("200 OK", "application/json", length=len(b)) + b[: len(b) // 2])
        await writer.drain()
        await asyncio.sleep(0.2)
        reset(writer)
        return
    elif name == "stall_before":
        await until_peer_closes(reader)
    elif name == "stall_headers":
        w(head("200 OK", "text/event-stream", chunked=True))
        await writer.drain()
        await until_peer_closes(reader)
    elif name == "stall_mid":
        w(head("200 OK", "text/event-stream", chunked=True))
        w(chunk(a.role_event() + b"".join(a.content_event(i) for i in range(int(arg or 3)))))
        await writer.drain()
        await until_peer_closes(reader)
    elif name == "drip":
        data = a.full()
        for i in range(len(data)):
            w(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(int(arg) / 1000)
    elif name == "drip_tail":
        events = a.role_event() + b"".join(a.content_event(i) for i in range(a.n)) + a.tail_events(a.n)
        rest = b"data: [DONE]\n\n"
        w(head("200 OK", "text/event-stream", chunked=True) + chunk(events[: -len(rest)]))
        await writer.drain()
        for i in range(len(rest)):
            w(chunk(rest[i : i + 1]))
            await writer.drain()
            await asyncio.sleep(int(arg) / 1000)
        w(LAST_CHUNK)
    elif name == "nodone":
        k = int(arg or 3)
        events = a.role_event() + b"".join(a.content_event(i) for i in range(k))
        events += a.tail_events(k).replace(b"data: [DONE]\n\n", b"")
        w(head("200 OK", "text/event-stream", chunked=True) + chunk(events) + LAST_CHUNK)
    elif name == "half":
        k = int(arg or 3)
        events = a.role_event() + b"".join(a.content_event(i) for i in range(k))
        half = a.content_event(k)
        w(head("200 OK", "text/event-stream", chunked=True) + chunk(events) + chunk(half[: len(half) // 2])
          + LAST_CHUNK)
    elif name == "badutf8":
        bad = b"\xff\xfe\xc3\x28 \xed\xa0\x80 w"
        if a.stream:
            events = a.role_event()
            for _ in range(a.n):
                events += b'data: {"id":"chatcmpl-fault","object":"chat.completion.chunk","choices":[{"index":0,' \
                          b'"delta":{"content":"' + bad + b'"},"finish_reason":null}]}\n\n'
            events += a.tail_events(a.n)
            w(head("200 OK", "text/event-stream", chunked=True) + chunk(events) + LAST_CHUNK)
        else:
            b = a.json_body(content="PLACEHOLDER").replace(b"PLACEHOLDER", bad)
            w(head("200 OK", "application/json", length=len(b)) + b)
    elif name == "huge":
        size = int(float(arg or 50) * 1024 * 1024)
        b = a.json_body(content="x" * size)
        w(head("200 OK", "application/json", length=len(b)))
        for i in range(0, len(b), 1 << 20):
            w(b[i : i + (1 << 20)])
            await writer.drain()
    elif name == "endless":
        w(head("200 OK", "text/event-stream", chunked=True) + chunk(a.role_event()))
        block = b"".join(a.content_event(i + 1) for i in range(200))
        try:
            async with asyncio.timeout(600):
                while True:
                    w(chunk(block))
                    await writer.drain()
        except (TimeoutError, OSError):
            pass
        writer.transport.abort()
        return
    elif name == "html":
        page = (b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n\n<body>\n\n"
                b"<h1>Bad Gateway</h1>\n\n<p>upstream is having a day</p>\n\n</body>\n</html>\n")
        w(head("200 OK", "text/html; charset=utf-8", length=len(page)) + page)
    elif name == "nochoices":
        if a.stream:
            events = ev({"id": "x", "object": "chat.completion.chunk"}) * 3 + b"data: [DONE]\n\n"
            w(head("200 OK", "text/event-stream", chunked=True) + chunk(events) + LAST_CHUNK)
        else:
            b = json.dumps({"id": "x", "object": "chat.completion", "model": a.model,
                            "usage": {"prompt_tokens": a.pt, "completion_tokens": 1, "total_tokens": a.pt + 1}}).encode()
            w(head("200 OK", "application/json", length=len(b)) + b)
    elif name == "overusage":
        w(a.full(pt=10**9, ct=10**9))
    elif name == "usage":
        pt, _, ct = arg.partition(":")
        w(a.full(pt=int(pt), ct=int(ct)))
    elif name == "words":
        k, _, per = arg.partition(":")
        pieces = [" ".join(f"word{i}x{j}" for j in range(int(per))) + " " for i in range(int(k))]
        if a.stream:
            events = a.role_event() + b"".join(
                ev({**a.base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
                for p in pieces)
            events += ev({**a.base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            w(head("200 OK", "text/event-stream", chunked=True) + chunk(events + b"data: [DONE]\n\n") + LAST_CHUNK)
        else:
            b = json.loads(a.json_body(content="".join(pieces)))
            del b["usage"]
            b = json.dumps(b).encode()
            w(head("200 OK", "application/json", length=len(b)) + b)
    elif name == "big":
        k = int(arg)
        text = " ".join(["lorem"] * 340)  # ~2 KB, 340 words
        w(head("200 OK", "text/event-stream", chunked=True) + chunk(a.role_event()))
        for _ in range(k):
            w(chunk(ev({**a.base, "choices": [{"index": 0, "delta": {"content": text + " "},
                                               "finish_reason": None}]})))
            await writer.drain()
        w(chunk(a.tail_events(k, ct=k)) + LAST_CHUNK)
    elif name == "echo_auth":
        auth = body.get("__auth__", "")
        err = {"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_request_error",
                         "code": "invalid_api_key", "param": None}}
        if a.stream:
            data = a.role_event() + ev(err) + b"data: [DONE]\n\n"
            w(head("200 OK", "text/event-stream", chunked=True) + chunk(data) + LAST_CHUNK)
        else:
            b = json.dumps(err).encode()
            w(head("400 Bad Request", "application/json", length=len(b), extra=(f"X-Echo-Authorization: {auth}",))
              + b)
    elif name == "echo_auth_ok":
        auth = body.get("__auth__", "")
        echo = (f"X-Echo-Authorization: {auth}",)
        if a.stream:
            said = ev({**a.base, "choices": [{"index": 0, "delta": {"content": f"you sent {auth}"},
                                              "finish_reason": None}]})
            data = a.role_event() + said + a.tail_events(1)
            w(head("200 OK", "text/event-stream", chunked=True, extra=echo) + chunk(data) + LAST_CHUNK)
        else:
            b = a.json_body(content=f"you sent {auth}")
            w(head("200 OK", "application/json", length=len(b), extra=echo) + b)
    else:
        b = json.dumps({"error": {"message": f"fault upstream: unknown model {a.model}"}}).encode()
        w(head("404 Not Found", "application/json", length=len(b)) + b)
    try:
        await writer.drain()
    except OSError:
        return
    writer.close()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, _, v = ln.partition(":")
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length") or 0)
        data = await reader.readexactly(length) if length else b""
        if method == "GET" and path in ("/_ready", "/_log"):
            b = json.dumps({"ok": True} if path == "/_ready" else {"log": LOG}).encode()
            writer.write(head("200 OK", "application/json", length=len(b)) + b)
            await writer.drain()
            writer.close()
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            writer.write(head("404 Not Found", "text/plain", length=0))
            await writer.drain()
            writer.close()
            return
        body = json.loads(data)
        body["__auth__"] = headers.get("authorization", "")
        await serve_chat(body, reader, writer)
    except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.LimitOverrunError):
        writer.transport.abort()
    except Exception:  # a broken test request: answer something, never crash the server
        try:
            writer.write(head("500 Internal Server Error", "text/plain", length=0))
            await writer.drain()
        except OSError:
            pass
        writer.transport.abort()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(handle, host, port, limit=1 << 20, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    asyncio.run(main(args.host, args.port))
