"""The pure parts of running several gateway workers: device names, route requests, the values workers
share, a sign-in continued in another worker, Argon2id in a process pool, and the worker count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from tests.cli_run import run_campusvpn
from tests.conftest import PASSWORD, add_user
from tests.helpers import enrol_totp
from tests.test_gateway_login import init, inputs, new_login, reply

from campusvpn.anyconnect.login import GatewayLogin
from campusvpn.app.workers import config_fd, device_names, parse_route_request, route_request
from campusvpn.core.hashing import Argon2Params, Hasher
from campusvpn.fortinet.login import FortiLogin
from campusvpn.platform.clock import FixedClock
from campusvpn.platform.config import load_config
from campusvpn.platform.config_schema import GatewaySection
from campusvpn.platform.local_share import LocalShare
from campusvpn.service import live_sessions, sessions
from campusvpn.service.context import Context
from campusvpn.service.hash_pool import PooledHasher

POOLS = ["172.31.0.0/16", "10.9.0.0/24"]


def test_each_worker_has_its_own_device_within_the_kernels_name_limit() -> None:
    assert device_names("cvpn0", 3) == ["cvpn0", "cvpn0w1", "cvpn0w2"]
    assert device_names("cvpn0", 1) == ["cvpn0"]
    with pytest.raises(ValueError, match="longer than Linux allows"):
        device_names("a-long-device", 12)


@pytest.mark.parametrize("address", ["172.31.0.2", "172.31.255.254", "10.9.0.77"])
def test_a_client_address_of_a_pool_may_be_routed(address: str) -> None:
    assert parse_route_request(route_request(address), POOLS) == address


@pytest.mark.parametrize(
    "data",
    [
        route_request("172.31.0.1"),  # the gateway's own address
        route_request("172.31.0.0"),  # network
        route_request("10.9.0.255"),  # broadcast
        route_request("10.201.0.2"),  # the campus: never a tunnel's
        route_request("127.0.0.1"),
        b"R\x0a\x09\x00",  # short
        b"R\x0a\x09\x00\x05\x00",  # long
        b"X\x0a\x09\x00\x05",  # another verb
        b"",
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    assert parse_route_request(data, POOLS) is None


@pytest.mark.parametrize("folder", [True, False])
def test_shared_values_round_trip_expire_and_refuse_odd_keys(tmp_path: Path, folder: bool) -> None:
    one = LocalShare(tmp_path if folder else None, max_age=60)
    other = LocalShare(tmp_path, max_age=60) if folder else one  # another worker sees the same folder
    one.put("login", "abc_DEF-123", {"step": "password", "n": 1})
    assert other.get("login", "abc_DEF-123") == {"step": "password", "n": 1}
    assert other.pop("login", "abc_DEF-123") == {"step": "password", "n": 1}
    assert one.get("login", "abc_DEF-123") is None
    for key in ("../../etc/passwd", "a/b", "", "x" * 65, "é"):
        assert one.get("login", key) is None
        with pytest.raises(ValueError):
            one.put("login", key, 1)
    if folder:
        one.put("notice", "s1", "hello")
        old = tmp_path / "notice-s1"
        os.utime(old, (0, 0))
        assert other.get("notice", "s1") is None  # older than max_age
        assert json.loads(old.read_text()) == "hello"


def test_a_sign_in_continues_in_another_worker_from_its_snapshot(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    first = new_login(ctx)
    first.handle_request(init())
    code_form = first.handle_request(reply(first.handle, username="1234567890", password=PASSWORD))
    assert inputs(code_form.body) == ["secondary_password"]
    data = json.loads(json.dumps(first.snapshot()))  # as another worker reads it
    second = GatewayLogin.restore(ctx, "AB", data)
    assert (second.handle, second.source, second.username) == (first.handle, "192.0.2.7", "1234567890")
    done = second.handle_request(reply(second.handle, secondary_password=pyotp.TOTP(secret).at(clock.now())))
    assert done.finished and done.token
    assert [s["user"] for s in sessions.listing(ctx)] == ["1234567890"]


def test_a_fortinet_challenge_continues_in_another_worker(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    secret, _ = enrol_totp(ctx, clock)
    first = FortiLogin(ctx, source="192.0.2.8", user_agent="openfortivpn")
    challenge = first.password("1234567890", PASSWORD)
    assert not challenge.finished
    second = FortiLogin.restore(ctx, json.loads(json.dumps(first.snapshot())))
    assert second.magic == first.magic and second.username == "1234567890"
    done = second.code(pyotp.TOTP(secret).at(clock.now()))
    assert done.finished and done.token


def test_the_pooled_hasher_checks_what_the_plain_one_made() -> None:
    params = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
    plain = Hasher(params)
    pooled = PooledHasher(params, processes=1)
    try:
        stored = plain.hash("a secret")
        assert pooled.verify(stored, "a secret")
        assert not pooled.verify(stored, "another")
        assert not pooled.verify(None, "a secret")  # no such user: the decoy, still refused
        assert plain.verify(pooled.hash("made in the pool"), "made in the pool")
    finally:
        pooled.close()


def test_auto_is_one_worker_per_usable_core_and_numbers_are_bounded() -> None:
    assert GatewaySection().worker_count() == len(os.sched_getaffinity(0))
    assert GatewaySection(workers=1).worker_count() == 1
    for bad in (0, 257, "many"):
        with pytest.raises(ValueError):
            GatewaySection(workers=bad)


def test_a_session_taken_over_by_another_worker_is_that_workers_alone(ctx: Context, clock: FixedClock) -> None:
    add_user(ctx)
    enrol_totp(ctx, clock)  # the policy lets only MFA users connect
    opened = live_sessions.open_for_vpn(
        ctx, "1234567890", None, pool="172.31.0.0/16", source="192.0.2.7", client="oc", protocol="anyconnect"
    )
    since = clock.now()
    assert isinstance(live_sessions.attach(ctx, opened.token, "gw/0"), live_sessions.Attached)
    assert live_sessions.taken_over(ctx, since, frozenset({opened.session_id}), "gw/0") == []
    clock.advance(timedelta(seconds=3))
    since = clock.now()
    assert isinstance(live_sessions.attach(ctx, opened.token, "gw/1"), live_sessions.Attached)  # the reconnect
    among = frozenset({opened.session_id})
    assert live_sessions.taken_over(ctx, since, among, "gw/0") == [opened.session_id]
    assert live_sessions.taken_over(ctx, since, among, "gw/1") == []
    # Worker 0's late "disconnected" does not undo worker 1's tunnel.
    sessions.mark(ctx, opened.session_id, connected=False, node="gw/0")
    [row] = sessions.listing(ctx)
    assert row["connected"] and row["node"] == "gw/1"


def test_a_worker_imports_only_what_serving_needs(tmp_path: Path) -> None:
    """Start-up memory: what a gateway worker loads before its first sign-in leaves out the portal,
    migrations, passkeys, QR codes, the command line, phone-number metadata, the SMTP and SMS
    clients of worker 0's mail round and, without DTLS, the crypto library (DTLS reaches OpenSSL
    through pyOpenSSL's bindings, which live in `cryptography`); it takes the parent's validated
    config and builds none of pydantic's validators, and on SQLite no PostgreSQL dialect."""
    r = run_campusvpn(None, "init", "--dir", str(tmp_path / "site"), "--service-user", "")
    assert r.returncode == 0, r.stderr
    config_file = tmp_path / "site" / "campusvpn.toml"
    text = config_file.read_text()
    assert "\ndtls = true\n" in text
    config_file.write_text(text.replace("\ndtls = true\n", "\ndtls = false\n"))
    handed = tmp_path / "config.pickle"  # what the parent writes into the worker's config fd
    with handed.open("wb") as f, os.fdopen(config_fd(load_config(config_file)), "rb") as fd:
        f.write(fd.read())
    probe = (
        "import os, sys\n"
        "from campusvpn.cli import worker\n"
        "from campusvpn.app.serve import build\n"
        "from campusvpn.app.workers import read_config\n"
        "from campusvpn.service import lifecycle, mail_sender\n"  # worker 0's chores
        "from campusvpn.service.context import open_context\n"
        "from campusvpn.platform.config_schema import Config\n"
        "ctx = open_context(read_config(os.open(sys.argv[1], os.O_RDONLY)), migrate=False)\n"
        "build(ctx, tun_fd=None)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
        "print('validators built' if Config.__pydantic_complete__ else 'no validators')\n"
        "print(' '.join(m for m in sys.modules if m.startswith('sqlalchemy.dialects.')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, str(handed)], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    modules, validators, dialects = r.stdout.splitlines()
    loaded = set(modules.split())
    assert {"sqlalchemy", "h11", "pydantic"} <= loaded  # the probe did load the serving path
    assert not loaded & {
        "alembic",
        "fastapi",
        "jinja2",
        "webauthn",
        "segno",
        "click",
        "cryptography",
        "pyroute2",
        "ldap3",
        "authlib",
        "saml2",
        "httpx",
        "aiosmtplib",
        "phonenumbers",
    }
    assert validators == "no validators"
    assert "sqlalchemy.dialects.postgresql" not in dialects.split()  # the site's database is SQLite
