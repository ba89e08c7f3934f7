"""The university's logo file for the portal header: read once at start, its type told by its
content (PNG signature, or an SVG root element), never by its name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_BYTES = 256 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_ROOT = "{http://www.w3.org/2000/svg}svg"


class LogoError(ValueError):
    """Why the file cannot be the logo, said for the configuration's error message."""


@dataclass(frozen=True)
class Logo:
    data: bytes
    media_type: str  # image/png | image/svg+xml


def read_logo(path: Path) -> Logo:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError as exc:
        raise LogoError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise LogoError(f"{path} is a folder, not an image file") from exc
    except OSError as exc:
        raise LogoError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if len(data) > MAX_BYTES:
        raise LogoError(f"{path} is larger than {MAX_BYTES // 1024} KiB; make the image smaller")
    if data.startswith(PNG_SIGNATURE):
        return Logo(data, "image/png")
    if _svg_root(data):
        return Logo(data, "image/svg+xml")
    raise LogoError(
        f"{path} is neither a PNG nor an SVG image (told by its content: a PNG signature, or an "
        f'<svg xmlns="http://www.w3.org/2000/svg"> root element)'
    )


def _svg_root(data: bytes) -> bool:
    # defusedxml: no entity expansion or external entities, whatever the file holds.
    try:
        root = fromstring(data)
    except (ParseError, DefusedXmlException, ValueError):
        return False
    return bool(root.tag == SVG_ROOT)
