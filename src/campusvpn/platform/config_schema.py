"""The configuration schema: what every setting means, its default and what is valid.

The pydantic models below are the one description of every setting: validation at
start-up, the commented default file written by `campusvpn init` and the reference page
in docs/ are all generated from them. Reading the file is platform/config.py's job.
"""

from __future__ import annotations

import ipaddress
import os
import re
import zoneinfo
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from campusvpn.platform.durations import DurationError, format_duration, parse_duration
from campusvpn.platform.logo import read_logo


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError('write a duration as a string with a unit, like "40m", "12h" or "30d"')
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from exc


Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]

_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")


def _month_day(value: Any) -> str:
    if not isinstance(value, str) or not _MONTH_DAY.match(value):
        raise ValueError('write a day of the year as "MM-DD", like "04-01"')
    month, day = (int(x) for x in value.split("-"))
    try:
        date(2024, month, day)  # a leap year, so 02-29 is accepted
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a day of the year") from exc
    return value


MonthDay = Annotated[str, BeforeValidator(_month_day)]


class Section(BaseModel):
    # defer_build: a model's validator is built at its first validation, not when the class is made.
    # A gateway worker receives its config already validated from the parent (app.workers) and
    # never validates, so it saves building them (~2.5 MB; start-up memory).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ServiceSection(Section):
    name: str = Field("Campus VPN", description="Name shown to users in messages, the portal and the TOTP app.")
    timezone: str = Field(
        "Asia/Tokyo", description="IANA time zone in which dates (affiliations, training deadlines) are read."
    )
    realms: list[str] = Field(
        default_factory=lambda: ["example.ac.jp"],
        description="Domains people may type after their user name (`1234567890@example.ac.jp`); dropped.",
    )
    username_pattern: str = Field(
        r"^[0-9]{10}$", description="Regular expression a normalised user name must match in full."
    )
    username_hint: str = Field(
        "10 digits, like 1234567890", description="How a valid user name looks, in words, for error messages."
    )
    username_hint_ja: str = Field(
        "10 桁の数字（例：1234567890）", description="`username_hint` in Japanese, for Japanese pages and messages."
    )
    roles: list[str] = Field(
        default_factory=lambda: ["faculty", "staff", "student", "dispatched", "visiting"],
        description="Roles an affiliation period may have.",
    )
    portal_url: str = Field(
        "https://vpn.example.ac.jp/", description="Where users manage MFA; named in refusal messages."
    )
    helpdesk: str = Field("the IT help desk", description="Who to contact, as it ends a sentence in refusal messages.")
    user: str = Field(
        "campusvpn",
        pattern=r"^([a-z_][a-z0-9_-]{0,31})?$",
        description="System user the gateway becomes once its ports and TUN device are ready (no root, no "
        "capabilities), owner of the state files, and whom root's `campusvpn` commands act as; `init` and `serve` "
        "create it when missing. Empty: stay as started (root stays root; not for production).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f'unknown time zone {v!r}; use an IANA name like "Asia/Tokyo" or "UTC"') from exc
        return v

    @field_validator("username_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one role is needed")
        for r in v:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", r):
                raise ValueError(f"role {r!r}: use lower-case letters, digits, - or _ (at most 32)")
        return v


class StorageSection(Section):
    database: str = Field(
        "sqlite:///campusvpn.db",
        description="SQLAlchemy URL. Relative SQLite paths are read from the config file's folder; "
        "use postgresql+psycopg://user:pass@host/db for several nodes.",
    )
    key_file: str = Field(
        "secret.keys", description="File with the keys that encrypt TOTP seeds; keep it out of DB backups."
    )

    @field_validator("database")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError("use a sqlite:/// or postgresql+psycopg:// URL")
        return v


class TlsSection(Section):
    certificate: str = Field("tls/cert.pem", description="PEM certificate chain served to clients and browsers.")
    key: str = Field("tls/key.pem", description="PEM private key of the certificate.")


class PasswordSection(Section):
    argon2_time_cost: int = Field(2, ge=1, le=50, description="Argon2id iterations.")
    argon2_memory_kib: int = Field(
        19456,
        ge=8192,
        le=4194304,
        description="Argon2id memory in KiB. 19456 (19 MiB) with 2 iterations is OWASP's baseline: about 19 ms "
        "per sign-in here, so one core takes about 30 sign-ins a second (see bench/signin_rate.py).",
    )
    argon2_parallelism: int = Field(1, ge=1, le=16, description="Argon2id lanes.")
    min_length: int = Field(12, ge=8, le=128, description="Shortest password accepted when one is set here.")
    email_confirm_lifetime: Duration = Field(
        timedelta(hours=24), description="How long the link that confirms a new e-mail address works."
    )


class MfaSection(Section):
    activation_delay: Duration = Field(
        timedelta(minutes=40), description="How long after the MFA application VPN use becomes possible."
    )
    issuer: str = Field("Campus VPN", description="Issuer shown in authenticator apps (no colon).")
    totp_digits: Literal[6, 8] = Field(6, description="Digits of TOTP codes; 6 works with every app.")
    totp_period: int = Field(30, ge=15, le=120, description="TOTP time step in seconds; 30 works with every app.")
    totp_algorithm: Literal["SHA1", "SHA256", "SHA512"] = Field(
        "SHA1", description="TOTP hash; SHA1 is the only one every app honours."
    )
    totp_drift_steps: int = Field(
        1, ge=0, le=2, description="Time steps accepted before and after now (1 = about ±30 s)."
    )
    recovery_code_count: int = Field(10, ge=5, le=20, description="Recovery codes in a set.")
    phone_code_lifetime: Duration = Field(
        timedelta(minutes=5), description="How long a code sent by SMS or voice call stays valid."
    )
    phone_sends_per_hour: int = Field(
        5, ge=1, le=60, description="Codes a user may have sent by SMS or voice in one hour (toll fraud)."
    )
    step_up_max_age: Duration = Field(
        timedelta(minutes=20), description="How fresh a second factor must be to change security info."
    )
    max_authenticators: int = Field(3, ge=1, le=5, description="Authenticator apps one user may register.")
    reregister_window: Duration = Field(
        timedelta(days=7),
        description="After users delete their own last method (which needs a fresh second factor), they may "
        "register a new one at sign-in without a recovery code for this long; later, or after a deletion by "
        "someone else, a recovery code or the help desk's pass is needed. 0: always.",
    )
    default_region: str = Field(
        "JP", description="Country assumed for phone numbers typed without +country code (ISO 3166 alpha-2)."
    )

    @field_validator("issuer")
    @classmethod
    def _no_colon(cls, v: str) -> str:
        if ":" in v or not v.strip():
            raise ValueError("the issuer must be non-empty and must not contain a colon")
        return v


class ThrottleSection(Section):
    free_failures: int = Field(3, ge=0, le=20, description="Failures allowed before any wait is imposed.")
    backoff_base: Duration = Field(timedelta(seconds=2), description="First wait after the free failures.")
    backoff_max: Duration = Field(timedelta(minutes=15), description="Longest wait between attempts.")
    password_lock_after: int = Field(
        30,
        ge=1,
        le=100,
        description="Password failures that lock one kind of client out of the account for `lock_duration`: "
        "unknown clients and the account's known clients (trusted devices, addresses of recent sign-ins) are "
        "counted apart, so a stranger cannot lock the owner out. The account as a whole locks after 100 "
        "consecutive failures from anywhere (NIST SP 800-63B). See docs/security.md.",
    )
    second_factor_lock_after: int = Field(
        10,
        ge=1,
        le=100,
        description="Second-factor failures that lock one kind of client (unknown or known, counted apart as "
        "for passwords) out of the account for `lock_duration`.",
    )
    source_lock_after: int = Field(
        100,
        ge=1,
        le=10000,
        description="Failures by unknown clients at one source address that block that address for "
        "`lock_duration` (after 20 free ones and waits of at most a minute); any success from the address "
        "clears its count, so a campus or carrier NAT is not punished for its users' typos.",
    )
    lock_duration: Duration = Field(
        timedelta(hours=1), description="How long a lock lasts unless an administrator lifts it sooner."
    )


class TrustedDeviceSection(Section):
    lifetime: Duration = Field(timedelta(days=30), description='How long "skip the code on this device" lasts.')
    max_per_user: int = Field(10, ge=1, le=100, description="Trusted devices per user; the oldest goes first.")


class TrainingWindow(Section):
    name: str = Field(description="Name of the window, e.g. students.")
    roles: list[str] = Field(description="Roles this window applies to.")
    opens: MonthDay = Field(description="Day (MM-DD) the training opens each fiscal year.")
    deadline: MonthDay = Field(description="Last day (MM-DD) to complete; from the next day VPN use is refused.")


def _default_windows() -> list[TrainingWindow]:
    return [
        TrainingWindow(name="students", roles=["student"], opens="05-01", deadline="06-30"),
        TrainingWindow(
            name="staff",
            roles=["faculty", "staff", "dispatched", "visiting"],
            opens="07-01",
            deadline="09-30",
        ),
    ]


class TrainingSection(Section):
    required: bool = Field(True, description="Whether the yearly information-security training is enforced.")
    fiscal_year_start: MonthDay = Field("04-01", description="First day (MM-DD) of the fiscal year.")
    url: str = Field("https://lms.example.ac.jp/security-training", description="Where users take the training.")
    windows: list[TrainingWindow] = Field(default_factory=_default_windows, description="Training windows by role.")


class SenderSection(Section):
    kind: Literal["outbox", "twilio", "webhook"] = Field(
        "outbox",
        description="How SMS and voice messages go out: `outbox` writes them to a file (development), `twilio` "
        "uses Twilio's REST API (Messages for SMS, Calls with TwiML for voice), `webhook` posts JSON to "
        "`webhook_url` (a local provider).",
    )
    twilio_account_sid: str = Field("", description="Twilio account SID (AC…); with kind = `twilio`.")
    twilio_auth_token: str = Field("", description="Twilio auth token (prefer twilio_auth_token_env).")
    twilio_auth_token_env: str = Field(
        "", description="Name of an environment variable holding the Twilio auth token (used when it is set)."
    )
    twilio_from: str = Field("", description="Sending number (E.164) for SMS and calls.")
    twilio_api_base: str = Field(
        "https://api.twilio.com", description="Base URL of Twilio's REST API (change only for a regional edge)."
    )
    webhook_url: str = Field("", description="HTTPS URL the `webhook` provider posts each message to.")
    webhook_auth_header: str = Field(
        "Authorization", description="Header carrying the webhook's credential; empty: none is sent."
    )
    webhook_auth_value: str = Field("", description="Value of that header, e.g. `Bearer …` (prefer _env).")
    webhook_auth_value_env: str = Field(
        "", description="Name of an environment variable holding the header's value (used when it is set)."
    )
    webhook_template: dict[str, str] = Field(
        default_factory=lambda: {
            "to": "{to}",
            "channel": "{channel}",
            "text": "{text}",
            "extension": "{extension}",
            "language": "{language}",
        },
        description="JSON object posted for each message; in each value {to}, {channel} (sms or voice), {text}, "
        "{extension}, {language} (en or ja) and {username} are replaced.",
    )
    provider_ca_file: str = Field("", description="CA certificates to check the provider with; empty: the system's.")
    provider_timeout: Duration = Field(timedelta(seconds=10), description="Time limit of one request to the provider.")
    provider_tries: int = Field(
        2, ge=1, le=5, description="Tries of a code's SMS or call while the user waits (timeouts and 5xx only)."
    )
    sms_notices: bool = Field(
        False, description="Also send lifecycle notices by SMS to the user's mobile phone (queued, retried)."
    )
    outbox: str = Field("outbox.jsonl", description="File the outbox sender appends messages to (JSON lines).")
    smtp_host: str = Field(
        "",
        description="SMTP server for e-mail notices. Empty: e-mail goes to the outbox file like SMS (development).",
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP server (587 STARTTLS, 465 TLS).")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="`starttls` (upgrade after connecting; refused if the server does not offer it), `tls` "
        "(implicit TLS, usually port 465) or `none` (plain: only for a relay on the same host).",
    )
    smtp_user: str = Field("", description="User name for SMTP authentication; empty: no authentication.")
    smtp_password: str = Field("", description="Password for SMTP authentication (prefer smtp_password_env).")
    smtp_password_env: str = Field(
        "", description="Name of an environment variable holding the SMTP password (used when it is set)."
    )
    smtp_ca_file: str = Field("", description="CA certificates to check the SMTP server with; empty: the system's.")
    smtp_timeout: Duration = Field(timedelta(seconds=30), description="Time limit of one SMTP conversation.")
    mail_from: str = Field("campusvpn@example.ac.jp", description="From address of e-mail notices.")
    mail_retry_base: Duration = Field(
        timedelta(minutes=1), description="Wait before the first retry of a failed e-mail; doubled each failure."
    )
    mail_retry_max: Duration = Field(timedelta(hours=1), description="Longest wait between two tries of an e-mail.")

    @model_validator(mode="after")
    def _provider(self) -> SenderSection:
        if self.kind == "twilio":
            if not self.twilio_account_sid or not self.twilio_from:
                raise ValueError("kind = twilio needs twilio_account_sid and twilio_from")
            _https_or_loopback("twilio_api_base", self.twilio_api_base)
        if self.kind == "webhook":
            if not self.webhook_url:
                raise ValueError("kind = webhook needs webhook_url")
            _https_or_loopback("webhook_url", self.webhook_url)
        for key, value in self.webhook_template.items():
            try:
                value.format(to="", channel="", text="", extension="", language="", username="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"webhook_template {key!r}: {exc!r} is an unknown placeholder or malformed") from exc
        return self


def _https_or_loopback(key: str, url: str) -> None:
    """Codes travel in these requests: HTTPS, or plain HTTP only to this host (a local relay, tests)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return
    raise ValueError(f"{key} must be an https:// URL (http:// only to 127.0.0.1 or localhost)")


def _default_checklist_en() -> list[str]:
    return [
        "Mail: export or forward the messages you want to keep.",
        "Files: copy your files from university storage and cloud drives.",
        "Licensed software: university licences end with the account; uninstall or buy your own.",
    ]


def _default_checklist_ja() -> list[str]:
    return [
        "メール：残したいメールをエクスポートまたは転送する。",
        "ファイル：大学のストレージやクラウドドライブからファイルをコピーする。",
        "ライセンスソフトウェア：大学のライセンスはアカウントとともに終了します。アンインストールするか各自で購入する。",
    ]


class NoticesSection(Section):
    templates: str = Field(
        "",
        description="TOML file with the operator's texts of notices (mail subject and body, SMS, VPN banner) in "
        "en and ja, overriding the built-in ones kind by kind; see docs/lifecycle.md. Empty: the built-in texts.",
    )
    training_deadline_days: list[int] = Field(
        default_factory=lambda: [14, 3, 1],
        description="Days before the training deadline on which users who have not done it are reminded.",
    )


class LifecycleSection(Section):
    grace: Duration = Field(
        timedelta(0),
        description="Time after the last day of the last affiliation before the account is revoked (whole days).",
    )
    retention: Duration = Field(
        timedelta(days=90),
        description="Time after revocation before password, MFA methods, recovery codes and devices are deleted "
        "(whole days); the audit trail stays.",
    )
    notice_days: list[int] = Field(
        default_factory=lambda: [30, 7, 1],
        description='Days before the last day of an affiliation on which "your account ends" is e-mailed.',
    )
    backup_checklist_en: list[str] = Field(
        default_factory=_default_checklist_en, description="Back-up checklist in the ending notice (English)."
    )
    backup_checklist_ja: list[str] = Field(
        default_factory=_default_checklist_ja, description="Back-up checklist in the ending notice (Japanese)."
    )
    run_every: Duration = Field(timedelta(hours=1), description="How often the gateway runs the lifecycle job.")


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f'{value!r} is not a network; write it like "10.0.0.0/8" (host bits zero)') from exc
    return value


def _address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'{value!r}: write ADDRESS:PORT, like "0.0.0.0:443" or "[::]:443"')
    _address(host.strip("[]"))
    return value


Network = Annotated[str, BeforeValidator(lambda v: _network(v) if isinstance(v, str) else v)]
IpAddress = Annotated[str, BeforeValidator(lambda v: _address(v) if isinstance(v, str) else v)]
Listen = Annotated[str, BeforeValidator(lambda v: _listen(v) if isinstance(v, str) else v)]


class GatewaySection(Section):
    listen: Listen = Field(
        "0.0.0.0:443", description="Address and port of the VPN gateway and the web portal (one port)."
    )
    hostname: str = Field(
        "vpn.example.ac.jp", description="Name clients use for the gateway; shown in profiles and the README."
    )
    tun_device: str = Field("cvpn0", description="Name of the gateway's TUN device.")
    max_sessions_per_user: int = Field(3, ge=1, le=100, description="Concurrent VPN sessions one user may hold.")
    disconnected_timeout: Duration = Field(
        timedelta(minutes=5), description="How long a session whose connection dropped can be resumed by its cookie."
    )
    idle_timeout: Duration = Field(
        timedelta(minutes=30), description="A session that passes no traffic for this long is ended."
    )
    session_timeout: Duration = Field(
        timedelta(hours=12), description="Longest a session lives before the user signs in again (AAL2: 12 h)."
    )
    dpd: Duration = Field(timedelta(seconds=30), description="Dead-peer detection interval told to clients.")
    keepalive: Duration = Field(timedelta(seconds=20), description="Keepalive interval told to clients.")
    auth_timeout: Duration = Field(timedelta(minutes=5), description="Time a client has to finish signing in.")
    handshake_timeout: Duration = Field(
        timedelta(seconds=10), description="Time a client has to finish the TLS handshake."
    )
    header_timeout: Duration = Field(
        timedelta(seconds=10),
        description="Time a request's line and headers have to arrive once they start; a client that trickles "
        "them slower loses the connection.",
    )
    keepalive_timeout: Duration = Field(
        timedelta(seconds=15),
        description="How long a connection may wait, idle, for its next request (browsers' keep-alive).",
    )
    min_receive_rate: int = Field(
        4096,
        ge=64,
        le=10_000_000,
        description="Slowest a request body may arrive, in bytes per second (after `header_timeout` of grace).",
    )
    max_pending: int = Field(
        256,
        ge=1,
        le=100000,
        description="Connections anyone may hold at once before reaching a tunnel (TLS handshake, sign-in pages).",
    )
    pending_reserved: int = Field(
        64,
        ge=0,
        le=100000,
        description="More connections beyond `max_pending`, only for VPN clients that carry a live session: "
        "connected users reconnect even while strangers hold every open slot.",
    )
    max_pending_per_address: int = Field(
        16,
        ge=1,
        le=100000,
        description="Connections one source address may hold before reaching a tunnel: room for a NAT's users "
        "signing in at once, yet a few addresses cannot fill `max_pending`.",
    )
    policy_recheck: Duration = Field(
        timedelta(seconds=60), description="How often live sessions are checked against the access policy."
    )
    metrics_listen: Listen = Field("127.0.0.1:9180", description="Where Prometheus metrics are served (keep it local).")
    workers: Literal["auto"] | int = Field(
        "auto",
        description='Gateway processes sharing the port: "auto" (one per core) or a number (1: a single process). '
        "Each serves its own share of tunnels through its own TUN device; metrics are summed over them.",
    )
    hash_processes: int = Field(
        1,
        ge=0,
        le=64,
        description="Processes per gateway worker that check passwords and recovery codes (Argon2id), so a wave "
        "of sign-ins does not hold up packets; 0 checks them in the worker's own threads.",
    )

    @field_validator("workers")
    @classmethod
    def _workers_in_range(cls, v: str | int) -> str | int:
        if isinstance(v, int) and not 1 <= v <= 256:
            raise ValueError('workers must be "auto" or a number from 1 to 256')
        return v

    def worker_count(self) -> int:
        """How many gateway processes to run: "auto" is one per core this process may use."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return self.workers

    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of the gateway: uvloop (libuv; less time per wake-up, so lower latency "
        "through the tunnel) or Python's own asyncio loop.",
    )


class PortalSection(Section):
    enabled: bool = Field(
        True, description="Serve the self-service portal and admin console to browsers on the gateway port."
    )
    admins: list[str] = Field(
        default_factory=list,
        description="User names allowed into the admin console (they sign in with MFA like everyone).",
    )
    session_lifetime: Duration = Field(
        timedelta(hours=8), description="Longest a portal sign-in lasts before the user signs in again."
    )
    idle_timeout: Duration = Field(timedelta(minutes=30), description="A portal sign-in unused this long ends.")
    default_language: Literal["ja", "en"] = Field(
        "ja", description="Language when the browser states no preference we have (ja or en)."
    )
    max_upload: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024, description="Largest upload (CSV) in bytes."
    )
    api_token_lifetime: Duration = Field(
        timedelta(days=90), description="How long an admin API token is valid after it is created."
    )
    recovery_pass_lifetime: Duration = Field(
        timedelta(hours=24), description="How long a help-desk one-time recovery pass stays usable."
    )
    university: str = Field(
        "", max_length=100, description="The university's name, shown above the service name on every portal page."
    )
    brand_colour: str = Field(
        "#0b2e59",
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="The portal header's colour (#rrggbb; dark enough for white text).",
    )
    accent_colour: str = Field(
        "#0b5cad",
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="Buttons and links (#rrggbb; dark enough for white text on buttons).",
    )
    helpdesk_ja: str = Field(
        "IT ヘルプデスク",
        max_length=100,
        description="The help desk's name on Japanese pages (`[service] helpdesk` is the English one).",
    )
    helpdesk_contact: str = Field(
        "",
        max_length=200,
        description="How to reach the help desk (phone, e-mail, room), shown in every page's footer.",
    )
    help_url: str = Field(
        "", pattern=r"^(https?://\S+)?$", description="A help page linked from every page's footer; empty: no link."
    )
    privacy_url: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description="The privacy notice linked from every page's footer; empty: no link.",
    )
    software_url: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description="The university's software site where members download Cisco Secure Client or FortiClient, "
        "linked from the Get connected page; empty: the page tells them to ask the help desk.",
    )
    logo: str = Field(
        "",
        description="The university's logo in every portal page's header (its alt text is `university`): a PNG or "
        "SVG file of at most 256 KiB, its type told by its content, checked at start; a relative path is read "
        "from the configuration file's folder. Empty: no logo.",
    )

    @field_validator("logo")
    @classmethod
    def _logo(cls, v: str, info: ValidationInfo) -> str:
        if v:
            base = (info.context or {}).get("base_dir", Path("."))
            read_logo(Path(v) if Path(v).is_absolute() else Path(base) / v)  # raises with what is wrong
        return v


