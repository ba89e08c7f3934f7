"""Giving up root for good: the serving process becomes an unprivileged system user with no capabilities.

The order matters: `forbid_new_privileges()` first, while the process has one thread, so every thread
started later inherits it; then ports and the TUN device are set up as root; then `drop_to()`, whose
setgroups/setresgid/setresuid glibc applies to every thread. Afterwards /proc/self/task/*/status is
read and anything left (a uid or gid 0, a capability, a thread without no_new_privs) is an error.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522  # two 32-bit words per set
NOLOGIN = "/usr/sbin/nologin"


class PrivilegeError(Exception):
    """The process could not give up, or still holds, something privileged."""


@dataclass(frozen=True)
class Credentials:
    """What /proc/PID/status says about one thread's identity and privileges."""

    uids: tuple[int, ...]  # real, effective, saved, filesystem
    gids: tuple[int, ...]
    groups: tuple[int, ...]
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_amb: int
    no_new_privs: bool

    def leftovers(self) -> list[str]:
        """Everything privileged still held, in words; empty when there is none."""
        left = []
        if 0 in self.uids:
            left.append(f"Uid {' '.join(map(str, self.uids))}")
        if 0 in self.gids:
            left.append(f"Gid {' '.join(map(str, self.gids))}")
        if 0 in self.groups:
            left.append("supplementary group 0")
        for label, value in (
            ("CapInh", self.cap_inh),
            ("CapPrm", self.cap_prm),
            ("CapEff", self.cap_eff),
            ("CapAmb", self.cap_amb),
        ):
            if value:
                left.append(f"{label} {value:016x}")
        if not self.no_new_privs:
            left.append("NoNewPrivs 0")
        return left


def parse_status(text: str) -> Credentials:
    """The identity lines of a /proc/PID/status text."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.split()
    try:
        return Credentials(
            uids=tuple(int(x) for x in fields["Uid"]),
            gids=tuple(int(x) for x in fields["Gid"]),
            groups=tuple(int(x) for x in fields.get("Groups", [])),
            cap_inh=int(fields["CapInh"][0], 16),
            cap_prm=int(fields["CapPrm"][0], 16),
            cap_eff=int(fields["CapEff"][0], 16),
            cap_amb=int(fields.get("CapAmb", ["0"])[0], 16),
            no_new_privs=fields.get("NoNewPrivs", ["0"])[0] == "1",
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise PrivilegeError(f"cannot read the process status: {exc}") from exc


def thread_credentials(proc: Path = Path("/proc/self")) -> dict[int, Credentials]:
    """Each thread of a process (by thread id), from its /proc/PID/task/TID/status."""
    out = {}
    for task in sorted((proc / "task").iterdir()):
        try:
            out[int(task.name)] = parse_status((task / "status").read_text())
        except FileNotFoundError:
            continue  # the thread ended while we looked
    return out


def verify(proc: Path = Path("/proc/self")) -> None:
    """Raise PrivilegeError naming whatever any thread still holds."""
    problems = [
        f"thread {tid}: {', '.join(c.leftovers())}" for tid, c in thread_credentials(proc).items() if c.leftovers()
    ]
    if problems:
        raise PrivilegeError("privileges left after the drop: " + "; ".join(problems))


# --- the system calls -----------------------------------------------------------------------


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"{what} failed: {os.strerror(err)}")


def _prctl(option: int, arg2: int = 0) -> None:
    zero = ctypes.c_ulong(0)
    _check(_libc().prctl(option, ctypes.c_ulong(arg2), zero, zero, zero), f"prctl({option})")


def _set_capabilities(keep_permitted: bool) -> None:
    """Empty this thread's inheritable set, and its permitted and effective sets unless told to keep them."""
    libc = _libc()
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capget(ctypes.byref(header), data), "capget")
    for word in data:
        word.inheritable = 0
        if not keep_permitted:
            word.permitted = word.effective = 0
    _check(libc.capset(ctypes.byref(header), data), "capset")


def forbid_new_privileges() -> None:
    """No exec can ever grant privileges again (set-uid files, file capabilities), nor can capabilities
    pass through an exec. Call it while the process has a single thread: threads inherit it."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _set_capabilities(keep_permitted=True)


# --- the service user -----------------------------------------------------------------------


def lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def ensure_system_user(name: str) -> tuple[pwd.struct_passwd, bool]:
    """The system user `name`, created (no home, no login shell) when missing; and whether it was."""
    found = lookup(name)
    if found is not None:
        return found, False
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    r = subprocess.run(  # noqa: S603 - a fixed program; the name is checked by the config schema
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            NOLOGIN,
            "--user-group",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = lookup(name)
    if r.returncode != 0 or found is None:
        raise PrivilegeError(f"cannot create the system user {name!r}: {r.stderr.strip() or r.returncode}")
    return found, True


def service_account(name: str) -> pwd.struct_passwd:
    """The service user, which must exist and be neither root nor in root's group."""
    pw = lookup(name)
    if pw is None:
        raise PrivilegeError(f"there is no system user {name!r}; `campusvpn init` creates it when run as root")
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise PrivilegeError(f"the service user {name!r} has uid or gid 0: that is root, not a service user")
    return pw


def drop_to(name: str) -> None:
    """Become user `name` for good (real, effective and saved ids), with no groups and no capabilities.

    Only root can do this. New files are private to that user from then on (umask 077).
    """
    pw = service_account(name)
    if os.geteuid() != 0:
        raise PrivilegeError(f"only root can become {name!r} (running as uid {os.geteuid()})")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    try:
        os.setgroups([])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)  # the kernel empties the capability sets here
    except OSError as exc:
        raise PrivilegeError(f"cannot become {name!r}: {exc.strerror}") from exc
    _set_capabilities(keep_permitted=False)
    os.umask(0o077)
    verify()


def shed() -> None:
    """Started by someone other than root: stay that user, but give up any capabilities it was given."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _set_capabilities(keep_permitted=False)
    verify()
