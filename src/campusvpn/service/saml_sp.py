"""campusvpn as a SAML 2.0 service provider (pysaml2 and the xmlsec1 program).

The AuthnRequest goes by HTTP-Redirect; the answer comes back by HTTP-POST to the assertion
consumer service. An answer is a sign-in only if its assertion is signed by the identity provider's
key from its metadata (a signed response around an unsigned assertion is not enough), is for this
service provider (audience), is within its times (NotBefore / NotOnOrAfter, with `clock_skew`) and
answers the request this browser started (InResponseTo; unsolicited answers are refused). Whether
the assertion was already used is `service.saml`'s question (the database, shared by every worker
process)."""

from __future__ import annotations

import logging
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campusvpn.platform.config_schema import SamlSection

if TYPE_CHECKING:
    from saml2.client import Saml2Client
    from saml2.config import SPConfig

log = logging.getLogger("campusvpn.saml")
METADATA_PATH = "/saml/metadata"
ACS_PATH = "/saml/acs"
MAX_METADATA = 8 * 1024 * 1024  # a federation's aggregate can be large, not unbounded
# pysaml2 is imported when SAML is first used (it is slow to import, and most sites have no SAML);
# its import warns about a cipher mode moving in `cryptography`, which is not ours to act on.
warnings.filterwarnings("ignore", message=".*CFB has been moved.*")


class SamlRefused(Exception):
    """The answer is not a sign-in (unsigned, expired, not for us, not for this request...). Logged;
    the user reads a generic sentence."""


class SamlUnavailable(Exception):
    """The identity provider's metadata could not be read."""


@dataclass(frozen=True)
class Begun:
    url: str  # where the browser goes (the identity provider, with the AuthnRequest)
    request_id: str  # kept in the portal session: the answer must be InResponseTo it


@dataclass(frozen=True)
class Asserted:
    """What a valid assertion says."""

    assertion_id: str
    issuer: str
    name_id: str | None
    attributes: dict[str, list[str]]  # by the attribute's name and by its friendly name
    authn_contexts: list[str]
    expires_at: datetime  # after this nobody can use it again: the replay record may go

    def values(self, attribute: str) -> list[str]:
        return self.attributes.get(attribute, []) if attribute else []

    def first(self, attribute: str) -> str | None:
        found = self.values(attribute)
        return found[0] if found else None


