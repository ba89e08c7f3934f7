"""The `campusvpn` command as operators and other parts call it (a real subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest
from tests.cli_run import run_campusvpn

FAST = "\n[passwords]\nargon2_time_cost = 1\nargon2_memory_kib = 8192\n"


run = run_campusvpn


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    r = run(None, "init", "--dir", str(tmp_path / "site"), "--service-user", "")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "site" / "campusvpn.toml"
    text = path.read_text().replace("argon2_time_cost = 2", "argon2_time_cost = 1")
    path.write_text(text.replace("argon2_memory_kib = 19456", "argon2_memory_kib = 8192"))
    return path


def test_init_writes_config_keys_certificate_and_database(conf: Path) -> None:
    site = conf.parent
    assert {p.name for p in site.iterdir()} >= {
        "campusvpn.toml",
        "secret.keys",
        "identity-link.key",
        "tls",
        "campusvpn.db",
    }
    assert (site / "secret.keys").stat().st_mode & 0o077 == 0
    assert (site / "identity-link.key").stat().st_mode & 0o077 == 0
    assert (site / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    assert run(conf, "config", "check").returncode == 0
    again = run(None, "init", "--dir", str(site))
    assert again.returncode != 0 and "never overwrites" in again.stderr


@pytest.mark.parametrize(
    ("snippet", "line", "expect"),
    [
        ('[mfa]\nactivation_delay = "forty minutes"\n', 2, "mfa.activation_delay: 'forty minutes' is not a duration"),
        ("[mfa]\ntotp_digits = 7\n", 2, "mfa.totp_digits: Input should be 6 or 8"),
        (
            "[throttle]\n\npassword_lock_after = 500\n",
            3,
            "throttle.password_lock_after: Input should be less than or equal to 100",
        ),
        ('[mfa]\nactivation_dela = "40m"\n', 2, "mfa.activation_dela: unknown setting; allowed here: activation_delay"),
        ('[service]\ntimezone = "Mars/Olympus"\n', 2, "unknown time zone 'Mars/Olympus'"),
        (
            '[[training.windows]]\nname = "x"\nroles = ["student"]\nopens = "13-01"\ndeadline = "06-30"\n',
            4,
            "training.windows[0].opens: '13-01' is not a day of the year",
        ),
        ("[mfa\nx = 1\n", 1, "not valid TOML"),
        (
            '\n[[vpn.profiles]]\nname = "x"\nsettings = { pool = "10.0.0.1/8" }\n',
            2,
            "vpn: profile 'x': pool: '10.0.0.1/8' is not a network",
        ),
        ("[vpn]\nsplit_include = []\n", 1, "set split_include (the campus networks) or full_tunnel = true"),
        ('[gateway]\nlisten = "443"\n', 2, "gateway.listen: '443': write ADDRESS:PORT"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, snippet: str, line: int, expect: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(snippet)
    r = run(path, "config", "check")
    assert r.returncode == 2
    assert f"{path}:{line}: " in r.stderr
    assert expect in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    r = run(tmp_path / "nope.toml", "user", "show", "1234567890")
    assert r.returncode == 2 and "campusvpn init --dir" in r.stderr


def test_user_add_show_and_status_changes(conf: Path) -> None:
    r = run(
        conf,
        "user",
        "add",
        "１２３４ ５６７８９０@example.ac.jp",
        "--role",
        "student",
        "--name",
        "Hanako",
        "--email",
        "h@example.ac.jp",
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(run(conf, "user", "show", "1234567890", "--json").stdout)
    assert info["username"] == "1234567890" and info["has_password"] and info["affiliations"][0]["role"] == "student"
    assert run(conf, "user", "suspend", "1234567890").returncode != 0  # a reason is required
    assert run(conf, "user", "suspend", "1234567890", "--reason", "left the lab").returncode == 0
    d = json.loads(run(conf, "check", "1234567890", "--json").stdout)
    assert not d["allowed"] and "account_suspended" in [x["code"] for x in d["reasons"]]
    assert run(conf, "user", "restore", "1234567890").returncode == 0
    assert run(conf, "user", "revoke", "1234567890").returncode == 0
    assert json.loads(run(conf, "user", "show", "1234567890", "--json").stdout)["status"] == "revoked"
    bad = run(conf, "user", "add", "12345", "--role", "student")
    assert bad.returncode == 1 and "10 digits" in bad.stderr


def test_csv_import_reports_bad_rows_by_line_and_keeps_the_rest(conf: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "roster.csv"
    csv_file.write_text(
        "username,name,role,email,from,until\n"
        "1000000001,Aoi,student,a@example.ac.jp,2026-04-01,\n"
        "1000000002,Bad Role,wizard,b@example.ac.jp,2026-04-01,\n"
        "１０００００００03,Full Width,staff,,2026-04-01,2027-03-31\n"
        "12,Short,staff,,2026-04-01,\n"
        "1000000005,Bad Date,staff,,2026-13-01,\n"
        '1000000006,"Quoted, Name",faculty,f@example.ac.jp,,\n'
    )
    r = run(conf, "user", "import", str(csv_file), "--json")
    assert r.returncode == 1  # some rows were rejected
    out = json.loads(r.stdout)
    assert out["added"] == 3
    assert [e["line"] for e in out["errors"]] == [3, 5, 6]
    assert "wizard" in out["errors"][0]["error"] and "YYYY-MM-DD" in out["errors"][2]["error"]
    assert run(conf, "user", "show", "1000000003").returncode == 0
    assert run(conf, "user", "show", "1000000002").returncode == 1  # nothing of a bad row was written
    assert json.loads(run(conf, "user", "show", "1000000006", "--json").stdout)["name"] == "Quoted, Name"


def test_csv_with_a_wrong_header_is_refused_whole(conf: Path, tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("user,role\n1000000001,student\n")
    r = run(conf, "user", "import", str(f))
    assert r.returncode == 1 and "line 1: the header lacks column(s) username" in r.stderr


def test_mfa_flow_check_at_and_verify_exit_codes(conf: Path, tmp_path: Path) -> None:
    t0 = "2026-10-01T09:00:00+09:00"
    assert (
        run(
            conf,
            "user",
            "add",
            "1234567890",
            "--role",
            "staff",
            "--from",
            "2020-04-01",
            "--password-stdin",
            stdin="a long enough password\n",
            now=t0,
        ).returncode
        == 0
    )
    trained = tmp_path / "t.csv"
    trained.write_text("username,completed_on\n1234567890,2026-07-10\n9999999999,2026-07-10\n")
    t = run(conf, "training", "import", str(trained), "--json", now=t0)
    assert json.loads(t.stdout)["recorded"] == 1 and json.loads(t.stdout)["errors"][0]["line"] == 3
    assert run(conf, "mfa", "apply", "1234567890", now=t0).returncode == 0
    enrol = json.loads(run(conf, "mfa", "add-totp", "1234567890", "--json", now=t0).stdout)
    assert enrol["uri"].startswith("otpauth://totp/Campus%20VPN:1234567890?") and enrol["secret"]
    totp = pyotp.TOTP(enrol["secret"])
    from datetime import datetime

    code0 = totp.at(datetime.fromisoformat(t0))
    assert run(conf, "mfa", "confirm", "1234567890", "000000", now=t0).returncode == 1
    confirmed = json.loads(run(conf, "mfa", "confirm", "1234567890", code0, "--json", now=t0).stdout)
    assert len(confirmed["codes"]) == 10

    refused = json.loads(run(conf, "check", "1234567890", "--at", "2026-10-01T09:39:59", "--json").stdout)
    assert refused["allowed"] is False
    [reason] = refused["reasons"]
    assert reason["code"] == "mfa_activation_pending"
    assert reason["until"] == "2026-10-01T00:40:00+00:00"
    assert "2026-10-01 09:40 JST" in reason["message"]
    human = run(conf, "check", "1234567890", "--at", "2026-10-01T09:39:59").stdout
    assert "REFUSED" in human and "you can use the VPN from 2026-10-01 09:40 JST" in human
    assert json.loads(run(conf, "check", "1234567890", "--at", "2026-10-01T09:40", "--json").stdout)["allowed"]

    t1 = "2026-10-01T10:00:00+09:00"
    good = totp.at(datetime.fromisoformat(t1))
    ok = run(conf, "verify", "1234567890", stdin=f"a long enough password\n{good}\n", now=t1)
    assert ok.returncode == 0 and "OK" in ok.stdout and "ALLOWED" in ok.stdout
    replay = run(conf, "verify", "1234567890", stdin=f"a long enough password\n{good}\n", now=t1)
    assert replay.returncode == 1 and "already used" in replay.stdout
    wrong_pw = run(conf, "verify", "1234567890", stdin=f"nope\n{good}\n", now=t1)
    assert wrong_pw.returncode == 1
    recovery = run(
        conf, "verify", "1234567890", "--json", stdin=f"a long enough password\n{confirmed['codes'][0]}\n", now=t1
    )
    assert recovery.returncode == 0 and json.loads(recovery.stdout)["method"] == "recovery"
    assert json.loads(run(conf, "mfa", "show", "1234567890", "--json").stdout)["recovery_codes_left"] == 9

    new = json.loads(run(conf, "mfa", "recovery-codes", "1234567890", "--json", now=t1).stdout)["codes"]
    assert len(new) == 10 and confirmed["codes"][1] not in new
    old = run(conf, "verify", "1234567890", stdin=f"a long enough password\n{confirmed['codes'][1]}\n", now=t1)
    assert old.returncode == 1

    assert (
        run(
            conf,
            "mfa",
            "add-phone",
            "1234567890",
            "--kind",
            "office",
            "--number",
            "+81 3-1234-5678",
            "--extension",
            "4321",
            now=t1,
        ).returncode
        == 0
    )
    assert (
        run(conf, "mfa", "add-phone", "1234567890", "--kind", "office", "--number", "+81312345679", now=t1).returncode
        == 1
    )  # at most one of each kind
    assert run(conf, "mfa", "reset", "1234567890", "--reason", "lost phone", now=t1).returncode == 0
    shown = json.loads(run(conf, "mfa", "show", "1234567890", "--json").stdout)
    assert shown["state"] == "registration_required" and shown["methods"] == []

    trail = json.loads(run(conf, "audit", "--user", "1234567890", "--json").stdout)
    events = [e["event"] for e in trail]
    for expected in [
        "account.created",
        "mfa.applied",
        "mfa.method.added",
        "signin.second_factor",
        "mfa.recovery_code.used",
        "mfa.reset",
        "training.recorded",
    ]:
        assert expected in events
    reset = next(e for e in trail if e["event"] == "mfa.reset")
    assert reset["note"] == "lost phone" and reset["actor"].startswith("cli:")
    dump = json.dumps(trail)
    assert enrol["secret"] not in dump and good not in dump and confirmed["codes"][0] not in dump


def test_training_status_counts_done_missing_and_exempt(conf: Path, tmp_path: Path) -> None:
    now = "2026-10-01T09:00:00+09:00"
    for name, role, start in [
        ("1000000001", "staff", "2020-04-01"),
        ("1000000002", "staff", "2020-04-01"),
        ("1000000003", "student", "2026-08-01"),
    ]:
        assert run(conf, "user", "add", name, "--role", role, "--from", start, now=now).returncode == 0
    f = tmp_path / "t.csv"
    f.write_text("username,completed_on\n1000000001,2026-07-02\n")
    run(conf, "training", "import", str(f), now=now)
    st = json.loads(run(conf, "training", "status", "--json", now=now).stdout)
    states = {u["username"]: u["state"] for u in st["users"]}
    assert st["fiscal_year"] == 2026
    assert states == {"1000000001": "done", "1000000002": "missing", "1000000003": "exempt"}
    check = json.loads(run(conf, "check", "1000000002", "--json", now=now).stdout)
    assert "training_missing" in [r["code"] for r in check["reasons"]]


def test_config_reference_in_docs_is_generated_from_the_schema() -> None:
    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    generated = run(None, "config", "reference").stdout
    assert doc.read_text() == generated, (
        "docs/configuration.md is stale: campusvpn config reference > docs/configuration.md"
    )


def test_campusvpn_ignores_clock_settings_in_its_environment(conf: Path) -> None:
    """Only the test launcher can move the clock: a stray variable on a server must not."""
    import subprocess
    import sys

    from tests.cli_run import clean_env

    for name in ("1234567890", "1234567891"):
        assert run(conf, "user", "add", name, "--role", "staff").returncode == 0
    clock_file = conf.parent / "now.txt"
    clock_file.write_text("2001-01-01T00:00:00+00:00")
    env = {**clean_env(), "CAMPUSVPN_FAKE_NOW": "2001-01-01T00:00:00+00:00", "CAMPUSVPN_FAKE_NOW_FILE": str(clock_file)}
    r = subprocess.run(
        [sys.executable, "-m", "campusvpn", "--config", str(conf), "mfa", "apply", "1234567890"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and "VPN possible from" in r.stdout, r.stdout + r.stderr
    assert "2001-01-01" not in r.stdout, r.stdout
    # The launcher the tests use does move it: the assertion above tells the two apart.
    pinned = run(conf, "mfa", "apply", "1234567891", now="2001-01-01T00:00:00+00:00")
    assert pinned.returncode == 0 and "VPN possible from 2001-01-01" in pinned.stdout, pinned.stdout + pinned.stderr


def test_an_overlong_or_control_character_name_is_refused(tmp_path: Path) -> None:
    from tests.conftest import make_config

    from campusvpn.service import accounts
    from campusvpn.service.context import open_context
    from campusvpn.service.errors import Invalid

    ctx = open_context(make_config(tmp_path))
    for bad in ("x" * 416, "Taro\x1b[31m Yamada"):
        with pytest.raises(Invalid):
            accounts.add_user(ctx, accounts.NewUser("1234567890", "staff", bad, None, None, None), actor="t")
    made = accounts.add_user(
        ctx, accounts.NewUser("1234567890", "staff", "  Taro   Yamada ", None, None, None), actor="t"
    )
    assert made.display_name == "Taro Yamada"
