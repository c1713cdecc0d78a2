"""Compact JWS (RFC 7515) with EdDSA only: parsing as strictly as the Rust crates, and signing."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

from . import _b64
from .keys import AgentKey


class JwsError(ValueError):
    """Not a compact JWS, bad base64url, or a part that is not a JSON object."""


class JwsJsonError(JwsError):
    """A part that decodes but is not a JSON object without duplicate members."""


class CompactJws:
    """A compact JWS split into its parts; nothing is trusted before `verify`."""

    def __init__(self, text: str) -> None:
        signing_input, dot, signature_b64 = text.rpartition(".")
        header_b64, dot2, payload_b64 = signing_input.partition(".")
        if not dot or not dot2 or "." in payload_b64:
            raise JwsError("not a compact JWS: expected three base64url parts separated by dots")
        self.signing_input = signing_input.encode("ascii", "replace")
        self.payload_b64 = payload_b64
        try:
            self.header_bytes = _b64.decode(header_b64)
        except ValueError:
            raise JwsError("the header is not valid base64url") from None
        try:
            self.signature = _b64.decode(signature_b64)
        except ValueError:
            raise JwsError("the signature is not valid base64url") from None

    def header(self) -> Dict[str, Any]:
        return _json_object(self.header_bytes, "header")

    def payload(self) -> Dict[str, Any]:
        try:
            data = _b64.decode(self.payload_b64)
        except ValueError:
            raise JwsError("the payload is not valid base64url") from None
        return _json_object(data, "payload")


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member")
    return obj


def _json_object(data: bytes, part: str) -> Dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise JwsJsonError(f"the {part} is not valid JSON of the expected shape: {error}") from None
    if not isinstance(value, dict):
        raise JwsJsonError(f"the {part} is not valid JSON of the expected shape: not an object")
    return value


def sign(key: AgentKey, header: Dict[str, Any], payload: Dict[str, Any]) -> str:
    """Signs `payload` under `header` with `key` (compact serialization)."""
    signing_input = (
        _b64.encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64.encode(json.dumps(payload, separators=(",", ":")).encode())
    )
    return signing_input + "." + _b64.encode(key.sign(signing_input.encode("ascii")))