@dataclass
class SamlServiceProvider:
    cfg: SamlSection
    portal_url: str  # [service] portal_url: where the browser reaches us
    base_dir: Path
    _client: Saml2Client | None = field(default=None, repr=False)
    _loaded_at: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def entity_id(self) -> str:
        return self.cfg.entity_id or self.portal_url.rstrip("/") + METADATA_PATH

    @property
    def acs_url(self) -> str:
        return self.portal_url.rstrip("/") + ACS_PATH

    # --- the two legs -----------------------------------------------------------------------------

    def begin(self) -> Begun:
        from saml2 import BINDING_HTTP_REDIRECT

        client = self.client()
        try:
            request_id, info = client.prepare_for_authenticate(
                entityid=self._idp_entity_id(client), binding=BINDING_HTTP_REDIRECT
            )
        except (ValueError, KeyError, LookupError) as exc:
            raise SamlRefused(f"no AuthnRequest for the identity provider: {exc}") from exc
        location = dict(info["headers"]).get("Location")
        if not location:
            raise SamlRefused("the identity provider has no HTTP-Redirect sign-in endpoint in its metadata")
        return Begun(str(location), str(request_id))

    def parse(self, saml_response: str, request_id: str) -> Asserted:
        """The assertion of the answer to `request_id`, if it is valid; else SamlRefused."""
        from saml2 import BINDING_HTTP_POST

        client = self.client()
        try:
            answer = client.parse_authn_request_response(
                saml_response, BINDING_HTTP_POST, outstanding={request_id: "/"}
            )
        except Exception as exc:  # pysaml2 raises many types for a bad answer; every one is a refusal
            raise SamlRefused(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        if answer is None or answer.assertion is None:
            raise SamlRefused("the answer holds no assertion")
        assertion = answer.assertion
        # pysaml2 checked the signature when it asked for one; this says the assertion had one.
        if assertion.signature is None:
            raise SamlRefused("the assertion is not signed")
        if answer.in_response_to != request_id:
            raise SamlRefused("the answer is not to the request this browser started")
        return Asserted(
            assertion_id=str(assertion.id),
            issuer=str(answer.issuer()),
            name_id=str(answer.name_id.text).strip() if answer.name_id is not None and answer.name_id.text else None,
            attributes=_attributes(assertion, answer.ava),
            authn_contexts=[str(ref) for ref, *_ in answer.authn_info() if ref],
            expires_at=_expiry(assertion) + self.cfg.clock_skew,
        )

    def mfa_evidence(self, asserted: Asserted) -> str | None:
        if not self.cfg.trust_idp_mfa:
            return None
        hit = sorted(set(asserted.authn_contexts) & set(self.cfg.mfa_authn_contexts))
        return f"AuthnContext={','.join(hit)}" if hit else None

    def metadata(self) -> bytes:
        """This service provider's metadata, for the identity provider's operators."""
        from saml2.metadata import create_metadata_string

        return bytes(create_metadata_string(None, config=self._sp_config(idp_metadata=None)))

    # --- pysaml2 and the identity provider's metadata --------------------------------------------

    def client(self) -> Saml2Client:
        with self._lock:
            age = time.monotonic() - self._loaded_at
            stale = bool(self.cfg.idp_metadata_url) and age > self.cfg.metadata_refresh.total_seconds()
            if self._client is None or stale:
                from saml2.client import Saml2Client

                try:
                    self._client = Saml2Client(config=self._sp_config(idp_metadata=self._read_idp_metadata()))
                    self._loaded_at = time.monotonic()
                except SamlUnavailable:
                    if self._client is None:
                        raise
                    log.error("saml: keeping the identity provider's metadata read before", exc_info=True)
                    self._loaded_at = time.monotonic()
            return self._client

    def _idp_entity_id(self, client: Saml2Client) -> str:
        if self.cfg.idp_entity_id:
            return self.cfg.idp_entity_id
        idps = list(client.metadata.identity_providers())
        if len(idps) != 1:
            raise SamlRefused(f"the metadata names {len(idps)} identity providers: set [saml] idp_entity_id")
        return str(idps[0])

    def _read_idp_metadata(self) -> str:
        if self.cfg.idp_metadata_file:
            path = self.base_dir / self.cfg.idp_metadata_file
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SamlUnavailable(f"identity provider metadata {path}: {exc}") from exc
        tls = ssl.create_default_context(cafile=str(self.base_dir / self.cfg.ca_file) if self.cfg.ca_file else None)
        try:
            with urllib.request.urlopen(  # noqa: S310 (the URL is https, checked by the configuration)
                self.cfg.idp_metadata_url, timeout=self.cfg.timeout.total_seconds(), context=tls
            ) as r:
                body = r.read(MAX_METADATA + 1)
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            raise SamlUnavailable(f"identity provider metadata {self.cfg.idp_metadata_url}: {exc}") from exc
        if len(body) > MAX_METADATA:
            raise SamlUnavailable(f"identity provider metadata {self.cfg.idp_metadata_url}: over {MAX_METADATA} bytes")
        return str(body.decode("utf-8", errors="replace"))

    def _sp_config(self, idp_metadata: str | None) -> SPConfig:
        from saml2 import BINDING_HTTP_POST
        from saml2.config import SPConfig

        conf: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
            "accepted_time_diff": int(self.cfg.clock_skew.total_seconds()),
            "allow_unknown_attributes": True,
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(self.acs_url, BINDING_HTTP_POST)]},
                    "want_assertions_signed": True,  # the assertion itself, not only the response
                    "want_response_signed": False,
                    "want_assertions_or_response_signed": False,
                    "allow_unsolicited": False,
                    "authn_requests_signed": False,
                }
            },
        }
        if idp_metadata is not None:
            conf["metadata"] = {"inline": [idp_metadata]}
        config = SPConfig()
        try:
            config.load(conf)
        except Exception as exc:  # bad metadata XML: pysaml2 raises parser and schema errors alike
            raise SamlUnavailable(f"identity provider metadata unreadable: {str(exc)[:300]}") from exc
        return config


def _attributes(assertion: Any, ava: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for statement in assertion.attribute_statement or []:
        for attribute in statement.attribute or []:
            values = [str(v.text).strip() for v in attribute.attribute_value or [] if v.text]
            for key in (attribute.name, attribute.friendly_name):
                if key:
                    found.setdefault(str(key), values)
    for key, values in (ava or {}).items():  # pysaml2's friendly names (uid, mail...) for OIDs
        found.setdefault(str(key), [str(v) for v in values] if isinstance(values, list) else [str(values)])
    return found


def _expiry(assertion: Any) -> datetime:
    times: list[datetime] = []
    if assertion.conditions is not None and assertion.conditions.not_on_or_after:
        times.append(_when(assertion.conditions.not_on_or_after))
    if assertion.subject is not None:
        for confirmation in assertion.subject.subject_confirmation or []:
            data = confirmation.subject_confirmation_data
            if data is not None and data.not_on_or_after:
                times.append(_when(data.not_on_or_after))
    if not times:
        raise SamlRefused("the assertion has no NotOnOrAfter")
    return max(times)


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError as exc:
        raise SamlRefused(f"unreadable time {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
