"""A real OpenAI-compatible chat-completions server for tests: a stdlib HTTP server on a free port.

Not a mock of litellm: litellm (and whatever HTTP client it uses) talks to
this server over TCP exactly as it would talk to vLLM, llama.cpp's server,
Ollama or LM Studio.  Each scenario scripts the answers, in order::

    with LLMServer([tool("find_nodes", {...}), reply("done")]) as srv:
        ... --api-base srv.base_url ...
    srv.requests   # the JSON bodies litellm sent, in order

An answer is one of:

- :func:`reply` — a chat completion with text and/or tool calls (streamed as
  server-sent events when the request asks for ``stream``);
- :func:`http_error` — any status, body and headers (500, 429 + retry-after);
- :func:`stall` — accept the request and answer nothing for ``seconds``;
- :func:`raw` — a 200 whose body is whatever bytes you give (malformed JSON).

When the script runs out the server answers with ``brain`` (a function of the
request body), by default a 500 saying the script is exhausted.
:func:`offline_brain` answers like an LLM that runs CloudiSENSE's offline rules
planner, so a whole evaluation set can run over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Answer:
    status: int = 200
    body: Any = None          # dict → JSON; bytes → as is
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0        # seconds to hold the request before answering (or forever: then no answer)
    content: str | None = None
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)


def reply(content: str | None = None, *calls: tuple[str, Any]) -> Answer:
    """A completion: ``reply("text")`` or ``reply(None, ("call", {...}), ...)``."""
    return Answer(content=content, tool_calls=list(calls))


def tool(name: str, args: Any) -> Answer:
    """One tool call; ``args`` a dict, or a string sent as is (malformed arguments)."""
    return reply(None, (name, args))


def http_error(status: int, message: str = "error", headers: dict[str, str] | None = None) -> Answer:
    return Answer(status=status, body={"error": {"message": message, "type": "server_error", "code": status}},
                  headers=headers or {})


def stall(seconds: float = 3600.0, then: Answer | None = None) -> Answer:
    """Hold the request ``seconds`` (released when the server closes), then answer ``then`` (or 504)."""
    a = then or http_error(504, "stalled")
    return Answer(status=a.status, body=a.body, headers=a.headers, stall=seconds, content=a.content,
                  tool_calls=a.tool_calls)


def raw(body: bytes, status: int = 200) -> Answer:
    return Answer(status=status, body=body, headers={"content-type": "application/json"})


def _completion(model: str, a: Answer) -> dict[str, Any]:
    calls = [{"id": f"call_{i}_{uuid.uuid4().hex[:6]}", "type": "function",
              "function": {"name": n, "arguments": args if isinstance(args, str) else json.dumps(args)}}
             for i, (n, args) in enumerate(a.tool_calls)]
    msg: dict[str, Any] = {"role": "assistant", "content": a.content}
    if calls:
        msg["tool_calls"] = calls
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:10]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": msg,
                                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def _chunks(model: str, a: Answer) -> list[dict[str, Any]]:
    """The same completion as streamed chunks: text in small pieces, each tool call in two parts."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:10]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    text = a.content or ""
    for i in range(0, len(text), 7):
        out.append(chunk({"content": text[i:i + 7]}))
    for i, (n, args) in enumerate(a.tool_calls):
        s = args if isinstance(args, str) else json.dumps(args)
        half = len(s) // 2
        out.append(chunk({"tool_calls": [{"index": i, "id": f"call_{i}_{uuid.uuid4().hex[:6]}", "type": "function",
                                          "function": {"name": n, "arguments": s[:half]}}]}))
        out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": s[half:]}}]}))
    out.append(chunk({}, "tool_calls" if a.tool_calls else "stop"))
    return out


class LLMServer:
    """The server, its thread, the script and what was asked.  A context manager; ``close()`` is idempotent."""

    def __init__(self, script: list[Answer] | None = None, *,
                 brain: Callable[[dict[str, Any]], Answer] | None = None) -> None:
        self.script = list(script or [])
        self.brain = brain or (lambda body: http_error(500, "the test script has no more answers"))
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answered = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - /v1/models, as some clients probe it
                self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                data = self.rfile.read(n)
                try:
                    body = json.loads(data or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "request body is not JSON"}})
                    return
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    a = server.script.pop(0) if server.script else None
                if a is None:
                    a = server.brain(body)
                if a.stall:
                    if server._closing.wait(a.stall):
                        self.close_connection = True
                        return
                model = body.get("model", "test-model")
                if a.body is not None or a.status != 200:
                    self._send(a.status, a.body if a.body is not None else {}, a.headers)
                elif body.get("stream"):
                    self._stream(_chunks(model, a))
                else:
                    self._send(200, _completion(model, a), a.headers)
                with server._lock:
                    server.answered += 1

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                hs = {"content-type": "application/json", **(headers or {})}
                for k, v in hs.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, chunks: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                for c in chunks:
                    self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"llm-server:{self.port}",
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        if not self._closing.is_set():
            self._closing.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)

    def __enter__(self) -> LLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def offline_brain(body: dict[str, Any], view: Any = None) -> Answer:
    """Answer the way an LLM running CloudiSENSE's offline planner would.  The parser reads the cluster up
    front (an LLM would ask the tools): ``view`` is the cluster it plans on; without one it refuses."""
    from cloudisense.agent import OfflineModel

    model = OfflineModel()
    if view is not None:
        model.bind_view(view)
    r = asyncio.run(model.complete(body.get("messages", []), body.get("tools", [])))
    return Answer(content=r.content, tool_calls=[(c.name, c.arguments) for c in r.tool_calls])


def eval_brain(set_dir: Any) -> Callable[[dict[str, Any]], Answer]:
    """:func:`offline_brain` for a whole eval set run in order (``cloudisense eval``): each new conversation
    is the next case of the set, and the brain plans on that case's snapshot, as the node's tools would show it."""
    from cloudisense.agent._eval import load_eval_set
    from cloudisense.agent._messages import request_of
    from cloudisense.tools import FakeCluster, Toolbox

    cases, snaps = load_eval_set(set_dir)
    queue = list(cases)
    current: dict[str, Any] = {}

    def brain(body: dict[str, Any]) -> Answer:
        messages = body.get("messages", [])
        if not any(m.get("role") == "assistant" for m in messages):   # a new conversation: the next case
            request = request_of(messages) or ""
            while queue:
                case = queue.pop(0)
                if case.request == request:
                    fake = FakeCluster.from_snapshot(snaps[case.snapshot])
                    current["view"] = asyncio.run(Toolbox(fake).view())
                    break
            else:
                current.pop("view", None)
        return offline_brain(body, current.get("view"))

    return brain
