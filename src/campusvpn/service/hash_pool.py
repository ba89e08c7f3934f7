"""Argon2id in a pool of processes: a wave of sign-ins costs CPU there, not on a gateway worker's event
loop (whose threads would otherwise hold the GIL between hashes and delay packets).

`PooledHasher` is the `Hasher` every password and recovery-code check already goes through, so the
checks keep their single place; only where the arithmetic runs changes. The pool starts its processes
on the first sign-in (an idle gateway holds none) and uses `spawn`, so they carry Argon2 and nothing
of the worker's memory.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache

from campusvpn.core.hashing import Argon2Params, Hasher


@lru_cache(maxsize=4)
def _hasher(params: Argon2Params) -> Hasher:
    return Hasher(params)


def _follow(parent: int) -> None:
    """In each pool process: end when the worker that started it is gone (killed, or stopped without
    shutting the pool down), instead of living on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _verify(params: Argon2Params, stored: str, secret: str) -> bool:
    return _hasher(params).verify(stored, secret)


def _hash(params: Argon2Params, secret: str) -> str:
    return _hasher(params).hash(secret)


class PooledHasher(Hasher):
    def __init__(self, params: Argon2Params, processes: int) -> None:
        super().__init__(params)
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_follow,
            initargs=(os.getpid(),),
        )

    def verify(self, stored: str | None, secret: str) -> bool:
        # The decoy is checked in the pool too: "no such user" costs what "wrong password" costs.
        ok = self._pool.submit(_verify, self.params, stored or self._decoy, secret).result()
        return ok and stored is not None

    def hash(self, secret: str) -> str:
        return self._pool.submit(_hash, self.params, secret).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
