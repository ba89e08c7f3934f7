"""The VPN clients' own dialogue (AnyConnect XML forms, the Fortinet challenge) speaks the person's
language: their stored one once the user name is known, both languages before (the same rule as
the error box, service.client_texts); and none of its texts is an English literal in the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pyotp
import pytest
from defusedxml import ElementTree as SafeET
from tests.conftest import PASSWORD, add_user
from tests.helpers import enrol_totp, sent_code
from tests.test_gateway_login import init, new_login, reply

from campusvpn.fortinet.login import FortiLogin
from campusvpn.platform.clock import FixedClock
from campusvpn.service import mfa, phones, self_service
from campusvpn.service.context import Context
from campusvpn.service.sender import read_outbox

SRC = Path(__file__).parent.parent / "src" / "campusvpn"
SCANNED = ("anyconnect", "fortinet", "signin", "service", "tunnels")

# Calls whose arguments reach a VPN client's screen (or a gateway page a person reads): the XML
# builders, the dialogues' form and refusal helpers, the engine's outputs, the connect banner; for
# an HTTP answer only its body (position 2), not its headers; for a tunnel's close only what the
# client is told (`told`), not the English reason kept for the logs; a session's stored end reason.
ALL = None
SINKS: dict[str, int | str | None] = {
    "close": "told",
    "end_for_user": 3,
    "auth_form": ALL,
    "sso_form": ALL,
    "complete": ALL,
    "logout_ok": ALL,
    "Input": ALL,
    "_fail": ALL,
    "_password_form": ALL,
    "_code_form": ALL,
    "_challenge": ALL,
    "_challenge_body": ALL,
    "_refuse": ALL,
    "refuse": ALL,
    "Prompt": ALL,
    "Finished": ALL,
    "SendOutcome": ALL,
    "LoginReply": ALL,
    "LoginAnswer": 1,
    "connect_banner": ALL,
    "_page": ALL,
    "plain": 2,
    "respond": 2,
}
# Answers at the HTTP level to requests no VPN client makes (a stray path or method).
PROTOCOL_PHRASES = {"Not found", "Not found\n", "Method not allowed\n"}
# FortiGate's own denial, which clients recognise by its key (fortinet.login.DENIED).
PROTOCOL_PHRASES.add("<!--sslvpnerrmsgkey=sslvpn_login_permission_denied-->\npermission denied\n")
TAG = re.compile(r"<[^>]*>")
CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(; *charset=[\w-]+)?$")
# Words in a row, or a capitalised field label ("Username:"): a sentence for a person.
PROSE = re.compile(r"[A-Za-z]{2,}[,.;:!?]? +[A-Za-z]+|^[A-Z][a-z]+:$")


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _text_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # the literal parts, with {} for what is filled in
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)  # type: ignore[misc]
    return None


def _assigned(nodes: list[ast.AST] | list[ast.stmt]) -> dict[str, list[ast.expr]]:
    """Names assigned among `nodes` (a module's statements, or everything in a function)."""
    out: dict[str, list[ast.expr]] = {}
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, []).append(node.value)
    return out


def _is_prose(text: str) -> bool:
    if text in PROTOCOL_PHRASES or CONTENT_TYPE.match(text):
        return False
    return bool(PROSE.search(TAG.sub(" ", text)))  # markup is not prose; what a page says is


