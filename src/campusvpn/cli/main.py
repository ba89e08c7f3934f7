"""`campusvpn`: the operators' command line. Every read command takes --json."""

from __future__ import annotations

import errno
import getpass
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from campusvpn.cli.render import decision_text, emit_json, local

# Only what `campusvpn --help` needs is imported here; each command imports the rest (SQLAlchemy,
# pydantic, the services) where it is used, so the command starts in a fraction of a second.
if TYPE_CHECKING:
    from campusvpn.platform.clock import Clock
    from campusvpn.platform.config import Config
    from campusvpn.service.context import Context
    from campusvpn.texts.message import Message

F = TypeVar("F", bound=Callable[..., Any])


class Env:
    def __init__(self, config_option: str | None, clock: Clock | None = None) -> None:
        self._config_option = config_option
        self._clock = clock  # None: the system clock; tests/campusvpn_at.py passes another
        self.own_clock = clock is not None
        self._cfg: Config | None = None
        self._ctx: Context | None = None
        self.act_as_service_user = True  # root becomes [service] user before opening anything
        self._actor = f"cli:{os.environ.get('SUDO_USER') or getpass.getuser()}"  # who ran it, before any switch

    @property
    def config_path(self) -> Path:
        from campusvpn.platform.config import config_path_from

        return config_path_from(self._config_option)

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            from campusvpn.platform.config import load_config

            self._cfg = load_config(self.config_path)
        return self._cfg

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            if self.act_as_service_user:
                from campusvpn.cli.service_user import act_as_service_user

                act_as_service_user(self.cfg)
            from campusvpn.service.context import open_context

            self._ctx = open_context(self.cfg, self._clock)
        return self._ctx

    @property
    def actor(self) -> str:
        return self._actor

    def parse_time(self, text: str) -> datetime:
        """ISO 8601; a time without offset, or a bare date, is read in the service's time zone."""
        try:
            if len(text.strip()) == 10:
                return datetime.combine(date.fromisoformat(text.strip()), time(0), tzinfo=self.cfg.zone)
            at = datetime.fromisoformat(text.strip())
        except ValueError as exc:
            raise click.BadParameter(f"{text!r} is not an ISO 8601 time like 2026-05-01T09:00") from exc
        return at if at.tzinfo else at.replace(tzinfo=self.cfg.zone)


pass_env = click.make_pass_decorator(Env)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_option",
    metavar="FILE",
    envvar=None,
    help="Configuration file (default: $CAMPUSVPN_CONFIG, else ./campusvpn.toml).",
)
@click.version_option(package_name="campusvpn")
@click.pass_context
def cli(cx: click.Context, config_option: str | None) -> None:
    """campusvpn: accounts, MFA and VPN access policy for a university."""
    cx.obj = Env(config_option, clock=cx.obj)  # cx.obj: the clock given to main(), if any


# --- init / config -----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the config, keys, certificate and database.",
)
@click.option(
    "--service-user",
    metavar="NAME",
    help="System user the gateway runs as (default: campusvpn; created when missing if run by root); "
    "'' keeps the user it is started as.",
)
def init(directory: Path, service_user: str | None) -> None:
    """Create a working folder with a commented default configuration."""
    from campusvpn.cli.setup import InitError, init_dir
    from campusvpn.platform.privileges import PrivilegeError

    try:
        for line in init_dir(directory, service_user):
            click.echo(line)
    except (FileExistsError, InitError, PrivilegeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"next: campusvpn --config {directory / 'campusvpn.toml'} user add 1234567890 --role student")


@cli.group()
def config() -> None:
    """Check the configuration, or print its reference."""


