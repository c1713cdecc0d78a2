"""Base64url without padding (RFC 4648 section 5), decoded as strictly as the Rust crates do."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    """Encodes bytes as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Decodes base64url without padding; refuses padding, `+`, `/`, other characters and
    non-zero trailing bits, so that one byte string has exactly one spelling."""
    if len(text) % 4 == 1 or not _ALPHABET.fullmatch(text):
        raise ValueError("not base64url")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64url") from error
    if encode(data) != text:
        raise ValueError("not base64url (non-canonical trailing bits)")
    return data