def english_handed_to_clients(source: str, filename: str) -> list[str]:
    """Literals reaching a sink: directly, through a name assigned in the module (a constant, a
    local), or as what a function of the module returns (a page or a help text built there)."""
    tree = ast.parse(source, filename)
    module_names = _assigned(tree.body)
    returned = {
        f.name: [r.value for r in ast.walk(f) if isinstance(r, ast.Return) and r.value]
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    found: set[str] = set()

    def visit(expr: ast.expr, names: dict[str, list[ast.expr]], seen: set[int]) -> None:
        if id(expr) in seen:
            return
        seen.add(id(expr))
        nodes = list(ast.walk(expr))
        parts = {id(v) for n in nodes if isinstance(n, ast.JoinedStr) for v in n.values}
        # `answer.body`, `login.refuse(...)`: an object's name says nothing of the text it holds.
        bases = {id(n.value) for n in nodes if isinstance(n, ast.Attribute)}
        for node in nodes:
            text = None if id(node) in parts else _text_of(node)
            if text is not None and _is_prose(text):
                found.add(f"{filename}:{node.lineno}: {text!r}")  # type: ignore[attr-defined]
            elif isinstance(node, ast.Name) and id(node) not in bases:
                for value in names.get(node.id, []):
                    visit(value, names, seen)
            elif isinstance(node, ast.Call) and _name(node.func) not in SINKS:
                for value in returned.get(_name(node.func), []):
                    visit(value, module_names, seen)

    scopes = [(tree, module_names)] + [
        (f, {**module_names, **_assigned(list(ast.walk(f)))})
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    for scope, names in scopes:
        for call in ast.walk(scope):
            if not (isinstance(call, ast.Call) and _name(call.func) in SINKS):
                continue
            only = SINKS[_name(call.func)]
            if only is ALL:
                args = [*call.args, *(k.value for k in call.keywords)]
            elif isinstance(only, str):
                args = [k.value for k in call.keywords if k.arg == only]
            else:
                args = call.args[only : only + 1]
            for arg in args:
                visit(arg, names, set())
    return sorted(found, key=lambda f: int(f.split(":")[1]))


def test_no_english_literal_is_handed_to_a_vpn_client() -> None:
    """Every text a client shows is a catalogue code rendered in the reader's language."""
    found = []
    for package in SCANNED:
        for path in sorted((SRC / package).rglob("*.py")):
            text = path.read_text()
            found += english_handed_to_clients(text, str(path.relative_to(SRC)))
            assert "CLIENT_LANGUAGE" not in text, f"{path}: the client's language is the person's, not a constant"
    assert not found, "English literals handed to clients:\n" + "\n".join(found)


def test_the_scan_finds_a_sentence_a_label_and_an_f_string() -> None:
    """The check above can fail: each kind of literal it is there to catch is caught."""
    source = (
        'self._fail("This sign-in has ended. Start again.")\n'
        'Input("text", "username", "Username:")\n'
        'xmlauth.auth_form(handle=h, title=t, message=f"Sign in to {name} now.", inputs=[])\n'
        'Finished(False, "throttled", said)\n'  # a code, not prose
        'NO_BROWSER = "Use another client."\n'
        "self._fail(NO_BROWSER)\n"
        "def help() -> str:\n"
        '    return f"<p>Choose a group: {names}</p>"\n'
        "login.refuse(self.help())\n"
        'respond(conn, 200, f\'<input type="text" name="{n}">\', "text/html; charset=utf-8")\n'  # markup only
    )
    assert [f.split(": ", 1)[1] for f in english_handed_to_clients(source, "x.py")] == [
        "'This sign-in has ended. Start again.'",
        "'Username:'",
        "'Sign in to {} now.'",
        "'Use another client.'",
        "'<p>Choose a group: {}</p>'",
    ]


def _message(body: bytes) -> str:
    return SafeET.fromstring(body).find("auth/message").text or ""


def _labels(body: bytes) -> list[str]:
    return [i.get("label") or "" for i in SafeET.fromstring(body).findall("auth/form/input")]


def _phone_user(ctx: Context, clock: FixedClock, language: str | None) -> None:
    add_user(ctx)
    if language:
        self_service.set_language(ctx, "1234567890", language)
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
    clock.advance(ctx.config.mfa.activation_delay)


def test_anyconnect_speaks_japanese_to_a_japanese_reader(ctx: Context, clock: FixedClock) -> None:
    _phone_user(ctx, clock, "ja")
    lg = new_login(ctx)
    first = lg.handle_request(init())
    # Nobody is named yet: the password form is in both languages, short labels for the client.
    assert _labels(first.body) == ["ユーザー名 / User name:", "パスワード / Password:"]
    assert "サインイン" in _message(first.body) and "Sign in" in _message(first.body)
    form = lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
    prompt = _message(form.body)
    assert "携帯電話 +81********78" in prompt and "「sms」または「call」" in prompt and "「 trust」" in prompt
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", prompt), prompt  # no English sentence
    assert _labels(form.body) == ["確認コード:"]
    sent = lg.handle_request(reply(lg.handle, secondary_password="sms"))
    assert "携帯電話 +81********78 に SMS で確認コードを送信しました。" in _message(sent.body)
    code = sent_code(read_outbox(ctx.config.path(ctx.config.sender.outbox))[-1]["text"])
    done = lg.handle_request(reply(lg.handle, secondary_password=f"{code} trust"))
    assert done.token and done.notice
    assert "まで信頼済みです" in done.notice and "trusted" not in done.notice
    assert "VPN の IP アドレスは" in _message(done.body) and "Your VPN address" not in _message(done.body)
    banner = SafeET.fromstring(done.body).find("auth/banner").text or ""
    assert done.notice in banner


def test_anyconnect_speaks_both_languages_to_someone_who_never_chose(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    lg = new_login(ctx)
    lg.handle_request(init())
    form = lg.handle_request(reply(lg.handle, username="1234567890", password=PASSWORD))
    prompt = _message(form.body)
    assert "認証アプリ" in prompt and "authenticator app" in prompt.lower() and "「 trust」" in prompt
    assert '" trust"' in prompt
    assert _labels(form.body) == ["確認コード / Verification code:"]
    done = lg.handle_request(reply(lg.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    assert "VPN の IP アドレスは" in _message(done.body) and "Your VPN address is" in _message(done.body)


def test_fortinet_speaks_the_readers_language(ctx: Context, clock: FixedClock) -> None:
    _phone_user(ctx, clock, "ja")
    lg = FortiLogin(ctx, source="192.0.2.7", user_agent="Mozilla/5.0 SV1")
    first = lg.password("1234567890", PASSWORD)
    prompt = first.body.split("chal_msg=", 1)[1]
    assert "携帯電話 +81********78" in prompt and "「sms」または「call」" in prompt
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", prompt), prompt
    empty = lg.code("")
    assert "コードを入力してください。" in empty.body and "Enter" not in empty.body
    sent = lg.code("call")
    assert "電話をかけ、確認コードを音声でお伝えします" in sent.body


def test_fortinet_speaks_both_languages_to_someone_who_never_chose(ctx: Context, clock: FixedClock) -> None:
    _phone_user(ctx, clock, None)
    lg = FortiLogin(ctx, source="192.0.2.7", user_agent="Mozilla/5.0 SV1")
    prompt = lg.password("1234567890", PASSWORD).body.split("chal_msg=", 1)[1]
    assert "Mobile phone +81********78" in prompt and "携帯電話 +81********78" in prompt
    assert "Type sms or call" in prompt and "「sms」または「call」" in prompt


def test_password_rules_and_method_names_are_said_in_the_readers_language(ctx: Context, clock: FixedClock) -> None:
    from sqlalchemy import select

    from campusvpn.service.errors import Invalid
    from campusvpn.store.models import MailMessage, User
    from campusvpn.texts.render import render

    add_user(ctx)
    with pytest.raises(Invalid) as exc:
        self_service.change_password(ctx, "1234567890", PASSWORD, "1234567890a", fresh_second_factor_at=None)
    ja, en = render(exc.value.said, "ja"), str(exc.value)
    assert "ユーザー名を含めないでください" in ja and "文字以上にしてください" in ja, ja
    assert "it must not contain your user name" in en and "it must have at least" in en, en
    with ctx.tx() as s:
        user = s.scalars(select(User).where(User.username == "1234567890")).one()
        user.email, user.language = "a@example.ac.jp", "ja"
    _phone_user_methods(ctx, clock)
    with ctx.tx() as s:
        bodies = [m.body for m in s.scalars(select(MailMessage))]
    assert any("確認方法が追加されました：携帯電話 +81********78" in b for b in bodies), bodies
    assert not any("Mobile phone" in b for b in bodies), bodies


def _phone_user_methods(ctx: Context, clock: FixedClock) -> None:
    mfa.apply(ctx, "1234567890", actor="t")
    phones.add_phone(ctx, "1234567890", "mobile", "+819012345678", None, actor="t")