@config.command("check")
@pass_env
def config_check(env: Env) -> None:
    """Validate the configuration file and say so."""
    env.cfg  # noqa: B018 - loading is the check
    click.echo(f"{env.config_path}: OK")


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), generated from the schema."""
    from campusvpn.platform.config_render import reference_markdown

    click.echo(reference_markdown(), nl=False)


@cli.command()
@click.option("--no-tun", is_flag=True, help="Do not create the TUN device (sign-in and protocol only; for tests).")
@pass_env
def serve(env: Env, no_tun: bool) -> None:
    """Run the VPN gateway (TLS on [gateway] listen) until stopped with SIGTERM or Ctrl-C."""
    import asyncio

    from campusvpn.platform import logs

    logs.setup(os.environ.get("CAMPUSVPN_LOG_LEVEL", "INFO"))
    count = env.cfg.gateway.worker_count()
    if env.own_clock and count > 1:
        # A clock handed in by tests/campusvpn_at.py cannot reach workers started as fresh interpreters.
        logs.event("gateway.one_process", note="a clock other than the system's: serving in one process")
        count = 1
    run_path = None
    if count > 1:
        from campusvpn.app.workers import run_dir

        run_path = run_dir()  # before prometheus_client is imported

    from campusvpn.app.serve import prepare_tun
    from campusvpn.app.serve import serve as run_gateway
    from campusvpn.cli import service_user
    from campusvpn.platform import state_files
    from campusvpn.platform.privileges import PrivilegeError
    from campusvpn.service.database import not_initialised
    from campusvpn.tunnels.tun import TunError

    # A mistyped path must not start the gateway on a new, empty database (everyone would then
    # "have a wrong password"): serve only a database `init` made.
    problem = not_initialised(env.cfg)
    if problem:
        raise click.ClickException(
            f"refusing to serve: {problem} ([storage] database in {env.config_path.resolve()}). "
            "Correct the path, or set up a new installation with `campusvpn init --dir FOLDER`."
        )
    env.act_as_service_user = False  # root until the ports and the TUN device are ready
    try:
        account = service_user.prepare_serve(env.cfg)
    except PrivilegeError as exc:
        raise click.ClickException(f"refusing to serve: {exc}") from exc
    ctx = env.ctx  # opening the context upgrades the schema
    drop = service_user.after_bind(ctx, state_files.of(ctx.config, env.config_path), account)
    try:
        if run_path is not None:
            from campusvpn.app.workers import serve_workers

            owner = (account.pw_uid, account.pw_gid) if account is not None else None
            status = serve_workers(
                ctx, count, no_tun=no_tun, owner=owner, run_path=run_path, config_path=env.config_path
            )
            if status:
                raise click.ClickException("a gateway worker could not start (see the log above)")
            return
        tun_fd = None if no_tun else prepare_tun(ctx)
        if ctx.config.gateway.event_loop == "uvloop":
            import uvloop

            uvloop.run(run_gateway(ctx, tun_fd, after_bind=drop))
        else:
            asyncio.run(run_gateway(ctx, tun_fd, after_bind=drop))
    except (PrivilegeError, ValueError) as exc:
        raise click.ClickException(f"refusing to serve: {exc}") from exc
    except TunError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        g = env.cfg.gateway
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"cannot listen on {g.listen} and {g.metrics_listen}: one of them is in use, "
                "by another `campusvpn serve` or another program (stop it first)"
            ) from exc
        raise click.ClickException(f"cannot listen on {g.listen}: {exc.strerror}") from exc


# --- users -------------------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Accounts: add, import, show, suspend, restore, revoke."""


def _date(env: Env, text: str | None, what: str) -> date | None:
    from campusvpn.service import accounts

    return accounts.parse_date(text, what) if text else None


@user.command("add")
@click.argument("username")
@click.option("--role", required=True, help="faculty, staff, student, dispatched, visiting (see config).")
@click.option("--name", help="Display name.")
@click.option("--email", help="Recovery and notice e-mail address.")
@click.option("--from", "start", metavar="DATE", help="Affiliation start (default: today).")
@click.option("--until", "end", metavar="DATE", help="Affiliation end, inclusive (default: open-ended).")
@click.option("--password-stdin", is_flag=True, help="Read a password from the first line of standard input.")
@pass_env
def user_add(
    env: Env,
    username: str,
    role: str,
    name: str | None,
    email: str | None,
    start: str | None,
    end: str | None,
    password_stdin: bool,
) -> None:
    """Add an account, or a new affiliation period to an existing one."""
    from campusvpn.service import accounts

    password = _stdin_line("password") if password_stdin else None
    u = accounts.add_user(
        env.ctx,
        accounts.NewUser(username, role, name, email, _date(env, start, "--from"), _date(env, end, "--until")),
        actor=env.actor,
        password=password,
    )
    click.echo(f"{u.username}: account ready ({role}){', password set' if password else ''}")


