"""Japanese and English for the portal. The texts the portal owns live in the gettext catalogue
(texts/locale/ja/LC_MESSAGES/campusvpn.po, see texts/catalogue.py), keyed by short stable names; each entry has both
languages, so a page can never show up in one language only (tests check every entry is translated).
Here: choosing the language, and saying in Japanese what other layers say in English (policy
reasons, the sign-in engine, service errors)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from campusvpn.core.calendar import format_from, format_local
from campusvpn.core.policy import Reason
from campusvpn.signin.engine import SPENT_RECOVERY_CODE, UNAVAILABLE_EN, UNAVAILABLE_JA
from campusvpn.texts import catalogue

LANGUAGES = ("ja", "en")

# key: (English, Japanese). `{name}` placeholders are filled by `t`.
MESSAGES: dict[str, tuple[str, str]] = catalogue.messages()

REASONS: dict[str, tuple[str, str]] = {
    "account_revoked": (
        "",
        "アカウントは閉鎖されているため VPN を利用できません。大学の構成員である場合は {helpdesk} に連絡してください。",
    ),
    "account_suspended": (
        "",
        "アカウントが一時停止されているため VPN を利用できません（{reason}）。{helpdesk} に連絡してください。",
    ),
    "affiliation_not_started": ("", "大学での所属は {start} から始まります。その日から VPN を利用できます。"),
    "affiliation_ended": (
        "",
        "現在大学に所属していないため VPN を利用できません。誤りであれば {helpdesk} に連絡してください。",
    ),
    "affiliation_ending": (
        "",
        "所属は {end} に終了し、その翌日からアカウントと VPN は使えなくなります。大学のサービスに保存しているデータは"
        "それまでにバックアップしてください。",
    ),
    "mfa_not_applied": (
        "",
        "VPN に必要な多要素認証（MFA）を申請していません。{portal_url} で申請してください。申請の {minutes} 分後から利用できます。",
    ),
    "mfa_registration_required": (
        "",
        "確認方法が登録されていません。{portal_url} にサインインして、認証アプリまたは電話を登録してください。",
    ),
    "mfa_activation_pending": ("", "MFA の申請を有効化中です。{at}（あと {minutes} 分）から VPN を利用できます。"),
    "training_missing": (
        "",
        "今年度（{fy} 年度）の情報セキュリティ研修（期限 {deadline}）が未修了です。{training_url} で受講してください。"
        "修了が記録されると VPN を再び利用できます。",
    ),
    "training_due": (
        "",
        "今年度（{fy} 年度）の情報セキュリティ研修を {deadline} までに {training_url} で修了してください。期限の翌日から VPN を利用できなくなります。",
    ),
}

# Sentences the sign-in engine says, in Japanese (the engine speaks English to every front end).
ENGINE_JA: dict[str, str] = {
    "bad_credentials": "ユーザー名またはパスワードが正しくありません。",
    "unavailable": UNAVAILABLE_JA,
    "account_revoked": "大学での所属が終了したなどの理由でアカウントは閉鎖されているため、サインインできません。",
    "That code is not right. Check it and try again.": "コードが正しくありません。確認してもう一度入力してください。",
    "That code was already used. Wait for the next code in your app.": "このコードは使用済みです。アプリの次のコードを待ってください。",
    SPENT_RECOVERY_CODE: "この回復コードは使用済みか、作り直す前の古いコードです（各コードは 1 回だけ使えます）。別の回復コード、またはアプリや電話のコードを入力してください。",
    "That recovery code is not right or was already used.": "リカバリーコードが正しくないか、使用済みです。",
}


# Throttling and lock-outs: the engine's English, with its wait or time, said in Japanese.
ENGINE_JA_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"Too many failed attempts\. Wait (?P<n>\d+) seconds? and try again\."),
        "失敗が続いたため、{n} 秒待ってからもう一度お試しください。",
    ),
    (
        re.compile(r"Too many failed attempts\. Wait (?P<n>\d+) minutes \(until (?P<at>[^)]+)\) and try again\."),
        "失敗が続いたため、{n} 分後（{at}）以降にもう一度お試しください。",
    ),
    (
        re.compile(
            r"Too many failed attempts: sign-in is locked until (?P<at>.+?)\. "
            r"If this was not you, contact (?P<helpdesk>.+)\."
        ),
        "失敗が続いたため、{at} までサインインがロックされています。心当たりがない場合は {helpdesk} に連絡してください。",
    ),
]

# Audit events in words (the code stays in the page as data-event, and in the filter).
EVENTS: dict[str, tuple[str, str]] = catalogue.events()

# Sentences the service layer says (in English, for the CLI, the API and the log), in Japanese for
# the portal: a pattern for each message a portal page can show, with its facts as named groups.
SERVICE_JA: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), ja)
    for p, ja in (
        (r"\S+ has not applied for MFA; apply first.*", "MFA を申請していません。先に申請してください。"),
        (
            r"that code does not match; check the app shows the account (?P<account>.+) and that the phone's clock is right",
            "コードが一致しません。アプリに表示されているアカウントが {account} であること、スマートフォンの時刻が"
            "正しいことを確認してください。",
        ),
        (
            r"\S+ has no authenticator app waiting for confirmation.*",
            "設定中の認証アプリがありません。最初からやり直してください。",
        ),
        (
            r"\S+ already has an authenticator app;.*",
            "認証アプリは登録済みです。入れ替えるには、先に今の登録を削除してください。",
        ),
        (
            r"'(?P<n>.*)' is not (a|a valid) phone number; write it like (?P<ex>.*)",
            "「{n}」は電話番号として正しくありません。{ex} のように入力してください。",
        ),
        (
            r"'(?P<n>.*)' is not a mobile number; SMS codes need a mobile phone",
            "「{n}」は携帯電話の番号ではありません。SMS を受け取れるのは携帯電話だけです。",
        ),
        (r"only an office phone has an extension", "内線番号は勤務先電話にだけ入力できます。"),
        (r"extension '(?P<n>.*)' must be 1 to 10 digits", "内線番号「{n}」は 1〜10 桁の数字で入力してください。"),
        (r"phone kind .* is not known.*", "電話の種類を選んでください。"),
        (r"channel .* is not known.*", "コードの受け取り方法を選んでください。"),
        (
            r"a (?P<k>\w+) phone can only receive a voice call, not \w+",
            "この種類の電話では音声通話でのみコードを受け取れます。",
        ),
        (
            r"\S+ already has a (?P<k>\w+) phone; delete it first to change it",
            "この種類の電話は登録済みです。変更するには、先に今の登録を削除してください。",
        ),
        (
            r"that code is wrong or has expired; ask for a new one",
            "コードが正しくないか、有効期限が切れています。新しいコードを送信してください。",
        ),
        (
            r"no phone is waiting for confirmation; add it again",
            "確認待ちの電話がありません。もう一度追加してください。",
        ),
        (
            r"too many codes were sent in the last hour.*",
            "直近 1 時間に送信したコードが多すぎます。別の方法を使うか、しばらくしてからお試しください。",
        ),
        (r"there is no registered phone to send a code to", "コードを送信できる電話が登録されていません。"),
        (r"\S+ has no method \S+", "その確認方法は見つかりません（すでに削除されています）。"),
        (r"\S+ has no trusted device \S+", "その信頼済みデバイスは見つかりません（すでに取り消されています）。"),
        (r"there is no such passkey", "そのパスキーは見つかりません。"),
        (r"at most (?P<n>\d+) passkeys; delete one first", "パスキーは {n} 個までです。先に 1 つ削除してください。"),
        (r"the passkey could not be registered: .*", "パスキーを登録できませんでした。もう一度お試しください。"),
        (
            r"confirm with a second factor first: .* last (?P<m>\d+) minutes",
            "先に本人確認をしてください。セキュリティ情報の変更には直近 {m} 分以内のコードが必要です。",
        ),
        (r"\S+ applied for MFA on .*", "MFA は申請済みです。申請の取り消しや再申請はできません。"),
        (r"there is no account (?P<u>\S+)", "アカウント {u} はありません。"),
        (r"there is no live token \S+", "その API トークンは見つからないか、取り消し済みです。"),
        (r"say what the token is for", "トークンの用途を入力してください。"),
        (
            r"say how the person's identity was checked.*",
            "本人確認の方法を入力してください（監査ログに記録されます）。",
        ),
        (r"'(?P<u>.*)' is not a user name; a user name is .*", "「{u}」はユーザー名として正しくありません。"),
        (r"the part after @ must be .*", "@ の後ろのドメインが正しくありません。"),
        (
            r"(?P<what>\S+) '(?P<v>.*)' is not a date; write it as YYYY-MM-DD",
            "{what} の「{v}」は日付ではありません。YYYY-MM-DD の形式で入力してください。",
        ),
        (
            r"role '(?P<r>.*)' is not known; use one of: (?P<roles>.*)",
            "身分「{r}」は使えません。次のいずれかにしてください：{roles}",
        ),
        (
            r"the name is (?P<n>\d+) characters long; at most (?P<m>\d+) are kept",
            "氏名が {n} 文字あります。{m} 文字以内にしてください。",
        ),
        (r"the name contains control characters", "氏名に制御文字が含まれています。"),
        (r"the e-mail address is longer than 254 characters", "メールアドレスが 254 文字を超えています。"),
        (
            r"e-mail address '(?P<e>.*)' does not look like name@domain",
            "メールアドレス「{e}」の形式が正しくありません（name@domain の形式）。",
        ),
        (
            r"the affiliation ends \((?P<e>.*)\) before it starts \((?P<s>.*)\)",
            "所属期間の終了日（{e}）が開始日（{s}）より前です。",
        ),
        (
            r"\S+ already has a (?P<r>\S+) affiliation from (?P<s>\S+) .* overlapping this one",
            "{s} から始まる同じ身分（{r}）の所属期間と重なっています。",
        ),
        (r"completed_on (?P<d>\S+) is in the future", "修了日 {d} が未来の日付です。"),
        (r"the file is empty; the first line must name the columns", "ファイルが空です。1 行目に列名が必要です。"),
        (r"the header lacks column\(s\) (?P<m>.*); expected (?P<c>.*)", "見出し行に列 {m} がありません。必要な列：{c}"),
        (r"line (?P<n>\d+): not valid CSV: .*", "{n} 行目：CSV として読み取れません。"),
    )
]


def pick_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The user's choice (cookie) first, then the browser's order of preference."""
    if cookie in LANGUAGES:
        return str(cookie)
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        lang = tag.split("-")[0].strip().lower()
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if lang in LANGUAGES and (best is None or weight > best[0]):
            best = (weight, lang)
    return best[1] if best else default