class VpnSettings(Section):
    pool: Network = Field("172.31.0.0/16", description="Address pool; each client gets one /32 from it.")
    dns: list[IpAddress] = Field(default_factory=list, description="DNS servers pushed to clients (at most 3).")
    domain: str = Field("example.ac.jp", description="Default DNS domain pushed to clients.")
    wins: list[IpAddress] = Field(default_factory=list, description="WINS servers pushed to clients (at most 3).")
    # Only 10/8 by default: routing 192.168/16 into the tunnel would cut users off their home LAN.
    split_include: list[Network] = Field(
        default_factory=lambda: ["10.0.0.0/8"],
        description="Networks routed into the tunnel (ignored when full_tunnel is true).",
    )
    split_exclude: list[Network] = Field(default_factory=list, description="Networks kept outside the tunnel.")
    full_tunnel: bool = Field(False, description="Route everything through the tunnel (a default route).")
    proxy_pac: str = Field("", description="Proxy auto-configuration (PAC) URL pushed to clients.")
    allow_local_lan: bool = Field(True, description="Let clients keep reaching their local LAN while connected.")
    banner: str = Field("", description="Text shown by the client after connecting.")
    mtu: int = Field(
        1472,
        ge=576,
        le=9000,
        description="Tunnel MTU of a TLS-only tunnel and of the TUN device; a DTLS tunnel gets the largest MTU "
        "that fits one datagram on the client's link, at most this.",
    )
    login: Literal["form", "browser"] = Field(
        "form",
        description=(
            "How VPN clients sign in: form (user name, password and code in the client's own fields) or "
            "browser (the client opens the portal's sign-in page: passkeys, trusted-device cookie)."
        ),
    )

    @field_validator("dns", "wins")
    @classmethod
    def _three(cls, v: list[str]) -> list[str]:
        if len(v) > 3:
            raise ValueError("clients use at most 3 servers; list at most 3")
        return v

    @model_validator(mode="after")
    def _routes(self) -> VpnSettings:
        if not self.full_tunnel and not self.split_include:
            raise ValueError("set split_include (the campus networks) or full_tunnel = true")
        return self


