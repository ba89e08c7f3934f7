"""A stand-in for an SMS/voice provider on a loopback port (http.server in a thread): it checks
each request against the documented shape (Twilio's 2010-04-01 Messages and Calls API with basic
auth and TwiML, or the generic webhook's JSON with its auth header), records it, and answers
what the test asks for: success, a provider error, a server error or no answer in time."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from defusedxml import ElementTree

SID = "AC" + "0" * 32
TOKEN = "test-auth-token"
FROM = "+815012345678"
WEBHOOK_AUTH = "Bearer local-provider-key"


@dataclass
class Provider:
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # requests that broke the documented shape
    answers: list[tuple[int, dict[str, Any] | None, float]] = field(
        default_factory=list
    )  # queued (status, body, delay)

    def answer(self, status: int, body: dict[str, Any] | None = None, delay: float = 0.0) -> None:
        self.answers.append((status, body, delay))

    def texts(self) -> list[str]:
        return [str(r.get("Body") or r.get("message") or r.get("Twiml")) for r in self.requests]


def _twilio_problem(path: str, headers: Any, form: dict[str, str]) -> str | None:
    auth = headers.get("Authorization", "")
    if auth != "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode():
        return f"basic auth missing or wrong: {auth!r}"
    if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        return "Twilio takes form-encoded parameters"
    base = f"/2010-04-01/Accounts/{SID}/"
    if form.get("From") != FROM or not form.get("To", "").startswith("+"):
        return f"From/To wrong: {form}"
    if path == base + "Messages.json":
        return None if form.get("Body") else "Messages needs Body"
    if path == base + "Calls.json":
        try:
            root = ElementTree.fromstring(form.get("Twiml", ""))
        except ElementTree.ParseError as exc:
            return f"Twiml is not XML: {exc}"
        if root.tag != "Response" or not root.findall("Say"):
            return "Twiml needs <Response><Say>"
        return None
    return f"unknown resource {path}"


def _webhook_problem(path: str, headers: Any, body: Any) -> str | None:
    if path != "/send":
        return f"unknown path {path}"
    if headers.get("X-Api-Key") != WEBHOOK_AUTH:
        return "auth header missing"
    if not headers.get("Content-Type", "").startswith("application/json") or not isinstance(body, dict):
        return "the webhook takes a JSON object"
    return None


@contextmanager
def running(kind: str) -> Iterator[Provider]:
    provider = Provider()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if kind == "twilio":
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                problem = _twilio_problem(self.path, self.headers, form)
                record: dict[str, Any] = {"path": self.path, **form}
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                problem = _webhook_problem(self.path, self.headers, body)
                record = {"path": self.path, **(body if isinstance(body, dict) else {})}
            provider.requests.append(record)
            status, answer, delay = provider.answers.pop(0) if provider.answers else (201, None, 0.0)
            if problem:
                provider.problems.append(problem)
                status, answer = 400, {"code": 20001, "message": problem, "status": 400}
            if delay:
                time.sleep(delay)
            data = json.dumps(answer if answer is not None else {"sid": "SM" + "1" * 32, "status": "queued"})
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())
            except OSError:
                pass  # the client gave up waiting (the timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    provider.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def twilio_config(port: int, extra: str = "") -> str:
    return (
        f'[sender]\nkind = "twilio"\ntwilio_account_sid = "{SID}"\ntwilio_auth_token = "{TOKEN}"\n'
        f'twilio_from = "{FROM}"\ntwilio_api_base = "http://127.0.0.1:{port}"\nprovider_timeout = "2s"\n{extra}'
    )


def webhook_config(port: int, extra: str = "") -> str:
    return (
        f'[sender]\nkind = "webhook"\nwebhook_url = "http://127.0.0.1:{port}/send"\n'
        f'webhook_auth_header = "X-Api-Key"\nwebhook_auth_value = "{WEBHOOK_AUTH}"\nprovider_timeout = "2s"\n'
        'webhook_template = { number = "{to}", kind = "{channel}", message = "{text}", lang = "{language}" }\n'
        f"{extra}"
    )
