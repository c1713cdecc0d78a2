"""Base64url without padding (RFC 4648 section 5), decoded as strictly as the Rust crates do."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALID = re.compile(r"[A-Za-z0-9_-]*")
# The characters that may end a text of length 2 or 3 mod 4: those whose unused low bits are
# zero, so that one byte string has exactly one spelling.
_LAST = {
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x0F == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x03 == 0),
}


def encode(data: bytes) -> str:
    """Encodes bytes as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Decodes base64url without padding; refuses padding, `+`, `/`, other characters and
    non-zero trailing bits."""
    rest = len(text) % 4
    if rest == 1 or not _VALID.fullmatch(text) or (rest and text[-1] not in _LAST[rest]):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64url") from error
