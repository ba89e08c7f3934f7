"""Delivery of queued e-mail over SMTP (aiosmtplib): STARTTLS or implicit TLS, authentication.

A message is marked sent only after the server accepted it; a failure is recorded with its
error and retried later with back-off (service.mail_queue), so nothing is lost while the server
is down. Secrets: the password comes from [sender] smtp_password or the environment variable
named by smtp_password_env. Queued text messages (SMS notices) go out here too, through the
configured SMS provider, with the same retry and back-off."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from campusvpn.service import mail_queue
from campusvpn.service.context import Context
from campusvpn.service.sender import Message
from campusvpn.store.models import MailMessage

log = logging.getLogger("campusvpn.mail")


@dataclass
class Delivery:
    sent: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (message id, error)


def _tls_context(ctx: Context) -> ssl.SSLContext:
    ca = ctx.config.sender.smtp_ca_file
    return ssl.create_default_context(cafile=str(ctx.config.path(ca)) if ca else None)


def _password(ctx: Context) -> str | None:
    cfg = ctx.config.sender
    if cfg.smtp_password_env and os.environ.get(cfg.smtp_password_env):
        return os.environ[cfg.smtp_password_env]
    return cfg.smtp_password or None


def _email(ctx: Context, m: MailMessage) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = ctx.config.sender.mail_from
    msg["To"] = m.to
    msg["Subject"] = m.subject
    msg["Date"] = formatdate(m.created_at.timestamp(), localtime=False)
    # One id per queued message: a resend after a lost acknowledgement is recognisably the same mail.
    msg["Message-ID"] = make_msgid(idstring=f"q{m.id}", domain=ctx.config.sender.mail_from.rpartition("@")[2] or None)
    msg.set_content(m.body)
    return msg


async def deliver(ctx: Context, limit: int = 50) -> Delivery:
    """Send what is due now: text messages through the SMS provider, e-mail over one SMTP
    connection. Never raises for a delivery failure."""
    out = Delivery()
    if ctx.config.sender.kind != "outbox":
        await _deliver_sms(ctx, limit, out)
    return await _deliver_email(ctx, limit, out)


async def _deliver_sms(ctx: Context, limit: int, out: Delivery) -> None:
    # The provider's module (and httpx) only where a provider is configured: the gateway's worker 0
    # runs this round every minute (start-up memory).
    from campusvpn.service.sms_providers import DeliveryFailed

    for m in await asyncio.to_thread(mail_queue.claim, ctx, limit, "sms"):
        message = Message(to=m.to, channel="sms", text=m.body, at=ctx.clock.now(), username=m.username or "")
        try:
            await asyncio.to_thread(ctx.sender.send, message)
        except DeliveryFailed as exc:
            await asyncio.to_thread(mail_queue.mark_failed, ctx, m.id, exc.cause)
            out.failed.append((m.id, exc.cause))
            continue
        await asyncio.to_thread(mail_queue.mark_sent, ctx, m.id)
        out.sent += 1


async def _deliver_email(ctx: Context, limit: int, out: Delivery) -> Delivery:
    cfg = ctx.config.sender
    if not cfg.smtp_host:
        return out
    due = await asyncio.to_thread(mail_queue.claim, ctx, limit)
    if not due:
        return out
    import aiosmtplib  # at the first mail to send, not in every gateway's worker 0 (start-up memory)

    user = cfg.smtp_user or None
    client = aiosmtplib.SMTP(
        hostname=cfg.smtp_host,
        port=cfg.smtp_port,
        use_tls=cfg.smtp_security == "tls",
        start_tls=cfg.smtp_security == "starttls",
        tls_context=_tls_context(ctx) if cfg.smtp_security != "none" else None,
        timeout=cfg.smtp_timeout.total_seconds(),
    )
    try:
        await client.connect()
        if user:
            await client.login(user, _password(ctx) or "")
    except (aiosmtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("SMTP server %s:%s unusable: %s", cfg.smtp_host, cfg.smtp_port, error)
        for m in due:
            await asyncio.to_thread(mail_queue.mark_failed, ctx, m.id, error)
            out.failed.append((m.id, error))
        client.close()
        return out
    try:
        for m in due:
            try:
                await client.send_message(_email(ctx, m))
            except (aiosmtplib.SMTPException, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                await asyncio.to_thread(mail_queue.mark_failed, ctx, m.id, error)
                out.failed.append((m.id, error))
                if not client.is_connected:
                    break  # the rest keep their lease and are tried at the next round
                continue
            await asyncio.to_thread(mail_queue.mark_sent, ctx, m.id)
            out.sent += 1
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
    return out


def deliver_now(ctx: Context, limit: int = 50) -> Delivery:
    """For the CLI: one round of delivery."""
    return asyncio.run(deliver(ctx, limit))