class VpnProfile(Section):
    name: str = Field(description="Group name clients select (openconnect --authgroup NAME).")
    label: str = Field("", description="Label shown in the client's group list; should start with the name.")
    roles: list[str] = Field(default_factory=list, description="Roles allowed to use this profile (empty: all).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Any [vpn] key, overriding the [vpn] value for this profile."
    )


_SECTION_ONLY = {"profiles", "dtls", "dtls_port"}  # [vpn] keys that are the gateway's, not a profile's


class VpnSection(VpnSettings):
    dtls: bool = Field(
        True, description="Offer AnyConnect clients DTLS (UDP) for their packets; TLS stays the fallback."
    )
    dtls_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="UDP port for DTLS (0: the port of [gateway] listen). With several [gateway] workers, "
        "each has its own: this port, the next one up, and so on (open them all in the firewall).",
    )
    profiles: list[VpnProfile] = Field(
        default_factory=list,
        description="Groups with their own settings; a group list is shown when there are two or more.",
    )

    def base(self) -> VpnSettings:
        return VpnSettings.model_validate(self.model_dump(exclude=_SECTION_ONLY))

    def settings_for(self, profile: VpnProfile | None) -> VpnSettings:
        base = self.model_dump(exclude=_SECTION_ONLY)
        return VpnSettings.model_validate({**base, **(profile.settings if profile else {})})

    @model_validator(mode="after")
    def _profiles(self) -> VpnSection:
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError("two profiles have the same name")
        for p in self.profiles:
            unknown = set(p.settings) - set(VpnSettings.model_fields)
            if unknown:
                raise ValueError(f"profile {p.name!r}: unknown setting(s) {', '.join(sorted(unknown))}")
            try:
                self.settings_for(p)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = first["loc"][-1] if first["loc"] else ""
                msg = str(first["msg"]).removeprefix("Value error, ")
                raise ValueError(f"profile {p.name!r}: {where}: {msg}") from exc
        return self


