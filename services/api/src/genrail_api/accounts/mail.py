"""Sending mail (sign-in links) over SMTP: the standard library's smtplib, run in a thread
(`asyncio.to_thread`) so the event loop never waits on the mail server. One connection per
mail: sign-in mails are few, and a fresh connection has no state to go stale."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from genrail_runtime.logs import event as log_event

from ..settings import ApiSettings

log = logging.getLogger("genrail.api.accounts")
TIMEOUT_S = 15.0


class MailUnavailable(Exception):
    """No SMTP server is configured, or it refused the mail."""


def compose(settings: ApiSettings, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="genrail")
    message.set_content(text)
    return message


def _send(settings: ApiSettings, message: EmailMessage) -> None:
    assert settings.smtp_host is not None
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_username, password)
        smtp.send_message(message)


async def send(settings: ApiSettings, to: str, subject: str, text: str) -> None:
    if not settings.smtp_host:
        raise MailUnavailable("no mail server is configured (SMTP_HOST)")
    message = compose(settings, to, subject, text)
    try:
        await asyncio.to_thread(_send, settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail.failed", extra={"error": repr(exc), "smtp_host": settings.smtp_host})
        raise MailUnavailable(f"the mail server did not take the mail: {exc}") from exc
    log_event(log, "mail.sent", subject=subject)
