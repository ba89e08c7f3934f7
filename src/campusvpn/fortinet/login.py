"""One client's `/remote/logincheck` dialogue, translated to and from the sign-in engine (sans-IO).

The password step posts `username` + `credential` (+ `realm`, which names a profile); the second
factor is FortiGate's `tokeninfo` challenge, whose answer comes back in `code` together with the
`magic` we handed out. In the code field the user may type a 6-digit code, a recovery code, `sms`
or `call` to have a code sent, and may add ` trust` after a code to skip codes on this device:
the same answers as over AnyConnect.

The open clients show nothing of a plain failure (405), so a refusal the user must understand (MFA
applied 10 minutes ago, training missing, account closed...) comes back as a challenge whose
prompt (`chal_msg`) is the reason; whatever is answered to it is refused.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campusvpn.platform.config_schema import VpnProfile, VpnSettings
from campusvpn.service import client_texts, live_sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import ServiceError
from campusvpn.service.signin_ports import resume_signin, start_signin
from campusvpn.signin import Finished, Password, Prompt, Purpose, SignIn, Step
from campusvpn.signin.typed_answer import hints, typed_answer
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say

PROTOCOL = "fortinet"  # what sessions, logs and metrics call this protocol
SUCCESS = "ret=1,redir=/remote/fortisslvpn_xml"
DENIED = "ret=0,redir=/remote/login?&err=sslvpn_login_permission_denied&lang=en"


@dataclass(frozen=True)
class LoginAnswer:
    status: int  # 200, or 405: FortiGate's "wrong credentials" (openconnect re-prompts)
    body: str
    token: str | None = None  # SVPNCOOKIE, once signed in
    device_token: str | None = None
    finished: bool = False  # nothing more to answer: forget this sign-in
    session_id: str | None = None
    outcome: str | None = None  # "ok" or "refused" the moment the sign-in is decided (log it once)


def new_engine(ctx: Context, source: str | None) -> SignIn:
    """The one place this package constructs the sign-in engine."""
    return start_signin(ctx, Purpose.VPN, source=source)


def _field(text: str) -> str:
    """A value inside the comma-separated answer: no commas, no line breaks."""
    return " ".join(text.replace(",", ";").split())


@dataclass
class FortiLogin:
    ctx: Context
    source: str | None
    user_agent: str | None
    profile: VpnProfile | None = None
    device_token: str | None = None
    # The challenge's handle: openfortivpn keeps at most 31 characters of it.
    magic: str = field(default_factory=lambda: "1-" + secrets.token_hex(12))
    reqid: str = field(default_factory=lambda: str(secrets.randbelow(10**9)))
    created: datetime | None = None
    refused: str | None = None  # set once the sign-in was refused: any answer gets this
    _engine: SignIn | None = None
    _language: tuple[str | None, str | None] | None = None  # (user name, their stored language), once looked up
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- between requests ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What continues this sign-in in another worker (its code may arrive there)."""
        return {
            "source": self.source,
            "user_agent": self.user_agent,
            "profile": self.profile.name if self.profile else None,
            "device_token": self.device_token,
            "magic": self.magic,
            "reqid": self.reqid,
            "created": self.created.isoformat() if self.created else None,
            "refused": self.refused,
            "engine": self._engine.snapshot() if self._engine else None,
        }

    @classmethod
    def restore(cls, ctx: Context, data: dict[str, Any]) -> FortiLogin:
        login = cls(
            ctx,
            source=data["source"],
            user_agent=data["user_agent"],
            profile=next((p for p in ctx.config.vpn.profiles if p.name == data["profile"]), None),
            device_token=data["device_token"],
            magic=data["magic"],
            reqid=data["reqid"],
            created=datetime.fromisoformat(data["created"]) if data["created"] else None,
            refused=data["refused"],
        )
        if data["engine"] is not None:
            login._engine = resume_signin(ctx, data["engine"], login.source)
        return login

    # --- entry ------------------------------------------------------------------------------

    def password(self, username: str, credential: str) -> LoginAnswer:
        with self._lock:
            self.created = self.ctx.clock.now()
            self._engine = new_engine(self.ctx, self.source)
            self._engine.start()
            if not username or not credential:
                return LoginAnswer(405, DENIED, finished=True, outcome="refused")
            return self._after(self._engine.handle(Password(username, credential, self.device_token)))

    def code(self, typed: str) -> LoginAnswer:
        with self._lock:  # one step at a time, even if a client sends two at once
            if self.refused is not None:
                # The same refusal again: openconnect's code generator gives up after two answers
                # to one challenge (after a 405 it would generate codes for ever).
                return LoginAnswer(200, self._challenge_body(self.refused))
            if self._engine is None or self._engine.step is not Step.SECOND_FACTOR:
                return LoginAnswer(405, DENIED, finished=True)
            event = typed_answer(typed, device_label=f"VPN client {self.user_agent or ''}".strip())
            if event is None:
                return self._challenge(say(Code.VPN_CODE_EMPTY))
            return self._after(self._engine.handle(event))

    def refuse(self, message: str) -> LoginAnswer:
        """Refused before any check (a realm that does not exist): the message is the prompt."""
        self.created = self.ctx.clock.now()
        return self._refuse(message)

    @property
    def username(self) -> str | None:
        return self._engine.username if self._engine else None

    @property
    def settings(self) -> VpnSettings:
        return self.ctx.config.vpn.settings_for(self.profile)

    def expired(self, now: datetime) -> bool:
        return self.created is not None and now - self.created > self.ctx.config.gateway.auth_timeout

    # --- outcomes ---------------------------------------------------------------------------

    def _after(self, out: Prompt | Finished) -> LoginAnswer:
        if isinstance(out, Prompt):
            if out.step is Step.SECOND_FACTOR:
                return self._challenge(out.why, out)
            return self._refuse(self._text(out.why or out.said))  # the engine wants something we cannot ask here
        if not out.ok:
            if out.code == "bad_credentials":
                return LoginAnswer(405, DENIED, finished=True, outcome="refused")
            return self._refuse(self._text(out.said))
        return self._open(out)

    def _text(self, said: Message | tuple[Message, ...]) -> str:
        """For the client's box, in the person's language (service.client_texts)."""
        name = self.username
        if self._language is None or self._language[0] != name:  # looked up once per name
            self._language = (name, client_texts.stored_language(self.ctx, name))
        return client_texts.in_language(self.ctx, said, self._language[1])

    def _open(self, done: Finished) -> LoginAnswer:
        try:
            opened = live_sessions.open_for_vpn(
                self.ctx,
                done.username or "",
                self.profile,
                pool=self.settings.pool,
                source=self.source,
                client=self.user_agent,
                protocol=PROTOCOL,
            )
        except ServiceError as exc:
            return self._refuse(self._text(exc.said))
        return LoginAnswer(
            200,
            SUCCESS,
            token=opened.token,
            device_token=done.device_token,
            finished=True,
            session_id=opened.session_id,
            outcome="ok",
        )

    def _challenge(self, error: Message | tuple[Message, ...], prompt: Prompt | None = None) -> LoginAnswer:
        lines = [error] if isinstance(error, Message) else [*error]
        lines += prompt.said if prompt else (say(Code.VPN_CODE_ENTER),)
        phone = prompt is not None and any(m.kind == "phone" for m in prompt.methods)
        lines += hints(phone=phone, trust_days=self.ctx.config.trusted_devices.lifetime.days)
        return LoginAnswer(200, self._challenge_body(self._text(tuple(lines))))

    def _refuse(self, message: str) -> LoginAnswer:
        self.refused = message
        return LoginAnswer(200, self._challenge_body(message), outcome="refused")

    def _challenge_body(self, message: str) -> str:
        grp = self.profile.name if self.profile else "vpn"
        return (
            f"ret=2,reqid={self.reqid},polid=1-1-1,grp={_field(grp)[:100]},portal=campusvpn,peer=,"
            f"magic={self.magic},tokeninfo=,chal_msg={_field(message)}"
        )
