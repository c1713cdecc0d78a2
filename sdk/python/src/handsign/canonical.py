"""RFC 8785 (JSON Canonicalization Scheme): the exact bytes whose SHA-256 a person approves.

Byte-identical to the Rust implementation (`handsign-protocol`'s `canonical`): because the hash is
what gets signed, input that RFC 8785 cannot represent exactly is refused rather than changed:
duplicate keys (compared after unescaping), lone surrogates, numbers that are not finite doubles,
and number literals whose exact value differs from the double they parse to
(`9007199254740993`, `0.10000000000000000001`, `1e-400`). Big integers and exact decimals travel
as strings.

Text is parsed by the standard library's C scanner with hooks that keep every number literal and
every object member, so nothing is rounded or dropped before the checks run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union

from . import _b64

__all__ = [
    "CanonicalError",
    "Limits",
    "canonicalize",
    "canonicalize_value",
    "format_number",
    "params_sha256",
]

_MAX_SAFE = 2**53
_encode_string: Callable[[str], str] = json.encoder.encode_basestring
_LITERAL = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?")


@dataclass(frozen=True)
class Limits:
    """Limits on what is canonicalized (the gateway's defaults): largest canonical output in
    bytes, and deepest nesting (a top-level scalar has depth 0, `[[1]]` depth 2)."""

    max_bytes: int = 64 * 1024
    max_depth: int = 32


class CanonicalError(ValueError):
    """A document RFC 8785 cannot represent exactly, or that is over the limits.

    `kind` names the problem (`syntax`, `invalid_utf8`, `duplicate_key`, `lone_surrogate`,
    `invalid_number`, `number_out_of_range`, `inexact_number`, `non_finite_number`, `too_deep`,
    `too_large`, `unsupported_type`); `pointer` is the JSON Pointer of the offending value (or of
    the object holding a duplicate key); `line` and `column` (1-based, the column in characters)
    are given for syntax errors.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        pointer: str = "",
        line: Optional[int] = None,
        column: Optional[int] = None,
    ) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        at = f" (at {pointer!r})" if pointer else ""
        super().__init__(f"{message}{where}{at}")
        self.kind = kind
        self.pointer = pointer
        self.line = line
        self.column = column


_NUMBER_HINT = "; send big integers and exact decimals as strings"


class _Literal(str):
    """A number literal exactly as written in the text."""


class _Members(list):  # type: ignore[type-arg]
    """An object's members in the order written, duplicates included."""


