"""One client's aggregate-auth dialogue, translated to and from the sign-in engine (sans-IO).

The forms follow what unmodified clients fill in by themselves: `username` + `password`
(+ `group_list` when there are several profiles), then one `secondary_password` field, which
openconnect fills with `--token-mode=totp`. In that field the user may also type a recovery
code, `sms` or `call` to have a code sent, and may add ` trust` after a code to skip codes on
this device. Every refusal comes back as the client's own error text, in the person's language
(service.client_texts: the stored one, else both).

With `login = "browser"` the client is sent to the portal's sign-in page instead (AnyConnect single
sign-on; `service.sso` keeps the attempt and its one-time token) and hands the token back here.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campusvpn.anyconnect import xmlauth
from campusvpn.anyconnect.xmlauth import AuthRequest, Choice, Input, SsoLinks
from campusvpn.core.sso_handoff import BadClientKey, client_key
from campusvpn.platform.config_schema import VpnProfile, VpnSettings
from campusvpn.service import client_texts, live_sessions, sso
from campusvpn.service.context import Context
from campusvpn.service.errors import Forbidden, ServiceError, Unavailable
from campusvpn.service.signin_ports import resume_signin, start_signin
from campusvpn.signin import Finished, Password, Prompt, Purpose, SignIn, Step
from campusvpn.signin.typed_answer import hints, typed_answer
from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say

PROTOCOL = "anyconnect"  # what sessions, logs and metrics call this protocol
SSO = "single-sign-on-v2"  # capabilities a client advertises in its init
SSO_EXTERNAL = "single-sign-on-external-browser"


@dataclass(frozen=True)
class LoginReply:
    body: bytes
    token: str | None = None  # the webvpn cookie, once signed in
    device_token: str | None = None
    finished: bool = False  # no more forms: the client either connects or gives up
    session_id: str | None = None
    # Shown with the connect banner: openconnect does not display the sign-in reply's message.
    notice: str | None = None


@dataclass
class GatewayLogin:
    ctx: Context
    source: str | None
    user_agent: str | None
    cert_sha1: str
    device_token: str | None = None
    client_key: str | None = None  # X-AnyConnect-STRAP-DH-Pubkey: the browser's token is sealed to it
    handle: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    capabilities: tuple[str, ...] = ()
    browser: bool = False  # the client was sent to the browser
    created: datetime | None = None
    profile: VpnProfile | None = None
    _engine: SignIn | None = None
    _sso_user: str | None = None
    _language: tuple[str | None, str | None] | None = None  # (user name, their stored language), once looked up
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- between requests ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What continues this sign-in in another worker (its next request may arrive there)."""
        return {
            "handle": self.handle,
            "source": self.source,
            "user_agent": self.user_agent,
            "device_token": self.device_token,
            "client_key": self.client_key,
            "capabilities": list(self.capabilities),
            "browser": self.browser,
            "created": self.created.isoformat() if self.created else None,
            "profile": self.profile.name if self.profile else None,
            "engine": self._engine.snapshot() if self._engine else None,
        }

    @classmethod
    def restore(cls, ctx: Context, cert_sha1: str, data: dict[str, Any]) -> GatewayLogin:
        login = cls(
            ctx,
            source=data["source"],
            user_agent=data["user_agent"],
            cert_sha1=cert_sha1,
            device_token=data["device_token"],
            client_key=data.get("client_key"),
            capabilities=tuple(data.get("capabilities") or ()),
            browser=bool(data.get("browser")),
            handle=data["handle"],
            created=datetime.fromisoformat(data["created"]) if data["created"] else None,
            profile=next((p for p in ctx.config.vpn.profiles if p.name == data["profile"]), None),
        )
        if data["engine"] is not None:
            login._engine = resume_signin(ctx, data["engine"], login.source)
        return login

    # --- entry ------------------------------------------------------------------------------

    def handle_request(self, req: AuthRequest) -> LoginReply:
        with self._lock:  # one step at a time, even if a client sends two at once
            try:
                return self._handle(req)
            except Unavailable as exc:
                # Storage failed (logged with its cause): say so, not "wrong password" or "ended".
                return self._fail(self._text(exc.said, known=False))

    def _handle(self, req: AuthRequest) -> LoginReply:
        if self.created is None:
            self.created = self.ctx.clock.now()
        if req.kind != "init" and "sso-token" in req.fields:
            return self._on_sso_token(req.fields["sso-token"])
        if req.kind == "init" or (self._engine is None and not self.browser):
            return self._on_init(req)
        if self.browser or self._engine is None:
            return self._fail(self._text(say(Code.VPN_FINISH_IN_BROWSER)))
        if self._engine.step is Step.PASSWORD:
            return self._on_password(req)
        if self._engine.step is Step.SECOND_FACTOR:
            return self._on_code(req)
        return self._fail(self._text(say(Code.VPN_SIGNIN_ENDED)))

    # --- steps ------------------------------------------------------------------------------

    def _on_init(self, req: AuthRequest) -> LoginReply:
        self.capabilities = req.capabilities
        self._engine = start_signin(self.ctx, Purpose.VPN, source=self.source)
        self.profile = self._pick_profile(req.group_select)
        if self.settings.login == "browser":
            return self._to_browser()
        return self._password_form(None, message=self._text(self._engine.start().said, known=False))

    def _to_browser(self) -> LoginReply:
        """Send the client to the portal's sign-in page; it comes back with a one-time token."""
        if SSO not in self.capabilities:
            return self._fail(self._text(say(Code.VPN_NO_BROWSER), known=False))
        key = self.client_key if SSO_EXTERNAL in self.capabilities else None
        if key is not None:
            try:
                client_key(key)
            except BadClientKey:
                key = None  # the embedded browser still works: the token then travels in a cookie
        sso.begin(
            self.ctx,
            self.handle,
            protocol=PROTOCOL,
            profile=self.profile.name if self.profile else None,
            source=self.source,
            client_key=key,
        )
        self.browser = True
        links = SsoLinks(
            login=sso.start_url(self.ctx, self.handle),
            final=sso.done_url(self.ctx),
            token_cookie=sso.TOKEN_COOKIE,
            error_cookie=sso.ERROR_COOKIE,
            external=key is not None,
        )
        body = xmlauth.sso_form(
            handle=self.handle,
            title=self._title(),
            message=self._text(say(Code.VPN_BROWSER_OPENS, service=self._title()), known=False),
            links=links,
        )
        return LoginReply(body)

    def _on_sso_token(self, token: str) -> LoginReply:
        """The token the browser's sign-in gave the client: once, for this attempt, from its address."""
        try:
            got = sso.redeem(self.ctx, self.handle, token, self.source)
        except Forbidden as exc:
            return self._fail(self._text(exc.said, known=False))
        self.profile = next((p for p in self.ctx.config.vpn.profiles if p.name == got.profile), self.profile)
        said = sso.said_of(got.outcome)
        self._sso_user = got.username
        if not got.outcome.get("ok") or not got.username:
            return self._fail(self._text(said or (say(Code.ERROR_SSO_REFUSED),)))
        return self._open(Finished(True, "ok", said, username=got.username, factors=2))

    def _on_password(self, req: AuthRequest) -> LoginReply:
        assert self._engine is not None
        if req.group_select:
            self.profile = self._pick_profile(req.group_select)
            if self.settings.login == "browser":  # a group chosen in the form may sign in in the browser
                return self._to_browser()
        username = req.fields.get("username", "")
        password = req.fields.get("password", "")
        if not username or not password:
            return self._password_form(self._text(say(Code.VPN_NEED_CREDENTIALS), known=False))
        if self.profile is None and len(self.ctx.config.vpn.profiles) > 1:
            return self._password_form(self._text(say(Code.VPN_CHOOSE_GROUP), known=False))
        out = self._engine.handle(Password(username, password, self.device_token))
        return self._after(out)

    def _on_code(self, req: AuthRequest) -> LoginReply:
        assert self._engine is not None
        typed = (
            req.fields.get("secondary_password") or req.fields.get("password") or req.fields.get("answer") or ""
        ).strip()
        event = typed_answer(typed, device_label=f"VPN client {self.user_agent or ''}".strip())
        if event is None:
            return self._code_form(None, self._text(say(Code.VPN_CODE_EMPTY)))
        return self._after(self._engine.handle(event))

    # --- outcomes ---------------------------------------------------------------------------

    def _after(self, out: Prompt | Finished) -> LoginReply:
        if isinstance(out, Prompt):
            if out.step is Step.PASSWORD:
                return self._password_form(self._text(out.why, known=False) if out.why else None)
            return self._code_form(out, self._text(out.why) if out.why else None)
        if not out.ok:
            if out.code == "bad_credentials":  # let the user try again, like any sign-in form
                self._engine = start_signin(self.ctx, Purpose.VPN, source=self.source)
                return self._password_form(self._text(out.said, known=False))
            return self._fail(self._text(out.said))
        return self._open(out)

    def _text(self, said: Message | tuple[Message, ...], *, known: bool = True) -> str:
        """For the client's box, in the person's language (`known=False`: nobody named yet: both)."""
        return client_texts.in_language(self.ctx, said, self._stored_language() if known else None)

    def _stored_language(self) -> str | None:
        """The person's stored language, looked up once per name (a form says several texts)."""
        name = self.username
        if self._language is None or self._language[0] != name:
            self._language = (name, client_texts.stored_language(self.ctx, name))
        return self._language[1]

    def _open(self, done: Finished) -> LoginReply:
        settings = self.settings
        try:
            opened = live_sessions.open_for_vpn(
                self.ctx,
                done.username or "",
                self.profile,
                pool=settings.pool,
                source=self.source,
                client=self.user_agent,
                protocol=PROTOCOL,
            )
        except ServiceError as exc:
            return self._fail(self._text(exc.said))
        address, sid = opened.address, opened.session_id
        notice = None
        if done.device_token and done.device_expires:
            address_d = f"https://{self.ctx.config.gateway.hostname}/d/{done.device_token}"
            notice = self._text(say(Code.VPN_TRUSTED_UNTIL, until=done.device_expires, address=address_d))
        elif done.recovery_left is not None:
            total = self.ctx.config.mfa.recovery_code_count  # the same sentence as the sign-in's own
            notice = self._text(say(Code.ENGINE_RECOVERY_USED, left=done.recovery_left, total=total))
        banner = live_sessions.connect_banner(settings.banner, (), notice)
        body = xmlauth.complete(
            token=opened.token,
            session_id=sid,
            banner=banner,
            message=self._text((*done.said, say(Code.VPN_ADDRESS, address=address))),
            cert_sha1_hex=self.cert_sha1,
        )
        return LoginReply(
            body, token=opened.token, device_token=done.device_token, finished=True, session_id=sid, notice=notice
        )

    @property
    def username(self) -> str | None:
        """Who is signing in, once the password step named an account."""
        return (self._engine.username if self._engine else None) or self._sso_user

    # --- forms ------------------------------------------------------------------------------

    @property
    def settings(self) -> VpnSettings:
        return self.ctx.config.vpn.settings_for(self.profile)

    def _title(self) -> str:
        return self.ctx.config.service.name

    def _groups(self) -> list[Choice] | None:
        profiles = self.ctx.config.vpn.profiles
        if len(profiles) < 2:
            return None
        chosen = self.profile.name if self.profile else profiles[0].name
        return [Choice(p.name, p.label or p.name, p.name == chosen) for p in profiles]

    def _pick_profile(self, wanted: str | None) -> VpnProfile | None:
        profiles = self.ctx.config.vpn.profiles
        if not profiles:
            return None
        if wanted:
            for p in profiles:  # some clients send the label instead of the value
                if wanted.lower() in (p.name.lower(), (p.label or p.name).lower()):
                    return p
        return profiles[0] if len(profiles) == 1 else self.profile

    def _label(self, code: Code, *, known: bool = True) -> str:
        """A field's label, short: "Password / パスワード:" while nobody is named."""
        return self._text(say(code), known=known) + ":"

    def _password_form(self, error: str | None, message: str | None = None) -> LoginReply:
        # Nobody is named before this form is answered: its texts are in both languages.
        inputs = [
            Input("text", "username", self._label(Code.SIGNIN_USERNAME, known=False)),
            Input("password", "password", self._label(Code.SIGNIN_PASSWORD, known=False)),
        ]
        body = xmlauth.auth_form(
            handle=self.handle,
            title=self._title(),
            message=message or self._text(say(Code.ENGINE_START, service=self._title()), known=False),
            inputs=inputs,
            error=error,
            banner=self.ctx.config.vpn.banner or None,
            groups=self._groups(),
            group_label=self._label(Code.VPN_LABEL_GROUP, known=False),
        )
        return LoginReply(body)

    def _code_form(self, prompt: Prompt | None, error: str | None) -> LoginReply:
        lines = [*prompt.said] if prompt else [say(Code.VPN_CODE_ENTER)]
        phone = prompt is not None and any(m.kind == "phone" for m in prompt.methods)
        lines += hints(phone=phone, trust_days=self.ctx.config.trusted_devices.lifetime.days)
        body = xmlauth.auth_form(
            handle=self.handle,
            title=self._title(),
            message=self._text(tuple(lines)),
            inputs=[Input("password", "secondary_password", self._label(Code.VPN_LABEL_CODE))],
            error=error,
        )
        return LoginReply(body)

    def _fail(self, message: str) -> LoginReply:
        body = xmlauth.auth_form(handle=self.handle, title=self._title(), message=message, inputs=[], error=message)
        return LoginReply(body, finished=True)

    def expired(self, now: datetime) -> bool:
        return self.created is not None and now - self.created > self.ctx.config.gateway.auth_timeout
