"""How the CLI prints results: plain text for people, `--json` for scripts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from campusvpn.core.calendar import format_local

if TYPE_CHECKING:  # at run time the caller has loaded them already; `campusvpn --help` need not
    from campusvpn.core.policy import Decision
    from campusvpn.platform.config_schema import Config


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def local(cfg: Config, at: datetime | None) -> str:
    return format_local(at, cfg.zone) if at else "-"


def decision_text(cfg: Config, username: str, d: Decision) -> str:
    lines = []
    if d.allowed:
        lines.append(f"{username}: VPN access ALLOWED (as of {local(cfg, d.at)})")
    else:
        lines.append(f"{username}: VPN access REFUSED (as of {local(cfg, d.at)}), because:")
        for r in d.reasons:
            lines.append(f"  - {r.message}")
            lines.append(f"    [{r.code}]" + (f" changes at {local(cfg, r.until)}" if r.until else ""))
        if d.changes_at:
            lines.append(f"Access becomes possible at {local(cfg, d.changes_at)} without anyone doing anything.")
    for n in d.notices:
        lines.append(f"  note: {n.message}")
    return "\n".join(lines)