class IdentitySection(Section):
    """The university's identity systems: which one checks passwords (the first factor, for the VPN
    form and the portal alike), and accounts made from what they say. See docs/sso.md."""

    first_factor: Literal["local", "ldap"] = Field(
        "local",
        description="Who checks passwords: local (campusvpn's own Argon2id hashes) or ldap (a bind to [ldap]).",
    )
    create_accounts: bool = Field(
        False,
        description="Create an account at the first sign-in of someone the directory or identity provider knows "
        "and campusvpn does not (its role from role_map, else default_role).",
    )
    default_role: str = Field(
        "",
        description="Role of an account created at sign-in when role_map gives none; empty: such people are refused.",
    )
    role_map: dict[str, str] = Field(
        default_factory=dict,
        description='Directory or identity provider value -> role, e.g. { student = "student", faculty = "faculty" }; '
        "the first value of the user's that is mapped wins.",
    )


class LdapSection(Section):
    """The LDAP directory used when [identity] password = "ldap"."""

    servers: list[str] = Field(
        default_factory=list,
        description='Directory URLs tried in order, e.g. ["ldaps://ldap1.example.ac.jp", "ldaps://ldap2.example.ac.jp"].',
    )
    starttls: bool = Field(False, description="Upgrade ldap:// connections with StartTLS before any bind.")
    allow_plain: bool = Field(
        False,
        description="Allow ldap:// without StartTLS (passwords in clear): only for a directory on the loopback "
        "in tests.",
    )
    ca_file: str = Field("", description="CA certificates to check the directory's certificate; empty: the system's.")
    user_dn_template: str = Field(
        "",
        description='Direct bind: the user\'s DN, e.g. "uid={username},ou=people,dc=example,dc=ac,dc=jp". '
        "Empty: search with base_dn and user_filter.",
    )
    base_dn: str = Field("", description="Where users are searched, e.g. ou=people,dc=example,dc=ac,dc=jp.")
    user_filter: str = Field("(uid={username})", description="Search filter; {username} is the normalised user name.")
    service_dn: str = Field("", description="Service account that searches; empty: search anonymously.")
    service_password: str = Field("", description="Its password (prefer service_password_env).")
    service_password_env: str = Field("", description="Environment variable holding the service account's password.")
    role_attribute: str = Field("", description="Attribute mapped to a role through [identity] role_map.")
    name_attribute: str = Field("cn", description="Attribute with the person's name (accounts created at sign-in).")
    email_attribute: str = Field("mail", description="Attribute with the e-mail address (accounts created at sign-in).")
    connect_timeout: Duration = Field(timedelta(seconds=5), description="Time limit to connect to one server.")
    timeout: Duration = Field(
        timedelta(seconds=10), description="Time limit of one directory answer, and of waiting for a free connection."
    )
    pool_size: int = Field(4, ge=1, le=64, description="Directory connections kept open and reused.")

    @model_validator(mode="after")
    def _secure(self) -> LdapSection:
        for url in self.servers:
            if not url.startswith(("ldap://", "ldaps://")):
                raise ValueError(f"ldap server {url!r} must start with ldaps:// or ldap://")
            if url.startswith("ldap://") and not (self.starttls or self.allow_plain):
                raise ValueError(
                    f"ldap server {url!r} sends passwords in clear: use ldaps://, set starttls = true, "
                    "or (tests on the loopback only) allow_plain = true"
                )
        return self


