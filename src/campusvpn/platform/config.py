"""Reading the configuration file, and saying where it is wrong as `file:line: key: what`."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from campusvpn.platform.config_schema import Config as Config

CONFIG_ENV = "CAMPUSVPN_CONFIG"


class ConfigError(Exception):
    """A configuration problem, already phrased as `file:line: key: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: no such file; create one with `campusvpn init --dir DIR`"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from exc
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError([f"{where}: not valid TOML: {what}"]) from exc
    except RecursionError as exc:  # tomllib recurses once per nested array or inline table
        raise ConfigError([f"{path}: not valid TOML: arrays or tables nested too deeply"]) from exc
    try:
        base = path.parent.resolve()
        return Config.model_validate({**data, "base_dir": base}, context={"base_dir": base})
    except ValidationError as exc:
        lines = key_lines(text)
        raise ConfigError([_describe(err, path, lines) for err in exc.errors()]) from exc


def _key_part(name: str) -> str:
    """A key as TOML writes it: bare if it can be, else quoted (a key of spaces or dots is still seen)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def _describe(err: Any, path: Path, lines: dict[tuple[str | int, ...], int]) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    line = 0
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    key = ".".join(_key_part(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[") or "(top)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown setting; {_allowed_keys(loc[:-1])}"
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {key}: {msg}"


def _allowed_keys(loc: tuple[str | int, ...]) -> str:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return "see docs/configuration.md"
        ann = field.annotation
        model = getattr(ann, "__args__", (ann,))[0] if getattr(ann, "__origin__", None) is list else ann
    names = [n for n in model.model_fields if n != "base_dir"]
    return "allowed here: " + ", ".join(names)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.-]+)\s*=")


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each table and key path to the line it is written on, for error messages."""
    out: dict[tuple[str | int, ...], int] = {}
    prefix: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str, ...], int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        h = _HEADER.match(line)
        if h:
            names = tuple(p.strip().strip("\"'") for p in h.group(2).split("."))
            for n in range(1, len(names)):
                out.setdefault(names[:n], lineno)  # `[[vpn.profiles]]` also locates errors about [vpn]
            if h.group(1) == "[[":
                idx = array_counts.get(names, 0)
                array_counts[names] = idx + 1
                prefix = (*names, idx)
                out.setdefault(names, lineno)
            else:
                prefix = names
            out[prefix] = lineno
            continue
        k = _KEY.match(line)
        if k:
            parts = tuple(p.strip("\"'") for p in k.group(1).split("."))
            out[(*prefix, *parts)] = lineno
    return out


def config_path_from(option: str | None) -> Path:
    if option:
        return Path(option)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return Path("campusvpn.toml")
