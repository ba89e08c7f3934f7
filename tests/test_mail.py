"""E-mail notices through a real SMTP server (aiosmtpd on a loopback port started here): each
arrives once, a server that is down delays delivery without losing anything, and a restart of
the service in between sends nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from tests.conftest import add_user, make_config
from tests.helpers import free_port

from campusvpn.cli.main import main as cli_main
from campusvpn.platform.clock import FixedClock
from campusvpn.service import mail_queue, mail_sender, mfa
from campusvpn.service.context import Context, open_context


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(make_header(decode_header(m["Subject"]))) for m in self.mails]


@pytest.fixture
def port() -> int:
    return free_port()


def smtp_ctx(tmp_path: Path, clock: FixedClock, port: int) -> Context:
    extra = f'[sender]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "none"\nsmtp_timeout = "5s"\n'
    return open_context(make_config(tmp_path, extra), clock)


@pytest.fixture
def server(port: int) -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=port)
    c.start()
    yield c, inbox
    c.stop()


def _reset_with_notice(ctx: Context, name: str = "1234567890") -> None:
    add_user(ctx, name)
    with ctx.tx() as s:
        ctx.user(s, name).email = "someone@example.ac.jp"
    mfa.reset(ctx, name, actor="test", reason="lost phone")


def test_a_notice_arrives_once(tmp_path: Path, clock: FixedClock, port: int, server: tuple[Controller, Inbox]) -> None:
    ctx = smtp_ctx(tmp_path, clock, port)
    _reset_with_notice(ctx)
    assert mail_sender.deliver_now(ctx).sent == 1
    clock.advance(timedelta(hours=1))
    assert mail_sender.deliver_now(ctx).sent == 0
    inbox = server[1]
    assert len(inbox.mails) == 1
    mail = inbox.mails[0]
    assert mail["To"] == "someone@example.ac.jp"
    assert "セキュリティ情報" in inbox.subjects()[0]
    body = mail.get_payload(decode=True).decode()
    assert "reset by the IT staff" in body and "リセット" in body
    assert mail_queue.listing(ctx)["waiting"] == 0
    ctx.engine.dispose()


def test_smtp_down_then_up_delivers_after_retry_and_a_restart_sends_nothing_twice(
    tmp_path: Path, clock: FixedClock, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = smtp_ctx(tmp_path, clock, port)
    _reset_with_notice(ctx)
    down = mail_sender.deliver_now(ctx)
    assert down.sent == 0 and len(down.failed) == 1
    listing = mail_queue.listing(ctx)
    assert listing["waiting"] == 1 and listing["failing"] == 1
    assert listing["messages"][0]["last_error"]
    # Visible to admins.
    cfg_path = tmp_path / "campusvpn.toml"
    cli_main(["--config", str(cfg_path), "mail", "queue"], clock=clock)
    assert "1 waiting, 1 of them failed" in capsys.readouterr().out
    ctx.engine.dispose()

    inbox = Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=port)
    c.start()
    try:
        restarted = smtp_ctx(tmp_path, clock, port)  # the service restarted while the server was down
        assert mail_sender.deliver_now(restarted).sent == 0  # the back-off is kept across the restart
        clock.advance(timedelta(minutes=1))
        assert mail_sender.deliver_now(restarted).sent == 1
        restarted.engine.dispose()
        again = smtp_ctx(tmp_path, clock, port)
        clock.advance(timedelta(hours=2))
        assert mail_sender.deliver_now(again).sent == 0
        again.engine.dispose()
    finally:
        c.stop()
    assert len(inbox.mails) == 1


def test_retries_back_off_up_to_the_limit(tmp_path: Path, clock: FixedClock, port: int) -> None:
    ctx = smtp_ctx(tmp_path, clock, port)
    _reset_with_notice(ctx)
    waits = []
    for _ in range(9):
        before = clock.now()
        mail_sender.deliver_now(ctx)
        nxt = mail_queue.listing(ctx)["messages"][0]["next_attempt_at"]
        from datetime import datetime

        waits.append(datetime.fromisoformat(nxt) - before)
        clock.set(datetime.fromisoformat(nxt))
    assert waits[:3] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert waits[-1] == timedelta(hours=1)
    ctx.engine.dispose()


def test_starttls_with_authentication_and_a_checked_certificate(
    tmp_path: Path, clock: FixedClock, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    from aiosmtpd.smtp import AuthResult, LoginPassword

    from campusvpn.cli.setup import write_self_signed

    write_self_signed(tmp_path / "smtp.crt", tmp_path / "smtp.key", "localhost")
    write_self_signed(tmp_path / "other.crt", tmp_path / "other.key", "localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "smtp.crt", tmp_path / "smtp.key")
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    inbox = Inbox()
    c = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    c.start()
    try:
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
        extra = (
            f'[sender]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "starttls"\n'
            'smtp_user = "campusvpn"\nsmtp_password_env = "TEST_SMTP_PASSWORD"\nsmtp_ca_file = "{ca}"\n'
        )
        wrong = open_context(make_config(tmp_path, extra.format(ca="other.crt")), clock)
        _reset_with_notice(wrong)
        failed = mail_sender.deliver_now(wrong)
        assert failed.sent == 0 and "certificate" in failed.failed[0][1].lower()
        assert logins == []  # no password is sent to a server that could not prove who it is
        wrong.engine.dispose()
        clock.advance(timedelta(minutes=5))
        right = open_context(make_config(tmp_path, extra.format(ca="smtp.crt")), clock)
        assert mail_sender.deliver_now(right).sent == 1
        right.engine.dispose()
    finally:
        c.stop()
    assert logins == [(b"campusvpn", b"s3cret")]
    assert len(inbox.mails) == 1