class OidcSection(Section):
    """An OpenID Connect identity provider for the portal's "Sign in with ..." button."""

    enabled: bool = Field(False, description="Show the button and accept sign-ins through the provider.")
    label: str = Field("the university", description='Shown as "Sign in with <label>".')
    label_ja: str = Field("大学の統合認証", max_length=100, description="The label on Japanese pages.")
    issuer: str = Field("", description="The provider's issuer URL (https); its discovery document is read from it.")
    client_id: str = Field("", description="This portal's client id at the provider.")
    client_secret: str = Field("", description="Its client secret (prefer client_secret_env).")
    client_secret_env: str = Field("", description="Environment variable holding the client secret.")
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"], description="Scopes asked for; openid is required."
    )
    username_claim: str = Field(
        "preferred_username", description="ID token claim holding the user name (normalised like every name)."
    )
    role_claim: str = Field("", description="Claim mapped to a role through [identity] role_map (accounts made).")
    trust_idp_mfa: bool = Field(
        False,
        description="Skip campusvpn's second factor when the ID token shows the provider's MFA (mfa_amr / mfa_acr).",
    )
    mfa_amr: list[str] = Field(
        default_factory=lambda: ["mfa", "otp", "hwk", "swk", "sms"],
        description="amr values that show the provider's MFA (RFC 8176).",
    )
    mfa_acr: list[str] = Field(default_factory=list, description="acr values that show the provider's MFA.")
    ca_file: str = Field("", description="CA certificates to check the provider with; empty: the system's.")
    timeout: Duration = Field(timedelta(seconds=10), description="Time limit of one request to the provider.")
    clock_skew: Duration = Field(timedelta(seconds=60), description="Clock difference tolerated in ID token times.")

    def secret(self) -> str:
        return os.environ.get(self.client_secret_env, "") if self.client_secret_env else self.client_secret

    @model_validator(mode="after")
    def _complete(self) -> OidcSection:
        if self.enabled:
            if not self.issuer.startswith("https://"):
                raise ValueError("oidc.issuer must be an https URL")
            if not self.client_id:
                raise ValueError("oidc.client_id is empty")
            if "openid" not in self.scopes:
                raise ValueError('oidc.scopes must include "openid"')
        return self


