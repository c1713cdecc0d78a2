"""Ed25519 keys as the protocol names them: JWKs (RFC 8037), RFC 7638 thumbprints, the agent's
key file, and the gateway's key set.

A gateway key's `kid` and an agent's id are both the thumbprint of the public key, so a name can
never point at another key. The agent's key file is the private JWK the Rust SDK and the CLI
write: one key works with all three. It is created owner-only and atomically, and a key file that
group or others may read is refused: a key that may have leaked must be replaced, not trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import _b64

__all__ = ["AgentKey", "KeyFileError", "KeySet", "public_key_from_jwk", "thumbprint", "verify"]

_P = 2**255 - 19
# The y coordinates of the Ed25519 points of order dividing 8, including the non-canonical
# encodings y + p that still fit in 255 bits. ed25519-dalek's `verify_strict` refuses a key or
# signature `R` that is one of these (with either sign bit), and so does this module.
_SMALL_ORDER_Y = {
    0,
    1,
    _P - 1,
    _P,
    _P + 1,
    0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
    0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
}


def _is_small_order(encoded: bytes) -> bool:
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    return y in _SMALL_ORDER_Y


def verify(
    public_key: Ed25519PublicKey, raw_public: bytes, message: bytes, signature: bytes
) -> bool:
    """Ed25519 verification as strict as `verify_strict`: canonical `S` (checked by OpenSSL),
    and no small-order public key or `R`."""
    if len(signature) != 64 or _is_small_order(raw_public) or _is_small_order(signature[:32]):
        return False
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def thumbprint(raw_public: bytes) -> str:
    """The RFC 7638 thumbprint of an Ed25519 public key."""
    x = _b64.encode(raw_public)
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode("ascii")
    return _b64.encode(hashlib.sha256(canonical).digest())


def _decode_32(jwk: Mapping[str, Any], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str):
        raise ValueError(f"the JWK has no {member!r}")
    raw = _b64.decode(value)
    if len(raw) != 32:
        raise ValueError(f"the JWK's {member!r} is not 32 bytes")
    return raw


def public_key_from_jwk(jwk: Mapping[str, Any]) -> bytes:
    """The raw 32 bytes of an OKP Ed25519 public JWK; other key types are refused."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError(
            f"unsupported key type {jwk.get('kty')!r}/{jwk.get('crv')!r}: only OKP Ed25519 keys "
            "are accepted here"
        )
    return _decode_32(jwk, "x")


class KeyFileError(Exception):
    """A key file that cannot be read, written or trusted."""


class AgentKey:
    """An agent's Ed25519 key; its id is the RFC 7638 thumbprint of the public key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.raw_public = private_key.public_key().public_bytes_raw()
        self.id = thumbprint(self.raw_public)

    def __repr__(self) -> str:
        return f"AgentKey({self.id})"

    @classmethod
    def generate(cls) -> "AgentKey":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> "AgentKey":
        """Reads a private OKP Ed25519 JWK and checks that `x` belongs to `d`."""
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError("only OKP Ed25519 keys are accepted")
        key = cls(Ed25519PrivateKey.from_private_bytes(_decode_32(jwk, "d")))
        if "x" in jwk and jwk["x"] != _b64.encode(key.raw_public):
            raise ValueError("the JWK's 'x' is not the public key of its 'd'")
        return key

    def public_jwk(self) -> Dict[str, str]:
        """The public JWK (`kty`, `crv`, `x`): what `handsign agent add --key` takes."""
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64.encode(self.raw_public)}

    def private_jwk(self) -> Dict[str, str]:
        """The private JWK as the Rust SDK writes it (with `d` and `kid`)."""
        d = self._private.private_bytes_raw()
        return {**self.public_jwk(), "d": _b64.encode(d), "kid": self.id}

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "AgentKey":
        """Reads the private JWK at `path`, refusing a file that group or others may access."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise
        except OSError as error:
            raise KeyFileError(f"cannot open key file {path}: {error}") from None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"key file {path} is accessible to group or others (mode {mode:04o}); the "
                    f"key may have leaked: make a new key, or if you are sure nobody read it, run "
                    f"`chmod 600 {path}`"
                )
            text = file.read()
        try:
            return cls.from_jwk(json.loads(text))
        except (ValueError, TypeError, AttributeError) as error:
            raise KeyFileError(
                f"key file {path} does not hold a private Ed25519 JWK: {error}"
            ) from None

    def save_new(self, path: Union[str, Path]) -> None:
        """Writes this key to `path`, which must not exist: written owner-only under a
        temporary name, flushed, then linked into place (which fails rather than replace)."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
        text = json.dumps(self.private_jwk(), indent=2) + "\n"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise KeyFileError(
                    f"key file {path} already exists; refusing to overwrite it (the agent's id "
                    "would change)"
                ) from None
        finally:
            temporary.unlink(missing_ok=True)

    @classmethod
    def load_or_create(cls, path: Union[str, Path]) -> "AgentKey":
        """Reads the key at `path`, or makes one there; two processes racing to create it end
        up with the same key."""
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        key = cls.generate()
        try:
            key.save_new(path)
        except KeyFileError:
            if Path(path).exists():
                return cls.load(path)
            raise
        return key


class KeySet:
    """The gateway's public keys by `kid`. From a JWKS, entries that cannot sign tokens (other
    key types, `use` other than `sig`, `alg` other than `EdDSA`) are left out, and an entry whose
    `kid` is not its thumbprint is refused."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = {
            kid: (Ed25519PublicKey.from_public_bytes(raw), raw) for kid, raw in keys.items()
        }

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> "KeySet":
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise ValueError("a JWKS is an object with a 'keys' array")
        keys: Dict[str, bytes] = {}
        for jwk in entries:
            if not isinstance(jwk, dict):
                raise ValueError("a JWKS entry is not an object")
            signs_eddsa = (
                jwk.get("kty") == "OKP"
                and jwk.get("crv") == "Ed25519"
                and jwk.get("use", "sig") == "sig"
                and jwk.get("alg", "EdDSA") == "EdDSA"
            )
            kid = jwk.get("kid")
            if not signs_eddsa or kid is None:
                continue
            raw = public_key_from_jwk(jwk)
            if kid != thumbprint(raw):
                raise ValueError(f"JWKS entry kid {kid!r} is not the thumbprint of its key")
            keys[kid] = raw
        return cls(keys)

    @classmethod
    def of(cls, raw_public_keys: Iterable[bytes]) -> "KeySet":
        return cls({thumbprint(raw): raw for raw in raw_public_keys})

    def get(self, kid: str) -> Optional["tuple[Ed25519PublicKey, bytes]"]:
        return self._keys.get(kid)

    def kids(self) -> List[str]:
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
