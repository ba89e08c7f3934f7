"""Notices that follow VPN eligibility (training window opens, deadline near, VPN use suspended),
mailed through a real SMTP server (aiosmtpd) once each, in each user's language, with the
operator's texts; and shown where people look: the VPN client's connect banner (AnyConnect's
CONNECT answer and the FortiGate portal page, built in one place) and the portal's home page."""

from __future__ import annotations

import asyncio
import ssl
from datetime import date, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from tests.conftest import add_user, make_config
from tests.helpers import free_port
from tests.test_mail import Inbox

from campusvpn.app.serve import build
from campusvpn.cli.setup import write_self_signed
from campusvpn.core.policy import AccountStatus
from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import ConfigError
from campusvpn.service import accounts, lifecycle, mail_sender, mfa, phones, sessions, training
from campusvpn.service.context import Context, open_context

JST = ZoneInfo("Asia/Tokyo")


def at(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), JST).replace(hour=12)


def _subject(mail: object) -> str:
    return str(make_header(decode_header(mail["Subject"])))  # type: ignore[index]


def _body(mail: object) -> str:
    return str(mail.get_payload(decode=True).decode())  # type: ignore[attr-defined]


@pytest.fixture
def smtp() -> object:
    port = free_port()
    inbox = Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=port)
    c.start()
    yield port, inbox
    c.stop()


def _ctx(tmp_path: Path, clock: FixedClock, port: int, extra: str = "") -> Context:
    text = (
        f'[sender]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "none"\nsmtp_timeout = "5s"\n{extra}'
    )
    return open_context(make_config(tmp_path, text), clock)


def _staff(ctx: Context, name: str, lang: str) -> None:
    add_user(ctx, name, "staff", trained_on=None)
    mfa.apply(ctx, name, actor="test")
    with ctx.tx() as s:
        u = ctx.user(s, name)
        u.email, u.language = f"{name}@example.ac.jp", lang