class VerificationSection(Section):
    """An identity-verification service (OpenID Connect) that asserts a verified real-world identity:
    members link it to their account in advance (after a fresh second factor) and later use it to
    set a new password or register MFA again without the help desk. See docs/lifecycle.md."""

    enabled: bool = Field(
        False, description="Offer linking on the security page and the self-reset on the sign-in page."
    )
    label: str = Field("the identity verification service", description="The service's name shown to members.")
    label_ja: str = Field("本人確認サービス", max_length=100, description="The service's name on Japanese pages.")
    issuer: str = Field("", description="The provider's issuer URL (https); its discovery document is read from it.")
    client_id: str = Field("", description="This portal's client id at the provider.")
    client_secret: str = Field("", description="Its client secret (prefer client_secret_env).")
    client_secret_env: str = Field("", description="Environment variable holding the client secret.")
    scopes: list[str] = Field(default_factory=lambda: ["openid"], description="Scopes asked for; openid is required.")
    subject_claim: str = Field(
        "sub", description="ID token claim that names the person stably at this provider (linked to the account)."
    )
    required_acr: str = Field(
        "", description="acr value the ID token must carry (the provider's verified-identity level); empty: any."
    )
    ca_file: str = Field("", description="CA certificates to check the provider with; empty: the system's.")
    timeout: Duration = Field(timedelta(seconds=10), description="Time limit of one request to the provider.")
    clock_skew: Duration = Field(timedelta(seconds=60), description="Clock difference tolerated in ID token times.")
    reset_window: Duration = Field(
        timedelta(minutes=10), description="How long after verifying the member may set a new password or reset MFA."
    )
    link_key_file: str = Field(
        "identity-link.key",
        description="Key of the linked identities' keyed hash (created by init or at first use; never rotate it, "
        "keep it apart from database backups).",
    )

    @model_validator(mode="after")
    def _complete(self) -> VerificationSection:
        if self.enabled:
            if not self.issuer.startswith("https://"):
                raise ValueError("verification.issuer must be an https URL")
            if not self.client_id:
                raise ValueError("verification.client_id is empty")
            if "openid" not in self.scopes:
                raise ValueError('verification.scopes must include "openid"')
            if not self.subject_claim:
                raise ValueError("verification.subject_claim is empty")
        return self

    def client_section(self) -> OidcSection:
        """The same OpenID Connect client machinery as [oidc], with this provider's settings."""
        return OidcSection(
            enabled=True,
            label=self.label,
            issuer=self.issuer,
            client_id=self.client_id,
            client_secret=self.client_secret,
            client_secret_env=self.client_secret_env,
            scopes=self.scopes,
            ca_file=self.ca_file,
            timeout=self.timeout,
            clock_skew=self.clock_skew,
        )


