"""Twilio request signatures (PROTOCOLS.md §3): HMAC-SHA1 of the public URL and form fields."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

__all__ = ["TwilioSignatureChecker"]


class TwilioSignatureChecker:
    """Checks ``X-Twilio-Signature`` against URLs rebuilt from the configured public base URL."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def is_valid(self, url: str, params: Mapping[str, str] | None, signature: str | None) -> bool:
        """True when ``signature`` signs ``url`` and every field of ``params``.

        Twilio is inconsistent about default ports, so the URL is tried with and without one,
        as twilio's own validator does; the comparison itself is constant-time.
        """
        if not signature:
            return False
        for candidate in _with_and_without_port(url):
            expected = self._validator.compute_signature(candidate, dict(params or {}))
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return True
        return False


def _with_and_without_port(url: str) -> tuple[str, ...]:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    default = {"https": "443", "wss": "443", "http": "80", "ws": "80"}.get(scheme)
    if default is None:
        return (url,)
    bare = host.removesuffix(f":{default}")
    return (f"{scheme}://{bare}{slash}{path}", f"{scheme}://{bare}:{default}{slash}{path}")