@user.command("passwd")
@click.argument("username")
@pass_env
def user_passwd(env: Env, username: str) -> None:
    """Set a password, read from the first line of standard input."""
    from campusvpn.service import accounts

    accounts.set_password(env.ctx, username, _stdin_line("password"), actor=env.actor)
    click.echo("password set; trusted devices of this user were revoked")


@user.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@json_option
@pass_env
def user_import(env: Env, file: Any, as_json: bool) -> None:
    """Import a roster CSV: username,name,role,email,from,until (a header line first)."""
    from campusvpn.service import accounts

    report = _with_progress(
        file.read(), lambda text, bar: accounts.import_users(env.ctx, text, actor=env.actor, progress=bar)
    )
    _import_report(as_json, {"added": report.added, "updated": report.updated}, report.errors)


R = TypeVar("R")


def _with_progress(text: str, run: Callable[[str, Callable[[int], None]], R]) -> R:
    """Run an import with a progress bar on standard error (one step per data row)."""
    rows = max(0, len([x for x in text.splitlines() if x.strip()]) - 1)
    with click.progressbar(length=rows, label="importing", file=sys.stderr) as bar:
        return run(text, bar.update)


def _import_report(as_json: bool, counts: dict[str, int], errors: list[tuple[int, Message]]) -> None:
    from campusvpn.texts.render import render

    if as_json:
        emit_json(
            {**counts, "errors": [{"line": n, "code": e.code.value, "error": render(e, "en")} for n, e in errors]}
        )
    else:
        click.echo(", ".join(f"{v} {k}" for k, v in counts.items()) + f", {len(errors)} rejected")
        for n, e in errors:
            click.echo(f"line {n}: {render(e, 'en')}", err=True)
    if errors:
        sys.exit(1)


@user.command("show")
@click.argument("username")
@json_option
@pass_env
def user_show(env: Env, username: str, as_json: bool) -> None:
    """Show an account (never its secrets)."""
    from campusvpn.service import account_views, eligibility

    info, d = account_views.overview(env.ctx, username)
    info["vpn"] = eligibility.as_json(d)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{info['username']}  {info['name'] or ''}  <{info['email'] or 'no e-mail'}>")
    click.echo(f"  status: {info['status']}" + (f" ({info['status_reason']})" if info["status_reason"] else ""))
    for a in info["affiliations"]:  # type: ignore[attr-defined]
        click.echo(f"  affiliation: {a['role']} from {a['from']} until {a['until'] or '(open)'}")
    click.echo(f"  password: {'set' if info['has_password'] else 'not set'}")
    click.echo(f"  MFA applied: {info['mfa_applied_at'] or 'no'}; methods: {len(info['methods'])}")  # type: ignore[arg-type]
    click.echo(f"  trusted devices: {info['trusted_devices']}")
    click.echo(decision_text(env.cfg, str(info["username"]), d))


@user.command("unlock")
@click.argument("username")
@pass_env
def user_unlock(env: Env, username: str) -> None:
    """Lift a sign-in lock or back-off after too many failures."""
    from campusvpn.service import throttling

    name, n = throttling.unlock_account(env.ctx, username, actor=env.actor)
    click.echo(f"{name}: unlocked" if n else f"{name}: was not locked")


def _status_cmd(name: str, status: str, doc: str, needs_reason: bool) -> None:
    @user.command(name, help=doc)
    @click.argument("username")
    @click.option("--reason", required=needs_reason, help="Why; shown to the user and kept in the audit trail.")
    @pass_env
    def _cmd(env: Env, username: str, reason: str | None) -> None:
        from campusvpn.core.policy import AccountStatus
        from campusvpn.service import accounts

        u = accounts.set_status(env.ctx, username, AccountStatus(status), actor=env.actor, reason=reason)
        click.echo(f"{u.username}: {status}")


_status_cmd("suspend", "suspended", "Suspend an account (it cannot connect until restored).", True)
_status_cmd("restore", "active", "Lift a suspension or revocation.", False)
_status_cmd("revoke", "revoked", "Close an account; its trusted devices are revoked.", False)


# --- MFA ---------------------------------------------------------------------------------------


@cli.group("mfa")
def mfa_group() -> None:
    """Multi-factor authentication: apply, register methods, recovery codes, reset."""