class SamlSection(Section):
    """A SAML 2.0 identity provider for the portal's "Sign in with ..." button (campusvpn is the
    service provider; its metadata is at <portal_url>saml/metadata). See docs/sso.md."""

    enabled: bool = Field(False, description="Show the button and accept sign-ins through the identity provider.")
    label: str = Field("the university", description='Shown as "Sign in with <label>".')
    label_ja: str = Field("大学の統合認証", max_length=100, description="The label on Japanese pages.")
    entity_id: str = Field(
        "", description="This service provider's entity ID; empty: <[service] portal_url>saml/metadata."
    )
    idp_metadata_file: str = Field("", description="The identity provider's metadata, from a file.")
    idp_metadata_url: str = Field("", description="... or from an https URL (read again every metadata_refresh).")
    idp_entity_id: str = Field("", description="Which identity provider of the metadata; empty: its only one.")
    ca_file: str = Field("", description="CA certificates to check idp_metadata_url with; empty: the system's.")
    metadata_refresh: Duration = Field(timedelta(hours=24), description="How often idp_metadata_url is read again.")
    username_attribute: str = Field(
        "",
        description='Attribute holding the user name, e.g. "urn:oid:0.9.2342.19200300.100.1.1" (uid) or its '
        "friendly name; empty: the NameID. Normalised like every name.",
    )
    role_attribute: str = Field(
        "", description="Attribute mapped to a role through [identity] role_map (accounts made at sign-in)."
    )
    name_attribute: str = Field("displayName", description="Attribute with the person's name (accounts made).")
    email_attribute: str = Field("mail", description="Attribute with the e-mail address (accounts made).")
    trust_idp_mfa: bool = Field(
        False,
        description="Skip campusvpn's second factor when the assertion's AuthnContext is one of mfa_authn_contexts.",
    )
    mfa_authn_contexts: list[str] = Field(
        default_factory=lambda: ["https://refeds.org/profile/mfa"],
        description="AuthnContextClassRef values that show the identity provider's MFA.",
    )
    timeout: Duration = Field(timedelta(seconds=10), description="Time limit of reading idp_metadata_url.")
    clock_skew: Duration = Field(timedelta(seconds=60), description="Clock difference tolerated in assertion times.")

    @model_validator(mode="after")
    def _complete(self) -> SamlSection:
        if self.enabled:
            if bool(self.idp_metadata_file) == bool(self.idp_metadata_url):
                raise ValueError("saml: set exactly one of idp_metadata_file and idp_metadata_url")
            if self.idp_metadata_url and not self.idp_metadata_url.startswith("https://"):
                raise ValueError("saml.idp_metadata_url must be an https URL (the metadata holds the signing keys)")
        return self