class Translator:
    def __init__(
        self, lang: str, zone: ZoneInfo, helpdesk: tuple[str, str] = ("the IT help desk", "IT ヘルプデスク")
    ) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.zone = zone
        self._helpdesk = helpdesk  # (English, Japanese): the configured name, said in the page's language

    @property
    def helpdesk(self) -> str:
        return self._helpdesk[1] if self.lang == "ja" else self._helpdesk[0]

    def __call__(self, key: str, **kw: object) -> str:
        en, ja = MESSAGES[key]
        text = ja if self.lang == "ja" else en
        return text.format(**kw) if kw else text

    # gettext for `{% trans %}` blocks (Jinja's i18n extension finds these in the page's context): the
    # English text is the msgid; Japanese has one form for every number.
    def gettext(self, text: str) -> str:
        return catalogue.by_english().get(text, text) if self.lang == "ja" else text

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular) if self.lang == "ja" or n == 1 else plural

    def pgettext(self, context: str, text: str) -> str:
        if self.lang != "ja":
            return text
        return catalogue.entries().get(context, (text, ""))[1] or text

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return self.pgettext(context, singular) if self.lang == "ja" or n == 1 else plural

    def time(self, at: datetime | None) -> str:
        return format_local(at, self.zone) if at else ""

    def when(self, at: datetime | str | None) -> str:
        """A stored time (a datetime or its ISO text, UTC) as local time in the configured zone."""
        if not at:
            return ""
        if isinstance(at, str):
            try:
                parsed = datetime.fromisoformat(at)
            except ValueError:
                return at
        else:
            parsed = at
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return format_local(parsed, self.zone)

    def day(self, at: datetime | str | None) -> str:
        """Only the local date of a stored time."""
        return self.when(at)[:10]

    def from_time(self, at: datetime | None) -> str:
        """When something becomes possible: the first whole minute at or after `at`."""
        return format_from(at, self.zone) if at else ""

    def reason(self, r: Reason) -> str:
        """A policy reason in the user's language, from its code and facts."""
        if self.lang != "ja" or r.code not in REASONS:
            return r.message
        params = {**r.params, "at": self.from_time(r.until), "helpdesk": self.helpdesk}
        try:
            return REASONS[r.code][1].format(**params)
        except KeyError:
            return r.message

    def method(self, m: Any) -> str:
        """A verification method's name in the page's language. The service and the sign-in engine name
        methods in English ("Authenticator app", "Mobile phone +81********78"); the kind word is swapped."""
        label = str(m.get("label") if isinstance(m, dict) else getattr(m, "label", "")) or ""
        if label == "Authenticator app":
            return self("method.totp")
        kind = re.fullmatch(r"(Mobile|Alternate|Office) phone(?: (.*))?", label)
        if kind:
            return f"{self('method.phone.' + kind.group(1).lower())} {kind.group(2) or ''}".strip()
        return label

    def device(self, label: str) -> str:
        """A trusted device's name ("Chrome on Windows", made at sign-in) in the page's language."""
        if self.lang != "ja":
            return label
        browser, _, system = label.partition(" on ")
        browser = {"Browser": "ブラウザー"}.get(browser, browser)
        system = {"unknown system": "不明なシステム"}.get(system, system)
        return f"{browser}（{system}）" if system else browser

    def event(self, code: str) -> str:
        """An audit event in words; an event not named here (a new one) shows its code."""
        names = EVENTS.get(code)
        return (names[1] if self.lang == "ja" else names[0]) if names else code

    def outcome(self, outcome: str) -> str:
        return self(f"outcome.{outcome}") if f"outcome.{outcome}" in MESSAGES else outcome

    def actor(self, actor: str) -> str:
        return self("actor.system") if actor == "system" else actor

    def service_error(self, exc: Exception | str) -> str:
        """A service error in the page's language: its English sentence, or the Japanese one it matches."""
        text = str(exc)
        if self.lang != "ja":
            return text
        for pattern, ja in SERVICE_JA:
            m = pattern.fullmatch(text)
            if m:
                return ja.format(**m.groupdict(), helpdesk=self.helpdesk)
        return text

    def engine(self, text: str | None, code: str | None = None) -> str:
        if text is None:
            return ""
        if self.lang != "ja":
            return UNAVAILABLE_EN if code == "unavailable" else text  # the engine says it in both languages
        for pattern, ja in ENGINE_JA_PATTERNS:  # messages that carry a time or a count
            m = pattern.fullmatch(text)
            if m:
                return ja.format(**m.groupdict())
        return ENGINE_JA.get(code or "", ENGINE_JA.get(text, text))