def _pointer(path: Tuple[Union[str, int], ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


# --- numbers -------------------------------------------------------------------------------


def _shortest(x: float) -> Tuple[str, int]:
    """The shortest round-trip digits of |x| (no leading or trailing zeros) and the position
    of the decimal point: |x| = 0.digits * 10**point. Zero has no digits."""
    text = repr(abs(x))
    mantissa, _, exponent = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    if frac_part == "0":
        frac_part = ""
    digits = int_part + frac_part
    stripped = digits.lstrip("0")
    point = len(int_part) - (len(digits) - len(stripped)) + (int(exponent) if exponent else 0)
    return stripped.rstrip("0"), point


def _es_form(negative: bool, digits: str, point: int) -> str:
    """ECMAScript `Number::toString` of 0.digits * 10**point (`-0` prints as `0`)."""
    if not digits:
        return "0"
    sign = "-" if negative else ""
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    rest = "." + digits[1:] if k > 1 else ""
    return f"{sign}{digits[0]}{rest}e{'-' if e < 0 else '+'}{abs(e)}"


def format_number(x: float) -> str:
    """Serializes a double as ECMAScript does, which is what RFC 8785 requires; refuses NaN
    and infinities."""
    if not math.isfinite(x):
        value = "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
        raise CanonicalError("non_finite_number", f"{value} has no JSON form")
    if x == int(x) and abs(x) <= _MAX_SAFE:
        return str(int(x))
    digits, point = _shortest(x)
    return _es_form(x < 0, digits, point)


def _canonical_literal(text: str) -> str:
    """Checks a number literal against the exactness rule and returns its canonical form."""
    if len(text) <= 15 and text.isdigit() and (text[0] != "0" or text == "0"):
        return text
    match = _LITERAL.fullmatch(text)
    if match is None:
        raise _Refusal("invalid_number", f"{text[:40]!r} is not a JSON number")
    sign, int_part, frac_part, exponent = match.groups()
    if frac_part is None and exponent is None and len(int_part) <= 15:
        return "0" if int_part == "0" else text
    try:
        x = float(text)
    except (OverflowError, ValueError):
        x = math.inf
    if not math.isfinite(x):
        raise _Refusal(
            "number_out_of_range", f"the number {text[:40]} is too large for a double{_NUMBER_HINT}"
        )
    digits, point = _shortest(x)
    all_digits = int_part + (frac_part or "")
    stripped = all_digits.lstrip("0")
    significant = stripped.rstrip("0")
    exact = significant == digits and (
        not significant
        or len(int_part) - (len(all_digits) - len(stripped)) + int(exponent or "0") == point
    )
    if not exact:
        nearest = _es_form(x < 0, digits, point)
        raise _Refusal(
            "inexact_number",
            f"the number {text[:40]} cannot be represented exactly as a double (the nearest "
            f"double is {nearest}){_NUMBER_HINT}",
        )
    return _es_form(sign == "-", digits, point)


# --- strings -------------------------------------------------------------------------------


class _Refusal(Exception):
    """A refusal on its way out; each container it passes adds its key or index, so that no
    path is built on the success path."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.parts: List[Union[str, int]] = []

    def error(self) -> CanonicalError:
        return CanonicalError(self.kind, self.message, _pointer(tuple(reversed(self.parts))))


def _check_string(s: str) -> None:
    if s.isascii():
        return
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as error:
        unit = ord(s[error.start])
        raise _Refusal(
            "lone_surrogate", f"lone surrogate \\u{unit:04x} in a string: it has no UTF-8 form"
        ) from None


def _utf16_key(member: Tuple[str, Any]) -> bytes:
    return member[0].encode("utf-16-be")


def _first_key(member: Tuple[str, Any]) -> str:
    return member[0]


# --- the writer ----------------------------------------------------------------------------


class _Writer:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.out: List[str] = []

    def value(self, v: Any, depth: int) -> None:
        out = self.out
        t = type(v)
        if t is str:
            if not v.isascii():
                _check_string(v)
            out.append(_encode_string(v))
        elif t is int:
            out.append(str(v) if -_MAX_SAFE <= v <= _MAX_SAFE else _canonical_literal(str(v)))
        elif t is _Literal:
            out.append(_canonical_literal(v))
        elif v is None:
            out.append("null")
        elif v is True:
            out.append("true")
        elif v is False:
            out.append("false")
        elif t is _Members:
            self.members(v, depth)
        elif isinstance(v, dict):
            self.members(list(v.items()), depth)
        elif isinstance(v, (list, tuple)):
            self.enter(depth)
            out.append("[")
            i = 0
            try:
                for i, item in enumerate(v):
                    if i:
                        out.append(",")
                    self.value(item, depth + 1)
            except _Refusal as refusal:
                refusal.parts.append(i)
                raise
            out.append("]")
        elif isinstance(v, int):
            out.append(_canonical_literal(str(v)))
        elif isinstance(v, float):
            try:
                out.append(format_number(v))
            except CanonicalError as error:
                raise _Refusal(error.kind, str(error)) from None
        elif isinstance(v, str):
            self.value(str(v), depth)
        else:
            raise _Refusal(
                "unsupported_type",
                f"a {type(v).__name__} has no JSON form (use dict, list, str, int, float, bool "
                "or None)",
            )

    def enter(self, depth: int) -> None:
        if depth >= self.limits.max_depth:
            raise _Refusal(
                "too_deep",
                f"nested deeper than {self.limits.max_depth} levels; nest less deeply, or raise "
                "the configured limit",
            )

    def members(self, members: List[Tuple[Any, Any]], depth: int) -> None:
        self.enter(depth)
        simple = True
        for key, _ in members:
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _Refusal("unsupported_type", f"object key {key!r} is not a string")
            if not key.isascii():
                simple = False
                try:
                    _check_string(key)
                except _Refusal as refusal:
                    refusal.parts.append(key)
                    raise
        # For ASCII keys code point order is UTF-16 order; otherwise compare UTF-16 code units.
        ordered = sorted(members, key=_first_key if simple else _utf16_key)
        if len({key for key, _ in members}) != len(members):
            for a, b in zip(ordered, ordered[1:]):
                if a[0] == b[0]:
                    raise _Refusal("duplicate_key", f"duplicate key {a[0]!r} in one object")
        out = self.out
        out.append("{")
        key = ""
        try:
            for i, (key, value) in enumerate(ordered):
                if i:
                    out.append(",")
                out.append(_encode_string(key))
                out.append(":")
                # The common scalars inline: one call less per member.
                if type(value) is str and value.isascii():
                    out.append(_encode_string(value))
                else:
                    self.value(value, depth + 1)
        except _Refusal as refusal:
            refusal.parts.append(key)
            raise
        out.append("}")

    def write(self, value: Any) -> bytes:
        try:
            self.value(value, 0)
        except _Refusal as refusal:
            raise refusal.error() from None
        data = "".join(self.out).encode("utf-8")
        if len(data) > self.limits.max_bytes:
            raise CanonicalError(
                "too_large",
                f"the canonical form is larger than {self.limits.max_bytes} bytes; send less "
                "data, or raise the configured limit",
            )
        return data


def _refuse_constant(name: str) -> Any:
    raise CanonicalError("invalid_number", f"{name} is not a JSON number")


_decoder = json.JSONDecoder(
    object_pairs_hook=_Members,
    # Integer literals are parsed exactly by the C scanner; the others keep their text.
    parse_float=_Literal,
    parse_constant=_refuse_constant,
)


def canonicalize(text: Union[bytes, str], limits: Limits = Limits()) -> bytes:
    """Canonicalizes a JSON text (UTF-8, exactly one value), refusing what RFC 8785 cannot
    represent exactly; the same bytes as `handsign canonicalize`."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            prefix = raw[: error.start]
            line = prefix.count(b"\n") + 1
            last = prefix[prefix.rfind(b"\n") + 1 :]
            column = sum(1 for b in last if b & 0xC0 != 0x80) + 1
            raise CanonicalError(
                "invalid_utf8", "invalid UTF-8 (JSON text must be UTF-8)", "", line, column
            ) from None
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as error:
        raise CanonicalError("syntax", error.msg, "", error.lineno, error.colno) from None
    except RecursionError:
        raise CanonicalError(
            "too_deep", f"nested deeper than {limits.max_depth} levels; nest less deeply"
        ) from None
    return _Writer(limits).write(value)


def canonicalize_value(value: Any, limits: Limits = Limits()) -> bytes:
    """Canonicalizes params built in code (dict, list, tuple, str, int, float, bool, None).

    Integers above 2**53 in magnitude are held to the same rule as literals in text: accepted
    only when they equal the shortest form of the double they round to."""
    return _Writer(limits).write(value)


def params_sha256(canonical: bytes) -> str:
    """`params_sha256`: base64url (no padding) of SHA-256 over canonical params."""
    return _b64.encode(hashlib.sha256(canonical).digest())
