"""The texts of notices (mail subject and body, SMS, the VPN client's banner), in English and
Japanese, with defaults here and the operator's own in `[notices] templates` (a TOML file):

    [training_deadline.ja]
    subject = "研修の期限は {deadline} です"
    body = \"\"\"...\"\"\"

Each kind has its own placeholders (PARAMS) plus {username}, {service}, {helpdesk} and
{portal_url}. A file naming an unknown kind, language, field or placeholder is refused when the
service starts, with its place; nothing is found out only when a notice is due."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

COMMON = ("username", "service", "helpdesk", "portal_url")
PARAMS: dict[str, tuple[str, ...]] = {
    "training_opens": ("fy", "opens", "deadline", "training_url"),
    "training_deadline": ("fy", "deadline", "days", "training_url"),
    "vpn_suspended_training": ("fy", "deadline", "training_url"),
    "vpn_suspended_account": ("reason",),
    "affiliation_ending": ("last_day", "days", "plural", "checklist"),
    "account_revoked": ("last_day",),
    "banner_training_due": ("fy", "deadline", "training_url"),
    "banner_affiliation_ending": ("last_day",),
}
FIELDS = ("subject", "body")
LANGS = ("en", "ja")

DEFAULTS: dict[str, dict[str, dict[str, str]]] = {
    "training_opens": {
        "en": {
            "subject": "This year's security training is open (due {deadline})",
            "body": "This year's (FY{fy}) information-security training is open from {opens}. Complete it at "
            "{training_url} by {deadline}; from the day after, the VPN refuses accounts ({username}) whose "
            "training is not recorded.",
        },
        "ja": {
            "subject": "今年度の情報セキュリティ研修が始まりました（期限 {deadline}）",
            "body": "今年度（FY{fy}）の情報セキュリティ研修を {opens} から受講できます。{deadline} までに "
            "{training_url} で受講してください。期限の翌日以降、受講記録のないアカウント（{username}）は "
            "VPN を利用できません。",
        },
    },
    "training_deadline": {
        "en": {
            "subject": "Security training due in {days} day(s): {deadline}",
            "body": "You have not yet completed this year's (FY{fy}) information-security training. It is due on "
            "{deadline} (in {days} day(s)); complete it at {training_url}, or the VPN will refuse your "
            "account ({username}) from the day after.",
        },
        "ja": {
            "subject": "情報セキュリティ研修の期限まであと {days} 日（{deadline}）",
            "body": "今年度（FY{fy}）の情報セキュリティ研修がまだ完了していません。期限は {deadline}"
            "（あと {days} 日）です。{training_url} で受講してください。期限の翌日以降、アカウント"
            "（{username}）は VPN を利用できなくなります。",
        },
    },
    "vpn_suspended_training": {
        "en": {
            "subject": "VPN use suspended: security training missing",
            "body": "This year's (FY{fy}) information-security training was due on {deadline} and is not "
            "recorded, so your account ({username}) cannot use the VPN. Complete it at {training_url}; "
            "VPN use is possible again once your completion is recorded.",
        },
        "ja": {
            "subject": "VPN 利用停止：情報セキュリティ研修が未受講です",
            "body": "今年度（FY{fy}）の情報セキュリティ研修（期限 {deadline}）の受講記録がないため、アカウント"
            "（{username}）は VPN を利用できません。{training_url} で受講してください。受講が記録されると"
            "再び利用できます。",
        },
    },
    "vpn_suspended_account": {
        "en": {
            "subject": "Your account is suspended",
            "body": "Your account ({username}) is suspended (reason: {reason}); the VPN and the portal refuse it "
            "until it is lifted. Contact {helpdesk}.",
        },
        "ja": {
            "subject": "アカウントが利用停止になりました",
            "body": "アカウント（{username}）は利用停止中です（理由：{reason}）。解除されるまで VPN とポータルは"
            "利用できません。{helpdesk} に連絡してください。",
        },
    },
    "affiliation_ending": {
        "en": {
            "subject": "Your account ends on {last_day}",
            "body": "Your affiliation with the university ends on {last_day} (in {days} day{plural}). After that "
            "day your account ({username}) and VPN access end. Before then, back up what you keep on "
            "university services:\n{checklist}",
        },
        "ja": {
            "subject": "アカウントは {last_day} に終了します",
            "body": "大学での所属は {last_day} に終了します（あと {days} 日）。その翌日以降、アカウント（{username}）"
            "と VPN は利用できなくなります。それまでに、大学のサービスに保存しているものをバックアップして"
            "ください：\n{checklist}",
        },
    },
    "account_revoked": {
        "en": {
            "subject": "Your account was closed",
            "body": "Your affiliation with the university ended on {last_day}, so your account ({username}) was "
            "closed: VPN and portal sign-in no longer work. If you are still a member of the university, "
            "contact {helpdesk}.",
        },
        "ja": {
            "subject": "アカウントは閉鎖されました",
            "body": "大学での所属が {last_day} に終了したため、アカウント（{username}）は閉鎖されました。VPN と"
            "ポータルにはサインインできません。大学の構成員である場合は {helpdesk} に連絡してください。",
        },
    },
    "banner_training_due": {
        "en": {"subject": "", "body": "Complete this year's security training at {training_url} by {deadline}."},
        "ja": {
            "subject": "",
            "body": "{deadline} までに {training_url} で今年度の情報セキュリティ研修を受講してください。",
        },
    },
    "banner_affiliation_ending": {
        "en": {"subject": "", "body": "Your account ends on {last_day}: back up your mail and files before then."},
        "ja": {
            "subject": "",
            "body": "アカウントは {last_day} に終了します。それまでにメールやファイルをバックアップしてください。",
        },
    },
}


class TemplateError(Exception):
    """A notice templates file that cannot be used, phrased as `file: key: what is wrong`."""


@dataclass(frozen=True)
class Texts:
    templates: dict[str, dict[str, dict[str, str]]]

    def render(self, kind: str, lang: str, **values: str) -> tuple[str, str]:
        """(subject, body) of `kind` in `lang` (en when another is asked for)."""
        t = self.templates[kind]["ja" if lang == "ja" else "en"]
        return t["subject"].format(**values), t["body"].format(**values)


def _check(where: str, kind: str, text: str) -> None:
    dummy = {k: "x" for k in (*COMMON, *PARAMS[kind])}
    try:
        text.format(**dummy)
    except KeyError as exc:
        allowed = ", ".join("{" + k + "}" for k in (*PARAMS[kind], *COMMON))
        raise TemplateError(f"{where}: unknown placeholder {{{exc.args[0]}}}; this notice knows {allowed}") from exc
    except (ValueError, IndexError) as exc:
        raise TemplateError(f"{where}: malformed template ({exc}); write {{ and }} as {{{{ and }}}}") from exc


def load(path: Path | None) -> Texts:
    """The defaults, overridden by the file at `path` (None: the defaults only)."""
    merged = {k: {lang: dict(v) for lang, v in langs.items()} for k, langs in DEFAULTS.items()}
    if path is None:
        return Texts(merged)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: not valid TOML: {exc}") from exc
    for kind, langs in data.items():
        if kind not in PARAMS:
            raise TemplateError(f"{path}: [{kind}]: unknown notice; known are {', '.join(PARAMS)}")
        if not isinstance(langs, dict):
            raise TemplateError(f"{path}: [{kind}]: expected tables [{kind}.en] and [{kind}.ja]")
        for lang, fields in langs.items():
            if lang not in LANGS or not isinstance(fields, dict):
                raise TemplateError(f"{path}: [{kind}.{lang}]: languages are en and ja")
            for name, text in fields.items():
                where = f"{path}: {kind}.{lang}.{name}"
                if name not in FIELDS or not isinstance(text, str):
                    raise TemplateError(f"{where}: fields are subject and body (strings)")
                _check(where, kind, text)
                merged[kind][lang][name] = text
    return Texts(merged)