def test_training_notices_arrive_once_each_in_the_users_language(
    tmp_path: Path, clock: FixedClock, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    clock.set(at("2027-06-30"))
    ctx = _ctx(tmp_path, clock, port)
    _staff(ctx, "1000000001", "en")
    _staff(ctx, "1000000002", "ja")
    # Staff train from 07-01 to 09-30 (the default windows).
    days = {
        "2027-06-30": [],
        "2027-07-01": ["training_opens"] * 2,
        "2027-07-02": [],
        "2027-09-16": ["training_deadline"] * 2,  # 14 days before
        "2027-09-20": [],
        "2027-09-27": ["training_deadline"] * 2,  # 3 days before
        "2027-10-01": ["vpn_suspended_training"] * 2,
        "2027-10-02": [],
    }
    for day, expected in days.items():
        clock.set(at(day))
        assert [n["notice"] for n in lifecycle.run(ctx).notices] == expected, day
        lifecycle.run(ctx)  # again the same day: nothing more
        mail_sender.deliver_now(ctx)
    by_user: dict[str, list[tuple[str, str]]] = {}
    for m in inbox.mails:
        by_user.setdefault(m["To"], []).append((_subject(m), _body(m)))
    en, ja = by_user["1000000001@example.ac.jp"], by_user["1000000002@example.ac.jp"]
    assert len(en) == len(ja) == 4
    assert "open (due 2027-09-30)" in en[0][0] and "2027-07-01" in en[0][1]
    assert "due in 14 day(s): 2027-09-30" in en[1][0] and "due in 3 day(s)" in en[2][0]
    assert "VPN use suspended" in en[3][0]
    assert "研修が始まりました" in ja[0][0] and "あと 14 日" in ja[1][0] and "VPN 利用停止" in ja[3][0]
    # Completing it stops the reminders: next year nothing is sent before the window.
    training.import_completions(ctx, "username,completed_on\n1000000001,2027-10-03\n", actor="test")
    clock.set(at("2027-10-04"))
    assert lifecycle.run(ctx).notices == []
    ctx.engine.dispose()


def test_a_suspension_is_mailed_once_and_the_operators_texts_are_used(
    tmp_path: Path, clock: FixedClock, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    (tmp_path / "notices.toml").write_text(
        '[vpn_suspended_account.en]\nsubject = "Suspended: {username}"\nbody = "Reason: {reason}. Ask {helpdesk}."\n',
        encoding="utf-8",
    )
    ctx = _ctx(tmp_path, clock, port, '[notices]\ntemplates = "notices.toml"\n[service]\nhelpdesk = "desk 1234"\n')
    add_user(ctx, "1000000003")
    with ctx.tx() as s:
        u = ctx.user(s, "1000000003")
        u.email, u.language = "x@example.ac.jp", "en"
    accounts.set_status(ctx, "1000000003", AccountStatus.SUSPENDED, actor="admin", reason="lost laptop")
    lifecycle.run(ctx)
    lifecycle.run(ctx)
    mail_sender.deliver_now(ctx)
    [mail] = inbox.mails
    assert _subject(mail) == "[Campus VPN] Suspended: 1000000003"
    # The operator's text, then the footer every mail ends with (who sent it; nobody asks for a code).
    text, footer = _body(mail).replace("\r\n", "\n").split("\n\n--\n")
    assert text.strip() == "Reason: lost laptop. Ask desk 1234."
    assert "sent by Campus VPN (https://vpn.example.ac.jp/)" in footer and "never asks" in footer
    ctx.engine.dispose()


def test_a_templates_file_with_an_unknown_placeholder_is_refused_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "notices.toml").write_text('[training_opens.ja]\nbody = "{deadlne} まで"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"notices.toml: training_opens.ja.body: unknown placeholder \{deadlne\}"):
        open_context(make_config(tmp_path, '[notices]\ntemplates = "notices.toml"\n'))


def test_the_connect_banner_and_the_portal_show_the_training_notice(tmp_path: Path) -> None:
    from tests.test_portal import client, sign_in

    clock = FixedClock(at("2026-09-20"))  # staff deadline 2026-09-30, not done
    ctx = open_context(make_config(tmp_path, '[vpn]\nbanner = "Welcome"\n'), clock)
    write_self_signed(ctx.config.path("tls/cert.pem"), ctx.config.path("tls/key.pem"), "localhost")
    add_user(ctx, "1234567890", "staff", trained_on=None)
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    with ctx.tx() as s:
        ctx.user(s, "1234567890").language = "ja"
    clock.advance(timedelta(hours=1))
    with ctx.tx() as s:
        opened = sessions.open_session(
            ctx, s, ctx.user(s, "1234567890"), profile=None, pool="172.31.0.0/16", source="127.0.0.1", client="t"
        )

    async def run() -> tuple[bytes, bytes]:
        gw = build(ctx, tun_fd=None)
        await gw.start("127.0.0.1", 0)
        assert gw.front.server is not None
        port = gw.front.server.sockets[0].getsockname()[1]
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
            writer.write(
                f"GET /remote/fortisslvpn HTTP/1.1\r\nHost: x\r\nCookie: SVPNCOOKIE={opened.token}\r\n\r\n".encode()
            )
            forti = await asyncio.wait_for(reader.readuntil(b"</html>"), 10)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
            writer.write(
                f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: x\r\nCookie: webvpn={opened.token}\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
            return head, forti
        finally:
            await gw.stop()

    head, forti = asyncio.run(run())
    assert head.startswith(b"HTTP/1.1 200 CONNECTED"), head
    banner = next(
        unquote(line.split(b":", 1)[1].strip().decode())
        for line in head.split(b"\r\n")
        if line.startswith(b"X-CSTP-Banner")
    )
    assert banner.startswith("Welcome\n") and "2026-09-30 までに" in banner and "研修" in banner
    assert "2026-09-30 までに" in forti.decode() and "Welcome" in forti.decode()
    # The portal lists the notices the job sent (here to someone who has not applied for MFA yet,
    # so the portal signs them in with the password alone).
    add_user(ctx, "1234567891", "staff", trained_on=None)
    with ctx.tx() as s:
        ctx.user(s, "1234567891").language = "ja"
    lifecycle.run(ctx)
    c = client(ctx)
    home = sign_in(c, "1234567891")
    assert 'id="notices"' in home and "情報セキュリティ研修の期限まであと 10 日" in home
    ctx.engine.dispose()


def test_the_admin_console_shows_upcoming_revocations_and_failing_deliveries(tmp_path: Path, clock: FixedClock) -> None:
    from tests.test_security import ADMIN, _admin_in_console

    port = free_port()  # nothing listens: every e-mail fails and waits for its next try
    extra = f'[portal]\nadmins = ["{ADMIN}"]\ndefault_language = "en"\n'
    ctx = _ctx(tmp_path, clock, port, extra)
    clock.set(at("2027-03-01"))
    add_user(ctx, "1000000004", "student", start="2023-04-01", end="2027-03-31")
    add_user(ctx, "1000000005", "student", start="2023-04-01", end="2027-09-30")  # later than 60 days
    with ctx.tx() as s:
        ctx.user(s, "1000000004").email = "leaving@example.ac.jp"
    lifecycle.run(ctx)  # "your account ends on 2027-03-31": queued
    assert len(mail_sender.deliver_now(ctx).failed) == 1
    a, _ = _admin_in_console(ctx, clock)
    page = a.get("/admin/lifecycle").text
    upcoming = page[page.index('id="upcoming"') : page.index("</table>", page.index('id="upcoming"'))]
    assert "1000000004" in upcoming and "2027-03-31" in upcoming and "2027-04-01" in upcoming
    assert "1000000005" not in upcoming
    delivery = page[page.index('id="delivery"') :]
    assert '<tr data-channel="email"><td>E-mail</td><td>0</td><td>1</td><td>1</td></tr>' in delivery
    assert ("leaving@example.ac.jp" in delivery and "ConnectionRefused" in delivery) or "Errno" in delivery
    ctx.engine.dispose()
