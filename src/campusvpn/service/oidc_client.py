"""The portal as an OpenID Connect relying party: "Sign in with <university>".

Authorization code flow with PKCE (S256), a state and a nonce per sign-in, kept in the portal
session. The ID token from the token endpoint is checked here: signature with the provider's JWKS
(an unknown `kid` fetches the JWKS again once: the provider rotated its keys), issuer, audience,
expiry (and not-before / issued-at), nonce. Whether the provider's own MFA counts as campusvpn's
second factor (`trust_idp_mfa` and an `amr`/`acr` that says so) is decided here too, with the
evidence for the audit trail. `service.oidc` turns valid claims into an account."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from campusvpn.core.federation import trusted_mfa
from campusvpn.platform.config_schema import OidcSection

log = logging.getLogger("campusvpn.oidc")
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


class OidcRefused(Exception):
    """The provider's answer is not a sign-in (bad token, unknown user...). Logged; the user reads a
    generic sentence."""


class OidcUnavailable(Exception):
    """The provider could not be asked (down, timed out, bad TLS)."""


@dataclass(frozen=True)
class Begun:
    url: str  # where the browser goes
    state: dict[str, str]  # kept in the portal session until the callback


@dataclass
class OidcClient:
    cfg: OidcSection
    base_dir: Path
    _meta: dict[str, Any] | None = field(default=None, repr=False)
    _keys: KeySet | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- the two legs -----------------------------------------------------------------------------

    def begin(self, redirect_uri: str) -> Begun:
        meta = self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        query = {
            "response_type": "code",
            "client_id": self.cfg.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.cfg.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        url = str(meta["authorization_endpoint"]) + "?" + urllib.parse.urlencode(query)
        return Begun(url, {"state": state, "nonce": nonce, "verifier": verifier})

    def exchange(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The authorization code for the ID token (client secret and PKCE verifier)."""
        meta = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        answer = self._request(
            str(meta["token_endpoint"]),
            urllib.parse.urlencode(form).encode(),
            auth=(self.cfg.client_id, self.cfg.secret()),
        )
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise OidcRefused(f"the token endpoint gave no ID token: {answer.get('error', answer)!r}")
        return token

    def validate(self, id_token: str, nonce: str, now: float | None = None) -> dict[str, Any]:
        """The ID token's claims if it is valid for this client and this sign-in; else OidcRefused."""
        keys = self._key_set(refresh=False)
        try:
            token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
        except JoseError as exc:
            # An unknown key id may be a rotation: ask for the keys again, once.
            if not self._kid_unknown(id_token, keys):
                raise OidcRefused(f"ID token signature: {exc}") from exc
            try:
                token = jwt.decode(id_token, self._key_set(refresh=True), algorithms=ALGORITHMS)
            except JoseError as exc2:
                raise OidcRefused(f"ID token signature: {exc2}") from exc2
        except ValueError as exc:
            raise OidcRefused(f"ID token unreadable: {exc}") from exc
        registry = jwt.JWTClaimsRegistry(
            now=int(now if now is not None else time.time()),
            leeway=int(self.cfg.clock_skew.total_seconds()),
            iss={"essential": True, "value": self.metadata()["issuer"]},
            aud={"essential": True, "value": self.cfg.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            raise OidcRefused(f"ID token claims: {exc}") from exc
        aud = token.claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and token.claims.get("azp") != self.cfg.client_id:
            raise OidcRefused("ID token for several audiences without this client as azp")
        return dict(token.claims)

    def mfa_evidence(self, claims: dict[str, Any]) -> str | None:
        """Why the provider's own MFA counts as the second factor, or None."""
        amr, acr = claims.get("amr"), claims.get("acr")
        trust = self.cfg.trust_idp_mfa
        return trusted_mfa(
            trust, "amr", [str(x) for x in amr] if isinstance(amr, list) else [], self.cfg.mfa_amr
        ) or trusted_mfa(trust, "acr", [acr] if isinstance(acr, str) else [], self.cfg.mfa_acr)

    # --- the provider's documents ---------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._meta is None:
                issuer = self.cfg.issuer.rstrip("/")
                meta = self._request(issuer + "/.well-known/openid-configuration")
                if meta.get("issuer") != self.cfg.issuer and meta.get("issuer") != issuer:
                    raise OidcRefused(f"discovery names issuer {meta.get('issuer')!r}, not {self.cfg.issuer!r}")
                for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(meta.get(key), str):
                        raise OidcRefused(f"discovery document has no {key}")
                self._meta = meta
            return self._meta

    def _key_set(self, *, refresh: bool) -> KeySet:
        meta = self.metadata()
        with self._lock:
            if self._keys is None or refresh:
                try:
                    self._keys = KeySet.import_key_set(self._request(str(meta["jwks_uri"])))  # type: ignore[arg-type]
                except (JoseError, ValueError, KeyError) as exc:
                    raise OidcUnavailable(f"the provider's JWKS is unreadable: {exc}") from exc
            return self._keys

    @staticmethod
    def _kid_unknown(id_token: str, keys: KeySet) -> bool:
        try:
            head = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "==="))
        except (ValueError, IndexError):
            return False
        kid = head.get("kid") if isinstance(head, dict) else None
        return isinstance(kid, str) and all(k.kid != kid for k in keys.keys)

    def _request(self, url: str, body: bytes | None = None, auth: tuple[str, str] | None = None) -> dict[str, Any]:
        if not url.startswith("https://"):
            raise OidcRefused(f"{url} is not https")
        req = urllib.request.Request(url, data=body, headers={"Accept": "application/json"})  # noqa: S310
        if auth is not None:
            pair = f"{urllib.parse.quote(auth[0], safe='')}:{urllib.parse.quote(auth[1], safe='')}"
            req.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
        tls = ssl.create_default_context(cafile=str(self._path(self.cfg.ca_file)) if self.cfg.ca_file else None)
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout.total_seconds(), context=tls) as resp:  # noqa: S310
                data = json.loads(resp.read(1_000_000))
        except urllib.error.HTTPError as exc:
            text = exc.read(2000).decode(errors="replace")
            if exc.code >= 500:
                raise OidcUnavailable(f"{url}: HTTP {exc.code}") from exc
            raise OidcRefused(f"{url}: HTTP {exc.code}: {text}") from exc
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            log.error("oidc provider unreachable (%s): %s", url, exc)
            raise OidcUnavailable(f"{url}: {exc}") from exc
        if not isinstance(data, dict):
            raise OidcRefused(f"{url}: not a JSON object")
        return data

    def _path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p