@mfa_group.command("apply")
@click.argument("username")
@pass_env
def mfa_apply(env: Env, username: str) -> None:
    """Record the user's MFA application (VPN use starts after [mfa] activation_delay)."""
    from campusvpn.service import mfa

    u = mfa.apply(env.ctx, username, actor=env.actor)
    assert u.mfa_applied_at is not None
    ready = u.mfa_applied_at + env.cfg.mfa.activation_delay
    click.echo(
        f"{u.username}: applied for MFA; must register a method at next sign-in; "
        f"VPN possible from {local(env.cfg, ready)}"
    )


@mfa_group.command("add-totp")
@click.argument("username")
@json_option
@pass_env
def mfa_add_totp(env: Env, username: str, as_json: bool) -> None:
    """Start an authenticator-app registration: prints the secret, URI and QR code."""
    from campusvpn.service import authenticator

    e = authenticator.begin_totp(env.ctx, username, actor=env.actor)
    if as_json:
        emit_json({"method_id": e.method_id, "secret": e.secret, "uri": e.uri})
        return
    click.echo(e.qr_terminal())
    click.echo(f"secret: {' '.join(e.secret[i : i + 4] for i in range(0, len(e.secret), 4))}")
    click.echo(f"uri:    {e.uri}")
    click.echo(f"Scan it, then prove it works: campusvpn mfa confirm {username} CODE")


