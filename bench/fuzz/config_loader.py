"""The configuration loader (`platform.config.parse_config`): TOML text to Config, or ConfigError with a place.

Contract: a Config, or a ConfigError whose every problem starts with the file's name (and a line
when one is known); never another exception. `key_lines` never raises and points only at lines
of the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn.platform", "tomllib"]):
    from campusvpn.platform.config import Config, ConfigError, key_lines, parse_config

PATH = Path("/nonexistent/campusvpn-fuzz/campusvpn.toml")  # nothing is read from it
PLACE = re.compile(rf"^{re.escape(str(PATH))}(:\d+)?: \S")


def check(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    count = len(text.splitlines())
    for key, line in key_lines(text).items():
        require(1 <= line <= count, f"{key} located on line {line} of {count}")
    try:
        cfg = parse_config(text, PATH)
    except ConfigError as exc:
        require(exc.problems, "a ConfigError with no problem")
        for p in exc.problems:
            require(PLACE.match(p), f"a problem without its place: {p!r:.200}")
        return
    require(isinstance(cfg, Config), "not a Config")


if __name__ == "__main__":
    main(check)
