"""Giving up root: reading /proc status, refusing when anything is left, the state files' owner and modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.cli_run import run_campusvpn
from tests.conftest import make_config

from campusvpn.platform import privileges, state_files
from campusvpn.platform.privileges import PrivilegeError, parse_status

ROOT_STATUS = """Name:\tpython3
Umask:\t0022
State:\tS (sleeping)
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
Groups:\t0
CapInh:\t0000000000000000
CapPrm:\t000001ffffffffff
CapEff:\t000001ffffffffff
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t0
"""

DROPPED_STATUS = (
    ROOT_STATUS.replace("Uid:\t0\t0\t0\t0", "Uid:\t999\t999\t999\t999")
    .replace("Gid:\t0\t0\t0\t0", "Gid:\t995\t995\t995\t995")
    .replace("Groups:\t0", "Groups:\t")
    .replace("CapPrm:\t000001ffffffffff", "CapPrm:\t0000000000000000")
    .replace("CapEff:\t000001ffffffffff", "CapEff:\t0000000000000000")
    .replace("NoNewPrivs:\t0", "NoNewPrivs:\t1")
)


def fake_proc(tmp_path: Path, *statuses: str) -> Path:
    for tid, text in enumerate(statuses, 100):
        (tmp_path / "task" / str(tid)).mkdir(parents=True)
        (tmp_path / "task" / str(tid) / "status").write_text(text)
    return tmp_path


def test_a_root_status_lists_everything_left() -> None:
    left = parse_status(ROOT_STATUS).leftovers()
    assert left == [
        "Uid 0 0 0 0",
        "Gid 0 0 0 0",
        "supplementary group 0",
        "CapPrm 000001ffffffffff",
        "CapEff 000001ffffffffff",
        "NoNewPrivs 0",
    ]


def test_a_dropped_status_has_nothing_left() -> None:
    c = parse_status(DROPPED_STATUS)
    assert (c.uids, c.gids, c.groups, c.no_new_privs) == ((999,) * 4, (995,) * 4, (), True)
    assert c.leftovers() == []


def test_one_saved_uid_0_is_enough_to_refuse() -> None:
    c = parse_status(DROPPED_STATUS.replace("Uid:\t999\t999\t999\t999", "Uid:\t999\t999\t0\t999"))
    assert c.leftovers() == ["Uid 999 999 0 999"]


def test_an_unreadable_status_is_an_error() -> None:
    with pytest.raises(PrivilegeError, match="cannot read the process status"):
        parse_status("Name:\tx\nUid:\tzero\n")


def test_verify_refuses_when_one_thread_kept_a_capability(tmp_path: Path) -> None:
    ambient = DROPPED_STATUS.replace("CapAmb:\t0000000000000000", "CapAmb:\t0000000000001000")
    proc = fake_proc(tmp_path, DROPPED_STATUS, ambient)
    with pytest.raises(PrivilegeError, match=r"thread 101: CapAmb 0000000000001000") as e:
        privileges.verify(proc)
    assert "thread 100" not in str(e.value)


def test_verify_accepts_threads_with_nothing_left(tmp_path: Path) -> None:
    privileges.verify(fake_proc(tmp_path, DROPPED_STATUS, DROPPED_STATUS))


def test_this_process_threads_are_read_from_proc() -> None:
    mine = privileges.thread_credentials()
    assert os.getpid() in mine and mine[os.getpid()].uids[0] == os.getuid()


def test_a_folder_on_the_way_that_the_user_cannot_search_is_named(tmp_path: Path) -> None:
    me, groups = os.getuid(), [os.getgid()]  # the folders above tmp_path are ours: only `closed` is in the way
    closed = tmp_path / "closed"
    (closed / "site").mkdir(parents=True)
    closed.chmod(0o077)  # the owner's own bits decide for the owner
    problem = state_files.unreachable(closed / "site" / "not-yet", me, groups)
    assert problem == f"{closed} is mode d---rwxrwx owned by uid {me}"
    closed.chmod(0o100)
    assert state_files.unreachable(closed / "site" / "not-yet", me, groups) is None
    closed.chmod(0o700)


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="setfacl (Debian package acl) is not installed")
def test_an_acl_entry_that_lets_the_user_pass_through_counts() -> None:
    # scripts/run lets the service user through /root this way instead of opening /root to everyone.
    # A folder of its own right in /tmp: pytest's tmp_path lies below folders a stranger cannot search.
    closed = Path(tempfile.mkdtemp(prefix="campusvpn-acl-"))  # mode 0700
    (closed / "site").mkdir()
    try:
        _check_acl(closed)
    finally:
        shutil.rmtree(closed)


def _check_acl(closed: Path) -> None:
    stranger = 4_000_000 + os.getpid() % 1000  # no such account needed: the ACL names a number
    assert state_files.unreachable(closed / "site", stranger, []) is not None
    subprocess.run(["setfacl", "-m", f"u:{stranger}:x", str(closed)], check=True)
    assert state_files.unreachable(closed / "site", stranger, []) is None
    subprocess.run(["setfacl", "-m", "m::r", str(closed)], check=True)  # the mask takes search away again
    assert state_files.unreachable(closed / "site", stranger, []) is not None
    assert state_files.unreachable(closed / "site", stranger + 1, []) is not None


def test_state_files_become_private_and_are_listed_with_sqlite_companions(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    conf = tmp_path / "campusvpn.toml"
    (tmp_path / "campusvpn.db").write_bytes(b"")
    (tmp_path / "campusvpn.db-wal").write_bytes(b"")
    (tmp_path / "tls").mkdir(mode=0o755)
    (tmp_path / "tls" / "key.pem").write_text("k")
    state = state_files.of(cfg, conf)
    assert {p.name for p in state.written} == {
        "outbox.jsonl",
        "campusvpn.db",
        "campusvpn.db-wal",
        "campusvpn.db-shm",
        "campusvpn.db-journal",
    }
    changed = state_files.hand_over(state, None)
    assert tmp_path / "tls" in changed and conf in changed
    for p in (tmp_path, tmp_path / "tls"):
        assert p.stat().st_mode & 0o777 == 0o700
    for p in (conf, tmp_path / "secret.keys", tmp_path / "campusvpn.db-wal", tmp_path / "tls" / "key.pem"):
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert state_files.hand_over(state, None) == []  # already so: nothing to change


def test_service_user_setting_accepts_a_system_name_or_nothing(tmp_path: Path) -> None:
    for ok in ("campusvpn", "_vpn-gw", ""):
        path = tmp_path / "ok.toml"
        path.write_text(f'[service]\nuser = "{ok}"\n')
        assert run_campusvpn(path, "config", "check").returncode == 0
    path = tmp_path / "bad.toml"
    path.write_text('[service]\nuser = "Root Admin"\n')
    r = run_campusvpn(path, "config", "check")
    assert r.returncode == 2 and "service.user" in r.stderr


def test_init_without_a_service_user_keeps_the_starting_user_and_private_files(tmp_path: Path) -> None:
    r = run_campusvpn(None, "init", "--dir", str(tmp_path / "site"), "--service-user", "")
    assert r.returncode == 0, r.stderr
    site = tmp_path / "site"
    assert 'user = ""' in (site / "campusvpn.toml").read_text()
    assert site.stat().st_mode & 0o777 == 0o700
    for f in ("campusvpn.toml", "secret.keys", "identity-link.key", "campusvpn.db", "tls/key.pem", "tls/cert.pem"):
        assert (site / f).stat().st_mode & 0o777 == 0o600, f
        assert (site / f).stat().st_uid == os.getuid()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (changes its user)")

DROP = """
import sys, threading, time
from campusvpn.platform import privileges
if sys.argv[1] == "early":
    privileges.forbid_new_privileges()
threading.Thread(target=time.sleep, args=(3,), daemon=True).start()  # like the metrics thread
try:
    privileges.drop_to("nobody")
except privileges.PrivilegeError as exc:
    print("refused:", exc)
    sys.exit(1)
c = privileges.thread_credentials()
print(len(c), sorted({x.uids for x in c.values()}), sorted({x.cap_eff for x in c.values()}))
"""


@needs_root
def test_root_becomes_nobody_in_every_thread() -> None:
    r = subprocess.run([sys.executable, "-c", DROP, "early"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("[")[0].strip() == "2"  # the main thread and the one started before the drop
    assert "(65534, 65534, 65534, 65534)" in r.stdout and "[0]" in r.stdout


@needs_root
def test_a_thread_started_before_no_new_privs_makes_the_drop_refuse() -> None:
    r = subprocess.run([sys.executable, "-c", DROP, "late"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1
    assert "refused: privileges left after the drop: thread" in r.stdout and "NoNewPrivs 0" in r.stdout


@needs_root
def test_root_cannot_be_the_service_user() -> None:
    with pytest.raises(PrivilegeError, match="uid or gid 0"):
        privileges.service_account("root")
