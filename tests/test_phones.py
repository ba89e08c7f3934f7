"""Phone methods: adding, confirming with a code, and trying again after a lost code."""

from __future__ import annotations

from tests.conftest import add_user
from tests.helpers import sent_code

from campusvpn.service import mfa, phones
from campusvpn.service.context import Context
from campusvpn.service.sender import read_outbox


def _last_code(ctx: Context) -> str:
    return sent_code(str(read_outbox(ctx.config.path(ctx.config.sender.outbox))[-1]["text"]))


def test_a_phone_whose_code_was_lost_can_be_added_again(ctx: Context) -> None:
    add_user(ctx, "1234567890", "staff")
    mfa.apply(ctx, "1234567890", actor="t")
    first = phones.begin_phone(ctx, "1234567890", "mobile", "090-1234-5678", None, None, actor="t")
    # The code never arrives (or is mistyped): the user adds the same kind of phone again, and again.
    second = phones.begin_phone(ctx, "1234567890", "mobile", "090-1234-5678", None, None, actor="t")
    third = phones.begin_phone(ctx, "1234567890", "mobile", "080-9999-0000", None, None, actor="t")
    assert len({first, second, third}) == 3
    codes = phones.confirm_phone(ctx, "1234567890", third, _last_code(ctx), actor="t")
    assert codes is not None  # the first method registered: recovery codes come with it
    listed = mfa.show(ctx, "1234567890")
    assert [m["kind"] for m in listed["methods"]] == ["phone"]  # type: ignore[index]
