"""What every harness shares: starting atheris, feeding bytes in chunks, and stating a contract.

A harness is a script `bench/fuzz/<target>.py` with `check(data)`; `run.py` starts it under
libFuzzer. A broken contract raises `Broken` (an AssertionError would vanish under `python -O`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator


class Broken(Exception):
    """The parser broke its contract on this input."""


def require(ok: object, what: str) -> None:
    if not ok:
        raise Broken(what)


def chunks(data: bytes) -> tuple[int, Iterator[bytes]]:
    """The first byte picks a chunk size (1..256); the rest is cut into pieces of that size.

    Stream parsers must give the same answer however the bytes are split; this lets the fuzzer
    explore the splits as well as the bytes.
    """
    size = (data[0] + 1) if data else 1
    rest = data[1:]
    return size, (rest[i : i + size] for i in range(0, len(rest), size))


def main(check: Callable[[bytes], None]) -> None:
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