class Config(Section):
    service: ServiceSection = Field(default_factory=ServiceSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    tls: TlsSection = Field(default_factory=TlsSection)
    passwords: PasswordSection = Field(default_factory=PasswordSection)
    mfa: MfaSection = Field(default_factory=MfaSection)
    throttle: ThrottleSection = Field(default_factory=ThrottleSection)
    trusted_devices: TrustedDeviceSection = Field(default_factory=TrustedDeviceSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    sender: SenderSection = Field(default_factory=SenderSection)
    lifecycle: LifecycleSection = Field(default_factory=LifecycleSection)
    notices: NoticesSection = Field(default_factory=NoticesSection)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    vpn: VpnSection = Field(default_factory=VpnSection)
    portal: PortalSection = Field(default_factory=PortalSection)
    identity: IdentitySection = Field(default_factory=IdentitySection)
    ldap: LdapSection = Field(default_factory=LdapSection)
    oidc: OidcSection = Field(default_factory=OidcSection)
    saml: SamlSection = Field(default_factory=SamlSection)
    verification: VerificationSection = Field(default_factory=VerificationSection)

    # Where the file was read from: relative paths in it are read from there.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        roles = set(self.service.roles)
        seen: dict[str, str] = {}
        for w in self.training.windows:
            for r in w.roles:
                if r not in roles:
                    raise ValueError(f"training window {w.name!r} names role {r!r}, not in service.roles")
                if r in seen:
                    raise ValueError(f"role {r!r} is in two training windows: {seen[r]!r} and {w.name!r}")
                seen[r] = w.name
        for p in self.vpn.profiles:
            for r in p.roles:
                if r not in roles:
                    raise ValueError(f"vpn profile {p.name!r} names role {r!r}, not in service.roles")
        for value, role in self.identity.role_map.items():
            if role not in roles:
                raise ValueError(f"identity.role_map maps {value!r} to role {role!r}, not in service.roles")
        if self.identity.default_role and self.identity.default_role not in roles:
            raise ValueError(f"identity.default_role {self.identity.default_role!r} is not in service.roles")
        if self.identity.first_factor == "ldap":
            if not self.ldap.servers:
                raise ValueError('identity.first_factor = "ldap" needs [ldap] servers')
            if not (self.ldap.user_dn_template or self.ldap.base_dn):
                raise ValueError('identity.first_factor = "ldap" needs [ldap] user_dn_template or base_dn')
        if self.throttle.backoff_base > self.throttle.backoff_max:
            raise ValueError("throttle.backoff_base is longer than throttle.backoff_max")
        return self

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def database_url(self) -> str:
        url = self.storage.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]).resolve())
        return url

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.service.timezone)
