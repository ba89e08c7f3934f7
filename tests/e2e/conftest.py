"""One namespace test bed with the gateway running, shared by every e2e module of a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.e2e.testbed import Testbed, missing_requirements


@pytest.fixture(scope="session")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    if missing_requirements() is not None:
        pytest.skip(f"e2e: {missing_requirements()}")
    tb = Testbed(tmp_path_factory.mktemp("e2e"))
    try:
        tb.build()
        tb.init_site()
        tb.start_gateway()
        yield tb
    finally:
        tb.destroy()
        print(
            f"\n--- gateway log ({tb.gw_log}) tail ---\n" + "\n".join(tb.gw_log.read_text().splitlines()[-15:])
            if tb.gw_log.exists()
            else ""
        )
