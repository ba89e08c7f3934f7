"""CSV imports' reader (`service.accounts.csv_rows`) for the roster's and the training file's columns.

Contract: a reason (a catalogue message) or rows; each row starts on a line after the header, in increasing
order, has only header columns, text values, and no row is blank; never an exception.
"""

from __future__ import annotations

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn"]):
    from campusvpn.service.accounts import IMPORT_COLUMNS, csv_rows

SHAPES = (IMPORT_COLUMNS, ("username", "completed_on"))


def check(data: bytes) -> None:
    text = data[1:].decode("utf-8", "replace")
    columns = SHAPES[data[0] % 2] if data else IMPORT_COLUMNS
    rows = csv_rows(text, columns)
    if not isinstance(rows, list):
        require(bool(str(rows.code)), "a reason without its code")
        return
    last = 1
    lines = text.count("\n") + text.count("\r") + 1
    for line, row in rows:
        require(last < line <= lines + 1, f"row line {line} after {last} (of {lines})")
        last = line
        if "__error__" in row:
            continue
        require(all(isinstance(k, str) and isinstance(v, str) for k, v in row.items()), "a value is not text")
        require(any(v.strip() for v in row.values()), "a blank row")


if __name__ == "__main__":
    main(check)
