"""SMS and voice delivery through a real provider: Twilio's REST API, or a generic HTTPS JSON
webhook (a local provider). Both implement `sender.Sender`.

A code is sent while the user waits, so each request has a time limit and only a timeout, a
broken connection, a 429 or a 5xx is tried again (`[sender] provider_tries`). Anything else (a
number the provider refuses, wrong credentials) fails at once. Every failure raises
`DeliveryFailed`, whose text is what the user reads ("could not send; try another method"); the
provider's own answer goes to the log and, for queued notices, to the queue's last error."""

from __future__ import annotations

import logging
import os
from xml.sax.saxutils import escape, quoteattr

import httpx

from campusvpn.platform.config_schema import Config, SenderSection
from campusvpn.service.errors import ServiceError
from campusvpn.service.sender import Message
from campusvpn.texts.codes import Code
from campusvpn.texts.message import say

log = logging.getLogger("campusvpn.sms")

USER_TEXT = say(Code.ERROR_DELIVERY_FAILED)
VOICE_LANGUAGES = {"en": "en-US", "ja": "ja-JP"}  # Twilio <Say> language codes


class DeliveryFailed(ServiceError):
    """The provider did not take the message. `str()` is for the user; `cause` for operators."""

    def __init__(self, cause: str) -> None:
        super().__init__(USER_TEXT)
        self.cause = cause


class _Retry(Exception):
    """A failure worth one more try (timeout, connection, 429, 5xx)."""


def _secret(value: str, env: str) -> str:
    return os.environ[env] if env and os.environ.get(env) else value


def _client(cfg: SenderSection, base: Config) -> httpx.Client:
    verify: str | bool = str(base.path(cfg.provider_ca_file)) if cfg.provider_ca_file else True
    return httpx.Client(timeout=cfg.provider_timeout.total_seconds(), verify=verify, follow_redirects=False)


def _explain(response: httpx.Response) -> str:
    """The provider's error in one line: Twilio answers {"code", "message", "status"}."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict) and "message" in body:
        return f"HTTP {response.status_code} code {body.get('code')}: {str(body['message'])[:200]}"
    return f"HTTP {response.status_code}: {str(body)[:200]}"


class _HttpSender:
    name = "provider"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cfg = config.sender

    def send(self, message: Message) -> None:
        last = ""
        with _client(self.cfg, self.config) as client:
            for attempt in range(1, self.cfg.provider_tries + 1):
                try:
                    response = self._request(client, message)
                except httpx.TimeoutException:
                    last = f"no answer within {self.cfg.provider_timeout.total_seconds():g} s"
                    continue
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                    continue
                if response.is_success:
                    return
                last = _explain(response)
                if response.status_code != 429 and response.status_code < 500:
                    break  # the provider refused this message: another try gets the same answer
                log.info("%s try %d of %d failed: %s", self.name, attempt, self.cfg.provider_tries, last)
        log.warning("%s could not send %s to %s: %s", self.name, message.channel, message.username, last)
        raise DeliveryFailed(f"{self.name}: {last}")

    def _request(self, client: httpx.Client, message: Message) -> httpx.Response:
        raise NotImplementedError


def twiml(message: Message) -> str:
    """The call's script: the text said in the user's language (the text repeats the code itself)."""
    lang = quoteattr(VOICE_LANGUAGES.get(message.language, "en-US"))
    return f"<Response><Say language={lang}>{escape(message.text)}</Say></Response>"


class TwilioSender(_HttpSender):
    """Messages (SMS) and Calls (voice, TwiML inline) of Twilio's 2010-04-01 API, basic auth."""

    name = "twilio"

    def _request(self, client: httpx.Client, message: Message) -> httpx.Response:
        cfg = self.cfg
        base = f"{cfg.twilio_api_base.rstrip('/')}/2010-04-01/Accounts/{cfg.twilio_account_sid}"
        auth = (cfg.twilio_account_sid, _secret(cfg.twilio_auth_token, cfg.twilio_auth_token_env))
        if message.channel == "voice":
            form = {"To": message.to, "From": cfg.twilio_from, "Twiml": twiml(message)}
            if message.extension:
                form["SendDigits"] = "wwww" + message.extension  # wait two seconds, then dial the extension
            return client.post(f"{base}/Calls.json", data=form, auth=auth)
        form = {"To": message.to, "From": cfg.twilio_from, "Body": message.text}
        return client.post(f"{base}/Messages.json", data=form, auth=auth)


class WebhookSender(_HttpSender):
    """POST of `[sender] webhook_template` filled in, as JSON, with the configured auth header."""

    name = "webhook"

    def body(self, message: Message) -> dict[str, str]:
        values = {
            "to": message.to,
            "channel": message.channel,
            "text": message.text,
            "extension": message.extension or "",
            "language": message.language,
            "username": message.username,
        }
        return {k: v.format(**values) for k, v in self.cfg.webhook_template.items()}

    def _request(self, client: httpx.Client, message: Message) -> httpx.Response:
        headers = {}
        value = _secret(self.cfg.webhook_auth_value, self.cfg.webhook_auth_value_env)
        if self.cfg.webhook_auth_header and value:
            headers[self.cfg.webhook_auth_header] = value
        return client.post(self.cfg.webhook_url, json=self.body(message), headers=headers)
