"""Self-service pages in Chromium, in both languages: the e-mail address for notices confirmed
by the mailed link (opened in a fresh browser context), and a password change."""

from __future__ import annotations

import re

from tests.browser.test_portal_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    Site,
    browser,
    shot,
    sign_in,
    sign_out,
    site,
)

NEW_PASSWORD = "purple elephants dance at noon"


def test_email_and_password_self_service_in_japanese_and_english(site: Site, browser: object) -> None:  # noqa: F811
    ctx = browser.new_context(ignore_https_errors=True, locale="ja-JP")  # type: ignore[attr-defined]
    page = ctx.new_page()
    sign_in(page, site, USER)
    page.goto(site.url + "/security?lang=ja")
    page.click("a[href='/email']")
    assert "taro@example.ac.jp" in page.inner_text("#email-current")
    page.fill("input[name=address]", "taro.yamada@mail.example.jp")
    page.click("button[value=address]")
    assert "taro.yamada@mail.example.jp にリンクを送信しました" in page.inner_text("main")
    shot(page, "email-sent-ja")
    mail = next(m for m in reversed(site.outbox()) if m["to"] == "taro.yamada@mail.example.jp")
    assert "リンクを開いてください" in mail["text"]
    link = re.search(r"/email/confirm\?token=\S+", mail["text"])
    assert link
    other = browser.new_context(ignore_https_errors=True, locale="ja-JP").new_page()  # type: ignore[attr-defined]
    other.goto(site.url + link.group(0))
    other.click("form[action^='/email/confirm'] button")
    assert "アドレスを確認しました" in other.inner_text("#email-confirmed")
    page.goto(site.url + "/email?lang=ja")
    assert "taro.yamada@mail.example.jp" in page.inner_text("#email-current")

    page.goto(site.url + "/password?lang=en")
    assert "At least 12 characters" in page.inner_text("#password-policy")
    page.fill("input[name=current]", PASSWORD)
    page.fill("input[name=new]", NEW_PASSWORD)
    page.fill("input[name=again]", NEW_PASSWORD + "!")
    page.click("form[action='/password'] button")
    assert "The two new passwords differ" in page.inner_text("main")
    page.fill("input[name=current]", PASSWORD)
    page.fill("input[name=new]", NEW_PASSWORD)
    page.fill("input[name=again]", NEW_PASSWORD)
    page.click("form[action='/password'] button")
    assert "Your password was changed" in page.inner_text("main")
    shot(page, "password-changed-en")
    sign_out(page)
    page.goto(site.url + "/signin")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", NEW_PASSWORD)
    page.click("button[type=submit]:not(.link)")
    page.wait_for_load_state()
    # Signed in with the new password: the home page greets the person (by name, not by number).
    assert "/signin" not in page.url and "Welcome," in page.inner_text("main")
    ctx.close()
