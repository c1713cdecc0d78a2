"""A software passkey for tests: P-256, `fmt: none` registration (flags UP|UV|AT, zero AAGUID),
assertions with user presence and user verification (flags UP|UV), as webauthn-rs accepts."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Dict

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from handsign import _b64


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    return bytes([major << 5 | 25]) + struct.pack(">H", n)


def cbor(value: Any) -> bytes:
    """The CBOR subset WebAuthn needs: ints, byte and text strings, maps."""
    if isinstance(value, int):
        return _cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value)
    if isinstance(value, bytes):
        return _cbor_head(2, len(value)) + value
    if isinstance(value, str):
        data = value.encode()
        return _cbor_head(3, len(data)) + data
    if isinstance(value, dict):
        return _cbor_head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(type(value))


class SoftPasskey:
    def __init__(self, origin: str, rp_id: str) -> None:
        self.origin = origin
        self.rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.counter = 0

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def register(self, options: Dict[str, Any]) -> Dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        cose = cbor(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        auth_data = (
            self.rp_id_hash
            + bytes([0x45])
            + struct.pack(">I", self.counter)
            + bytes(16)
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + cose
        )
        client_data = self._client_data("webauthn.create", options["publicKey"]["challenge"])
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        cred_id = _b64.encode(self.credential_id)
        return {
            "id": cred_id,
            "rawId": cred_id,
            "type": "public-key",
            "response": {
                "attestationObject": _b64.encode(attestation),
                "clientDataJSON": _b64.encode(client_data),
            },
            "extensions": {},
        }

    def assert_(self, options: Dict[str, Any], user_verified: bool = True) -> Dict[str, Any]:
        self.counter += 1
        flags = 0x05 if user_verified else 0x01
        auth_data = self.rp_id_hash + bytes([flags]) + struct.pack(">I", self.counter)
        client_data = self._client_data("webauthn.get", options["publicKey"]["challenge"])
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        cred_id = _b64.encode(self.credential_id)
        return {
            "id": cred_id,
            "rawId": cred_id,
            "type": "public-key",
            "response": {
                "authenticatorData": _b64.encode(auth_data),
                "clientDataJSON": _b64.encode(client_data),
                "signature": _b64.encode(signature),
                "userHandle": None,
            },
            "extensions": {},
        }
