"""Small verified-HTTPS helpers for the engine's plain servlets (health, pki-resource, SSO).

Every request verifies the server certificate and host name against an explicit trust anchor
(a CA file) or, when none is given, the system trust store. There is no insecure default: the
only unverified request is the CA download in trust-on-first-use mode, which a profile must
ask for by name (`ca_trust_on_first_use: true`).
"""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class TlsError(Exception):
    """The server's certificate could not be verified against the trust anchor."""


class TransportError(Exception):
    """The server could not be reached at all (refused, timed out, DNS)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str


@dataclass(frozen=True)
class CaInfo:
    """What a PEM says about itself; `is_ca` comes from BasicConstraints."""

    subject: str
    issuer: str
    is_ca: bool
    self_signed: bool
    not_after: str
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "is_ca": self.is_ca,
            "self_signed": self.self_signed,
            "not_after": self.not_after,
            "sha256": self.sha256,
        }


def parse_ca(pem: bytes) -> CaInfo:
    """Parse the first certificate of a PEM; raises ValueError if it is not one."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    der = cert.public_bytes(serialization.Encoding.DER)
    return CaInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        is_ca=is_ca,
        self_signed=cert.subject == cert.issuer,
        not_after=cert.not_valid_after_utc.isoformat(),
        sha256=hashlib.sha256(der).hexdigest(),
    )


def verified_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verification on; `ca_file` as the only anchor when given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def unverified_context() -> ssl.SSLContext:
    """Only for the explicit trust-on-first-use CA download."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request(
    url: str,
    context: ssl.SSLContext,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    trust_label: str = "the system trust store",
) -> Reply:
    """One HTTP(S) request; an HTTP error status is a Reply, a TLS failure a TlsError naming the anchor."""
    req = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Reply(
                resp.status, resp.read().decode("utf-8", "replace"), resp.headers.get("Content-Type", "")
            )
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace") if exc.fp else ""
        return Reply(exc.code, body, exc.headers.get("Content-Type", "") if exc.headers else "")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):
            raise TlsError(f"TLS verification of {url} against {trust_label} failed: {reason}") from None
        raise TransportError(f"cannot reach {url}: {reason}") from None
    except ssl.SSLError as exc:
        raise TlsError(f"TLS verification of {url} against {trust_label} failed: {exc}") from None
    except OSError as exc:
        raise TransportError(f"cannot reach {url}: {exc}") from None
