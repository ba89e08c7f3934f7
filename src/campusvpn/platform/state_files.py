"""The service's own files (config, keys, TLS key, SQLite database, outbox): who owns them, who can reach them.

They live in the state directory (the config file's folder) and belong to the service user, readable by
it alone: 0700 for folders, 0600 for files. Files configured outside that folder are the operator's to
arrange; the gateway checks after dropping root that it can still write what it must.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import campusvpn
from campusvpn.platform.config import Config

SQLITE = "sqlite:///"
_SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's companions of a database file


@dataclass(frozen=True)
class StateFiles:
    directory: Path  # the config file's folder
    files: tuple[Path, ...]  # every file of the service, whether or not it exists yet
    written: tuple[Path, ...]  # the files the running gateway writes (database, outbox)

    def inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.directory.resolve())

    def folders(self) -> list[Path]:
        """The state directory and the folders under it that hold its files."""
        out = [self.directory]
        for f in self.files:
            if self.inside(f) and f.parent.resolve() != self.directory.resolve() and f.parent not in out:
                out.append(f.parent)
        return out


def of(cfg: Config, config_path: Path) -> StateFiles:
    written = [cfg.path(cfg.sender.outbox)]
    if cfg.database_url.startswith(SQLITE) and ":memory:" not in cfg.database_url:
        db = Path(cfg.database_url.removeprefix(SQLITE))
        written += [db, *(db.with_name(db.name + s) for s in _SIDECARS)]
    fixed = [
        config_path,
        cfg.path(cfg.storage.key_file),
        cfg.path(cfg.verification.link_key_file),
        cfg.path(cfg.tls.key),
        cfg.path(cfg.tls.certificate),
    ]
    return StateFiles(cfg.base_dir, tuple(fixed + written), tuple(written))


def hand_over(state: StateFiles, owner: tuple[int, int] | None) -> list[Path]:
    """Make the state directory's files private (0700/0600) and, when given (uid, gid), theirs. Returns
    what was changed. Files outside the state directory are left alone."""
    changed = []
    targets = [(d, 0o700) for d in state.folders()] + [
        (f, 0o600) for f in state.files if state.inside(f) and f.exists()
    ]
    for path, mode in targets:
        st = path.stat()
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            os.chown(path, *owner)
            changed.append(path)
        if stat.S_IMODE(st.st_mode) != mode:
            path.chmod(mode)
            if path not in changed:
                changed.append(path)
    return changed


def unreachable(path: Path, uid: int, groups: list[int]) -> str | None:
    """Why user `uid` (in `groups`) could not get to `path` (the first folder on the way that it may not
    search, from the mode bits), or None when it can. A missing tail of `path` is skipped."""
    path = path.absolute()
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            break
        if not stat.S_ISDIR(st.st_mode):
            break
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit and not _acl_lets_search(folder, uid):
            return f"{folder} is mode {stat.filemode(st.st_mode)} owned by uid {st.st_uid}"
    return None


_ACL_XATTR = "system.posix_acl_access"
_ACL_USER, _ACL_MASK = 0x02, 0x10  # entry tags of Linux's on-disk POSIX ACL (acl_ea_entry)
_ACL_SEARCH = 0x01


def _acl_lets_search(folder: Path, uid: int) -> bool:
    """Whether a POSIX ACL entry for `uid` (e.g. `setfacl -m u:campusvpn:x /root`) lets it pass through
    `folder`, within the ACL's mask. The binary form: a 4-byte version, then 8-byte entries
    (tag u16, permissions u16, id u32), little-endian."""
    try:
        raw = os.getxattr(folder, _ACL_XATTR)
    except OSError:
        return False  # no ACL, or a file system without them
    entries = [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw) - 7, 8)]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), _ACL_SEARCH)
    return any(tag == _ACL_USER and ident == uid and perm & mask & _ACL_SEARCH for tag, perm, ident in entries)


def not_writable(state: StateFiles) -> list[str]:
    """What the current (real) user cannot do that the gateway needs: write its files and create them and
    SQLite's companions in their folders, and read the program itself (imports happen later too)."""
    problems = []
    for f in state.written:
        if f.exists() and not os.access(f, os.R_OK | os.W_OK):
            problems.append(f"cannot write {f}")
        if not os.access(f.parent, os.W_OK | os.X_OK):
            problems.append(f"cannot create files in {f.parent}")
    program = Path(campusvpn.__file__).parent
    if not os.access(program, os.R_OK | os.X_OK):
        problems.append(f"cannot read the program in {program}")
    return sorted(set(problems))
