"""The texts of notices (mail subject and body, SMS, the VPN client's banner), in English and
Japanese, with defaults from the message catalogue (`notice.<kind>.subject` / `.body`) and the
operator's own in `[notices] templates` (a TOML file):

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

from campusvpn.texts.catalogue import entries

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


def defaults() -> dict[str, dict[str, dict[str, str]]]:
    """The catalogue's texts (keys `notice.<kind>.subject` and `notice.<kind>.body`; banners have no
    subject), as {kind: {lang: {field: text}}}."""
    known = entries()
    out: dict[str, dict[str, dict[str, str]]] = {}
    for kind in PARAMS:
        out[kind] = {lang: {} for lang in LANGS}
        for name in FIELDS:
            en, ja = known.get(f"notice.{kind}.{name}", ("", ""))
            out[kind]["en"][name], out[kind]["ja"][name] = en, ja
    return out


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
    merged = {k: {lang: dict(v) for lang, v in langs.items()} for k, langs in defaults().items()}
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