def _show_codes(codes: list[str] | None, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        emit_json({**(extra or {}), "codes": codes or []})
    elif codes:
        click.echo("Recovery codes (shown once; each works once; keep them somewhere safe):")
        for c in codes:
            click.echo(f"  {c}")


@mfa_group.command("confirm")
@click.argument("username")
@click.argument("code")
@json_option
@pass_env
def mfa_confirm(env: Env, username: str, code: str, as_json: bool) -> None:
    """Confirm a pending authenticator app with a code it shows."""
    from campusvpn.service import authenticator

    codes = authenticator.confirm_totp(env.ctx, username, code, actor=env.actor)
    if not as_json:
        click.echo("authenticator app confirmed")
    _show_codes(codes, as_json, {"confirmed": True})


@mfa_group.command("add-phone")
@click.argument("username")
@click.option("--kind", required=True, type=click.Choice(["mobile", "alternate", "office"]))
@click.option("--number", required=True, help="E.164, like +819012345678.")
@click.option("--extension", help="Office phone extension.")
@json_option
@pass_env
def mfa_add_phone(env: Env, username: str, kind: str, number: str, extension: str | None, as_json: bool) -> None:
    """Register a phone the operator has verified (the portal confirms by code instead)."""
    from campusvpn.service import mfa, phones
    from campusvpn.texts.render import render

    m = phones.add_phone(env.ctx, username, kind, number, extension, actor=env.actor)
    if as_json:
        emit_json({"method_id": m.public_id, "number": m.phone_number, "kind": kind})
    else:
        click.echo(f"{render(mfa.method_label(m), 'en')} registered ({m.public_id})")


@mfa_group.command("recovery-codes")
@click.argument("username")
@json_option
@pass_env
def mfa_recovery(env: Env, username: str, as_json: bool) -> None:
    """Issue a new set of recovery codes; the old set stops working."""
    from campusvpn.service import mfa

    _show_codes(mfa.regenerate_recovery_codes(env.ctx, username, actor=env.actor), as_json)


@mfa_group.command("reset")
@click.argument("username")
@click.option("--reason", default="reset by an administrator", show_default=True, help="Why; kept in the audit trail.")
@pass_env
def mfa_reset(env: Env, username: str, reason: str) -> None:
    """Remove every method: the user registers again at the next sign-in."""
    from campusvpn.service import mfa

    mfa.reset(env.ctx, username, actor=env.actor, reason=reason)
    click.echo(f"{username}: MFA reset; methods, recovery codes and trusted devices removed")


@mfa_group.command("delete")
@click.argument("username")
@click.argument("method_id")
@pass_env
def mfa_delete(env: Env, username: str, method_id: str) -> None:
    """Delete one method (the operator vouches for the user's identity)."""
    from campusvpn.service import mfa

    now = env.ctx.clock.now()
    state = mfa.delete_method(env.ctx, username, method_id, actor=env.actor, fresh_second_factor_at=now)
    click.echo(f"deleted; MFA state now {state.value}")


@mfa_group.command("default")
@click.argument("username")
@click.argument("method_id")
@pass_env
def mfa_default(env: Env, username: str, method_id: str) -> None:
    """Make a method the one asked for first."""
    from campusvpn.service import mfa

    mfa.set_default(env.ctx, username, method_id, actor=env.actor)
    click.echo("default method changed")


@mfa_group.command("show")
@click.argument("username")
@json_option
@pass_env
def mfa_show(env: Env, username: str, as_json: bool) -> None:
    """MFA state, methods (never secrets) and recovery codes left."""
    from campusvpn.service import mfa

    info = mfa.show(env.ctx, username)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{info['username']}: MFA {info['state']}; applied {info['applied_at'] or 'never'}")
    for m in info["methods"]:  # type: ignore[attr-defined]
        click.echo(
            f"  {'*' if m['default'] else ' '} {m['id']}  {m['label']}  (last used {m['last_used_at'] or 'never'})"
        )
    click.echo(f"  recovery codes: {info['recovery_codes_left']} of {info['recovery_codes_total']} left")


# --- devices -----------------------------------------------------------------------------------


@cli.group()
def devices() -> None:
    """Trusted devices ("skip the code on this device")."""


@devices.command("list")
@click.argument("username")
@json_option
@pass_env
def devices_list(env: Env, username: str, as_json: bool) -> None:
    """List a user's trusted devices."""
    from campusvpn.service import trusted

    rows = trusted.list_devices(env.ctx, username)
    if as_json:
        emit_json(rows)
        return
    for d in rows:
        click.echo(
            f"{d['id']}  {d['label']}  first {d['first_used']}  last {d['last_used'] or '-'}  until {d['expires']}"
        )
    if not rows:
        click.echo("no trusted devices")


@devices.command("revoke")
@click.argument("username")
@click.argument("device_id", required=False)
@click.option("--all", "revoke_all", is_flag=True, help="Revoke every trusted device of the user.")
@pass_env
def devices_revoke(env: Env, username: str, device_id: str | None, revoke_all: bool) -> None:
    """Revoke one trusted device, or all of them."""
    from campusvpn.service import trusted

    ctx = env.ctx
    if revoke_all:
        n = trusted.revoke_all(ctx, username, actor=env.actor, reason="revoked by an administrator")
        click.echo(f"{n} device(s) revoked")
    elif device_id:
        trusted.revoke_device(ctx, username, device_id, actor=env.actor)
        click.echo("device revoked")
    else:
        raise click.UsageError("name a DEVICE_ID or use --all")


# --- training ----------------------------------------------------------------------------------


@cli.group("training")
def training_group() -> None:
    """Information-security training completions."""


@training_group.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@json_option
@pass_env
def training_import(env: Env, file: Any, as_json: bool) -> None:
    """Import completions: username,completed_on."""
    from campusvpn.service import training

    r = _with_progress(
        file.read(), lambda text, bar: training.import_completions(env.ctx, text, actor=env.actor, progress=bar)
    )
    _import_report(as_json, {"recorded": r.recorded, "unchanged": r.unchanged}, r.errors)


@training_group.command("status")
@click.option("--year", "fiscal_year", type=int, help="Fiscal year (named by the year it starts in).")
@json_option
@pass_env
def training_status(env: Env, fiscal_year: int | None, as_json: bool) -> None:
    """Who has done the training, who is exempt, who is missing."""
    from campusvpn.service import training

    info = training.status(env.ctx, fiscal_year)
    if as_json:
        emit_json(info)
        return
    counts = info["counts"]
    click.echo(f"FY{info['fiscal_year']}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))  # type: ignore[attr-defined]
    for u in info["users"]:  # type: ignore[attr-defined]
        click.echo(
            f"  {u['username']}  {u['role'] or '-':10} {u['state']:12} "
            f"{u['completed_on'] or ''}{'' if u['completed_on'] else 'due ' + (u['deadline'] or '-')}"
        )


# --- sessions ----------------------------------------------------------------------------------


@cli.group("session")
def session_group() -> None:
    """Live VPN sessions."""


@session_group.command("list")
@click.option("--user", "username", help="Only this user's sessions.")
@click.option("--all", "show_all", is_flag=True, help="Include ended sessions.")
@json_option
@pass_env
def session_list(env: Env, username: str | None, show_all: bool, as_json: bool) -> None:
    """Sessions: user, address, protocol, source, start, bytes in/out."""
    from campusvpn.service import sessions

    rows = sessions.listing(env.ctx, live_only=not show_all, username=username)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = "connected" if r["connected"] else ("ended: " + str(r["end_reason"]) if r["ended"] else "detached")
        click.echo(
            f"{r['id']}  {r['user']}  {r['address']:15} {r['protocol']:10} from {r['source'] or '-':15} "
            f"since {r['start']}  "
            f"in {r['bytes_in']} out {r['bytes_out']}  {state}"
        )
    if not rows:
        click.echo("no sessions")


@session_group.command("kill")
@click.argument("session_id", required=False)
@click.option("--user", "username", help="End every session of this user.")
@click.option("--reason", help="Shown by the client (in the user's language: 'ended by an administrator: REASON').")
@pass_env
def session_kill(env: Env, session_id: str | None, username: str | None, reason: str | None) -> None:
    """End a session (its cookie stops working; the tunnel closes within seconds)."""
    from campusvpn.service import sessions

    if bool(session_id) == bool(username):
        raise click.UsageError("name one SESSION_ID or --user USER")
    n = sessions.kill(env.ctx, session_id=session_id, username=username, actor=env.actor, reason=reason)
    click.echo(f"{n} session(s) ended")


# --- policy, audit, verify ---------------------------------------------------------------------


@cli.command()
@click.argument("username")
@click.option("--at", "at_text", metavar="TIME", help="Ask as of this time (ISO 8601), for the help desk.")
@json_option
@pass_env
def check(env: Env, username: str, at_text: str | None, as_json: bool) -> None:
    """May this user use the VPN now (or --at TIME)? Every reason, and when it changes."""
    from campusvpn.service import eligibility

    at = env.parse_time(at_text) if at_text else None
    d = eligibility.check(env.ctx, username, at)
    if as_json:
        emit_json({"username": env.ctx.usernames.normalise(username), **eligibility.as_json(d)})
    else:
        click.echo(decision_text(env.cfg, env.ctx.usernames.normalise(username), d))


@cli.command("audit")
@click.option("--user", "username", help="Only events about this user.")
@click.option("--since", "since_text", metavar="TIME", help="Only events at or after this time.")
@click.option("--limit", default=1000, show_default=True)
@json_option
@pass_env
def audit_cmd(env: Env, username: str | None, since_text: str | None, limit: int, as_json: bool) -> None:
    """The audit trail."""
    from campusvpn.service import audit

    ctx = env.ctx
    subject = ctx.usernames.normalise(username) if username else None
    since = env.parse_time(since_text) if since_text else None
    out = audit.listing(ctx, subject=subject, since=since, limit=limit)
    if as_json:
        emit_json(out)
        return
    for r in out:
        detail = " ".join(f"{k}={v}" for k, v in (r["detail"] or {}).items() if v is not None)
        src = f" src={r['source']}" if r["source"] else ""
        note = f" — {r['note']}" if r["note"] else ""
        click.echo(
            f"{r['at']}  {r['event']:28} {r['outcome']:9} actor={r['actor']} subject={r['subject'] or '-'}"
            f"{src} {detail}{note}"
        )


@cli.command()
@click.argument("username")
@click.option("--source", help="Source address to account the attempt to (throttling).")
@json_option
@pass_env
def verify(env: Env, username: str, source: str | None, as_json: bool) -> None:
    """Would this sign-in succeed? Reads the password, then a code, from standard input.

    Uses the same sign-in engine as the gateway and portal; a code accepted here is used up.
    Exit status 0 when both factors are right, 1 when not (the VPN decision is printed too).
    """
    from campusvpn.service import eligibility
    from campusvpn.signin import Code, Finished, Password, Prompt, Purpose, Step

    lines = sys.stdin.read().splitlines()
    password = lines[0] if lines else ""
    code = lines[1].strip() if len(lines) > 1 else ""
    from campusvpn.service.signin_ports import start_signin

    engine = start_signin(env.ctx, Purpose.VPN, source=source or "cli")
    out = engine.handle(Password(username, password))
    if isinstance(out, Prompt) and out.step is Step.SECOND_FACTOR:
        out = engine.handle(Code(code))  # a wrong code leaves the prompt up: that is a failure here
    authenticated = isinstance(out, Finished) and out.factors == 2
    result: dict[str, Any] = {"authenticated": authenticated}
    if isinstance(out, Finished):
        result.update(
            code=out.code,
            message=out.message,
            method=out.used_method,
            vpn=eligibility.as_json(out.decision) if out.decision else None,
        )
    else:
        result.update(code="bad_code", message=out.error or out.message)
    if as_json:
        emit_json(result)
    else:
        click.echo(("OK: password and code are right. " if authenticated else "FAILED: ") + str(result["message"]))
        if isinstance(out, Finished) and out.decision is not None and authenticated:
            click.echo(decision_text(env.cfg, out.username or username, out.decision))
    sys.exit(0 if authenticated else 1)


# --- lifecycle and e-mail ----------------------------------------------------------------------


@cli.group("lifecycle")
def lifecycle_group() -> None:
    """The account lifecycle: gap resets, revocation at the end, purge after the retention."""


@lifecycle_group.command("run")
@json_option
@pass_env
def lifecycle_run(env: Env, as_json: bool) -> None:
    """Do what is due today (the gateway does this every [lifecycle] run_every); print what was done."""
    from campusvpn.service import lifecycle

    report = lifecycle.run(env.ctx)
    if as_json:
        emit_json(report.as_json())
        return
    for d in report.done:
        click.echo(f"{d['username']}: {d['step']} (due {d['due']})")
    for n in report.notices:
        click.echo(f"{n['username']}: notice {n['notice']} queued")
    if not report.done and not report.notices:
        click.echo(f"nothing due on {report.day.isoformat()}")


@cli.group("mail")
def mail_group() -> None:
    """The notice queue (e-mail, SMS, the portal's copies): waiting, failing and sent."""


@mail_group.command("queue")
@click.option("--all", "show_all", is_flag=True, help="Also list sent messages.")
@json_option
@pass_env
def mail_queue_cmd(env: Env, show_all: bool, as_json: bool) -> None:
    """Messages not yet delivered, with their tries and last error."""
    from campusvpn.service import mail_queue

    out = mail_queue.listing(env.ctx, include_sent=show_all)
    if as_json:
        emit_json(out)
        return
    click.echo(f"{out['waiting']} waiting, {out['failing']} of them failed at least once")
    for m in out["messages"]:
        state = f"sent {m['sent_at']}" if m["sent_at"] else f"next try {m['next_attempt_at']}"
        error = f" — last error: {m['last_error']}" if m["last_error"] else ""
        what = m["subject"] or "text message"  # an SMS has no subject
        click.echo(
            f"#{m['id']} {m['channel']} to {m['to'] or 'the portal'} ({m['username'] or '-'}) {what!r}: "
            f"{m['attempts']} tries, {state}{error}"
        )


@mail_group.command("send")
@pass_env
def mail_send(env: Env) -> None:
    """Deliver what is due now: e-mail over SMTP, SMS through the provider (the gateway does this every minute)."""
    from campusvpn.service import mail_sender

    out = mail_sender.deliver_now(env.ctx)
    click.echo(f"{out.sent} sent, {len(out.failed)} failed")
    for mid, error in out.failed:
        click.echo(f"#{mid}: {error}", err=True)


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.ClickException(f"no {what} on standard input")
    return line


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> None:
    """The `campusvpn` command. `clock` replaces the system clock: only tests/campusvpn_at.py passes one."""
    try:
        cli.main(argv, prog_name="campusvpn" if argv is not None else None, standalone_mode=False, obj=clock)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    """Exit with the message for an error a command raised (never a traceback to a user)."""
    # Imported here rather than at the top: they pull in pydantic and cryptography, which --help does not need.
    from campusvpn.core.usernames import InvalidUsername
    from campusvpn.platform.config import ConfigError
    from campusvpn.platform.secretbox import SecretBoxError
    from campusvpn.service.errors import ServiceError

    if isinstance(exc, ConfigError):
        for p in exc.problems:
            click.echo(p, err=True)
        sys.exit(2)
    if isinstance(exc, ServiceError | InvalidUsername | SecretBoxError):
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if os.environ.get("CAMPUSVPN_DEBUG"):  # the detail is for CAMPUSVPN_DEBUG
        raise exc
    click.echo(f"internal error: {type(exc).__name__}: {exc} (set CAMPUSVPN_DEBUG=1 for details)", err=True)
    sys.exit(70)
