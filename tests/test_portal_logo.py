"""The university's logo: `[portal] logo` checked at start (exists, readable, at most 256 KiB, PNG or SVG by
its content), served at /logo with its type, cache headers and, for an SVG, a policy that runs nothing;
shown in the header with the university's name as its alt text; no logo, no image."""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import pytest
from tests.conftest import FAST, make_config
from tests.test_portal import client

from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import ConfigError, parse_config
from campusvpn.service.context import open_context


def _png() -> bytes:
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff"))
        + chunk(b"IEND", b"")
    )


HOSTILE_SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(document.cookie)</script><rect width="10" height="10" fill="#c00"/></svg>'
)


def _config_error(tmp_path: Path, logo: str) -> str:
    text = FAST + f'[portal]\nlogo = "{logo}"\n'
    path = tmp_path / "campusvpn.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        parse_config(text, path)
    return str(err.value)


def test_a_bad_logo_is_a_clear_config_error(tmp_path: Path) -> None:
    assert "portal.logo: " in _config_error(tmp_path, "missing.png") and "no such file" in _config_error(
        tmp_path, "missing.png"
    )
    (tmp_path / "big.png").write_bytes(_png() + b"\0" * (256 * 1024))
    assert "larger than 256 KiB" in _config_error(tmp_path, "big.png")
    (tmp_path / "logo.png").write_bytes(b"GIF89a not a png at all")  # the name says PNG, the content does not
    assert "neither a PNG nor an SVG" in _config_error(tmp_path, "logo.png")
    (tmp_path / "plain.svg").write_bytes(b"<html><body>no svg root</body></html>")
    assert "neither a PNG nor an SVG" in _config_error(tmp_path, "plain.svg")
    (tmp_path / "bomb.svg").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg">&b;</svg>'
    )
    assert "neither a PNG nor an SVG" in _config_error(tmp_path, "bomb.svg")  # entities are refused
    (tmp_path / "a-folder.png").mkdir()
    assert "is a folder" in _config_error(tmp_path, "a-folder.png")
    if os.geteuid() != 0:  # root reads every file
        locked = tmp_path / "locked.png"
        locked.write_bytes(_png())
        locked.chmod(0)
        assert "cannot read it" in _config_error(tmp_path, "locked.png")
    line = re.search(r"campusvpn\.toml:(\d+): portal\.logo", _config_error(tmp_path, "missing.png"))
    assert line and int(line.group(1)) == FAST.count("\n") + 2  # the line of `logo = ...`


def test_png_logo_is_served_with_type_and_cache_and_shown_with_alt(tmp_path: Path, clock: FixedClock) -> None:
    (tmp_path / "logo.png").write_bytes(_png())
    config = make_config(tmp_path, '[portal]\nlogo = "logo.png"\nuniversity = "Example University"\n')
    c = client(open_context(config, clock))
    r = c.get("/logo")
    assert r.status_code == 200 and r.content == _png() and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "public, max-age=86400" and r.headers["x-content-type-options"] == "nosniff"
    again = c.get("/logo", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    page = c.get("/signin").text
    assert '<img class="logo" id="logo" src="/logo" alt="Example University">' in page
    assert '<span class="university">' not in page  # the name is the image's alt text, not said twice


def test_svg_logo_cannot_run_script(tmp_path: Path, clock: FixedClock) -> None:
    (tmp_path / "logo.svg").write_bytes(HOSTILE_SVG)
    config = make_config(tmp_path, f'[portal]\nlogo = "{tmp_path / "logo.svg"}"\n')  # an absolute path too
    c = client(open_context(config, clock))
    r = c.get("/logo")
    assert r.status_code == 200 and r.content == HOSTILE_SVG
    assert r.headers["content-type"] == "image/svg+xml"
    assert r.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    page = c.get("/signin").text
    assert f'alt="{config.service.name}"' in page  # no university configured: the service's name


def test_no_logo_keeps_the_header_as_it_was(tmp_path: Path, clock: FixedClock) -> None:
    config = make_config(tmp_path, '[portal]\nuniversity = "Example University"\n')
    c = client(open_context(config, clock))
    page = c.get("/signin").text
    assert "<img" not in page.split("</header>")[0] and '<span class="university">Example University</span>' in page
    assert c.get("/logo").status_code == 404
