"""Root and the service user on the command line.

`serve` starts as root (port 443, the TUN device) and becomes `[service] user` once both listeners are
bound and the TUN device is configured. Other commands run by root become that user before they open
anything, so the files SQLite, the outbox or a migration create stay the gateway's.
"""

from __future__ import annotations

import logging
import os
import pwd
import sys
from collections.abc import Callable
from pathlib import Path

import campusvpn
from campusvpn.platform import privileges, state_files
from campusvpn.platform.config import Config
from campusvpn.platform.privileges import PrivilegeError
from campusvpn.service.context import Context

log = logging.getLogger("campusvpn.privileges")


def _event(name: str, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, name, extra={"fields": fields})  # the gateway's JSON log lines


def reach_problem(pw: pwd.struct_passwd | None, *paths: Path) -> str | None:
    """Why the service user (None: one about to be created) could not get to one of `paths`."""
    uid, groups = (pw.pw_uid, os.getgrouplist(pw.pw_name, pw.pw_gid)) if pw else (-1, [])
    for path in paths:
        problem = state_files.unreachable(path, uid, groups)
        if problem:
            return f"cannot reach {path}: {problem}"
    return None


def program_dirs() -> list[Path]:
    """Where Python may still import from after the drop: campusvpn itself and every folder on sys.path."""
    return [Path(campusvpn.__file__).parent, *(Path(p) for p in sys.path if p and Path(p).is_dir())]


def prepare_serve(cfg: Config) -> pwd.struct_passwd | None:
    """First thing in `serve`: the account to become after start-up (created when missing), or None to
    stay as started. Refuses early when that account could not reach the state or the program."""
    privileges.forbid_new_privileges()  # while there is one thread, so that every thread has it
    name = cfg.service.user
    if not name:
        if os.geteuid() == 0:
            _event("gateway.stays_root", logging.WARNING, note="[service] user is empty: serving as root")
        return None
    if os.geteuid() != 0:
        return None  # started unprivileged already: capabilities are shed after start-up
    problem = reach_problem(privileges.lookup(name), cfg.base_dir.parent, *program_dirs())  # the folder becomes its
    if problem:
        raise PrivilegeError(f"the service user {name} {problem}; {_HOW_TO_REACH}")
    pw, created = privileges.ensure_system_user(name)
    if created:
        _event("gateway.service_user_created", user=name, uid=pw.pw_uid)
    return privileges.service_account(name)


_HOW_TO_REACH = (
    "keep the state and the program where it can get to them (e.g. /var/lib/campusvpn and /opt), "
    'let it through (chmod o+x on that folder), or set [service] user = "" to stay root'
)


def after_bind(ctx: Context, state: state_files.StateFiles, pw: pwd.struct_passwd | None) -> Callable[[], None]:
    """The step `serve` runs once its listeners are bound and the TUN device is configured."""
    name = ctx.config.service.user

    def drop() -> None:
        if not name:
            return  # stay as started (warned at start)
        ctx.engine.dispose()  # the database connections opened as root are closed; new ones open as the user
        if pw is not None:
            try:
                state_files.hand_over(state, (pw.pw_uid, pw.pw_gid))  # also what root created since start
            except OSError as exc:
                raise PrivilegeError(f"cannot give {exc.filename} to {pw.pw_name}: {exc.strerror}") from exc
            privileges.drop_to(pw.pw_name)
        else:
            privileges.shed()
        problems = state_files.not_writable(state)
        if problems:
            raise PrivilegeError(f"as {privileges.name_of(os.getuid())}: " + "; ".join(problems))
        _event("gateway.privileges_dropped", user=privileges.name_of(os.getuid()), uid=os.getuid())

    return drop


def act_as_service_user(cfg: Config) -> None:
    """An operator command run by root: become the service user when it owns the state directory, before
    anything is opened. Otherwise (no such user, another owner) the command runs as it was started."""
    name = cfg.service.user
    if os.geteuid() != 0 or not name:
        return
    pw = privileges.lookup(name)
    if pw is None or pw.pw_uid == 0 or cfg.base_dir.stat().st_uid != pw.pw_uid:
        return
    problem = reach_problem(pw, cfg.base_dir, *program_dirs())
    if problem:
        print(f"warning: running as root, not as {name}: it {problem}", file=sys.stderr)
        return
    privileges.drop_to(name)
