/**
 * RFC 8785 (JSON Canonicalization Scheme): the exact bytes whose SHA-256 a person approves,
 * byte-identical to the Rust implementation (`handsign-protocol`'s `canonical`).
 *
 * Because the hash is what gets signed, input RFC 8785 cannot represent exactly is refused rather
 * than changed: duplicate keys (compared after unescaping), lone surrogates, numbers that are not
 * finite doubles, and number literals whose exact value differs from the double they parse to
 * (`9007199254740993`, `0.10000000000000000001`, `1e-400`). `JSON.parse` keeps the last of
 * duplicate keys and rounds numbers silently, so text is read by a strict parser of its own.
 */

import { createHash } from "node:crypto";

/** Limits on what is canonicalized (the gateway's defaults). */
export interface Limits {
  /** Largest canonical output, in bytes. */
  maxBytes: number;
  /** Deepest nesting; a top-level scalar has depth 0, `[[1]]` depth 2. */
  maxDepth: number;
}

export const DEFAULT_LIMITS: Limits = { maxBytes: 64 * 1024, maxDepth: 32 };

/**
 * A document RFC 8785 cannot represent exactly, or over the limits. `kind` names the problem
 * (the same names as the Python SDK), `pointer` is the JSON Pointer of the offending value (of
 * the object for a duplicate key), `line` and `column` (1-based, the column in characters) where
 * it was found in a text.
 */
export class CanonicalError extends Error {
  constructor(
    readonly kind: string,
    message: string,
    readonly pointer: string = "",
    readonly line?: number,
    readonly column?: number,
  ) {
    super(
      message +
        (line !== undefined ? ` at line ${line}, column ${column}` : "") +
        (pointer ? ` (at '${pointer}')` : ""),
    );
    this.name = "CanonicalError";
  }
}

/** A refusal on its way out: each container it passes adds its key or index, so that no path is
 * built on the success path. */
class Refusal extends Error {
  readonly parts: (string | number)[] = [];
  constructor(readonly kind: string, message: string) {
    super(message);
  }

  toError(): CanonicalError {
    return new CanonicalError(this.kind, this.message, pointer([...this.parts].reverse()));
  }
}

const NUMBER_HINT = "; send big integers and exact decimals as strings";
const LITERAL = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function pointer(path: (string | number)[]): string {
  return path.map((p) => "/" + String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

/** The shortest round-trip digits of |x| without leading or trailing zeros, and the point:
 * |x| = 0.digits * 10**point. Zero has no digits. */
function shortest(x: number): [string, number] {
  if (x === 0) return ["", 0];
  const [mantissa, exponent] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mantissa.replace(".", "").replace(/0+$/, "");
  return [digits, Number(exponent) + 1];
}

/** ECMAScript `Number::toString` of 0.digits * 10**point (what `String(x)` prints). */
function esForm(negative: boolean, digits: string, point: number): string {
  if (!digits) return "0";
  return String(Number(`${negative ? "-" : ""}0.${digits}e${point}`));
}

/** Serializes a double as RFC 8785 requires; refuses NaN and infinities. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) {
    const value = Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity";
    throw new CanonicalError("non_finite_number", `${value} has no JSON form`);
  }
  return Object.is(x, -0) ? "0" : String(x);
}

/** Checks a number literal against the exactness rule and returns its canonical form. */
function canonicalLiteral(text: string): string {
  const match = LITERAL.exec(text);
  if (!match) {
    throw new Refusal("invalid_number", `${text.slice(0, 40)} is not a JSON number`);
  }
  const [, sign, intPart = "", fracPart, exponent] = match;
  if (fracPart === undefined && exponent === undefined && intPart.length <= 15) {
    return intPart === "0" ? "0" : text;
  }
  const x = Number(text);
  if (!Number.isFinite(x)) {
    throw new Refusal("number_out_of_range", `the number ${text.slice(0, 40)} is too large for a double${NUMBER_HINT}`);
  }
  const [digits, point] = shortest(x);
  const all = intPart + (fracPart ?? "");
  const stripped = all.replace(/^0+/, "");
  const significant = stripped.replace(/0+$/, "");
  let exact = significant === digits;
  if (exact && significant) {
    // Exponents beyond a double's range with digits that still fit cannot be written in input
    // of sane size; BigInt keeps even those exact.
    const literalPoint =
      BigInt(intPart.length - (all.length - stripped.length)) + BigInt(exponent ?? "0");
    exact = literalPoint === BigInt(point);
  }
  if (!exact) {
    const nearest = esForm(x < 0, digits, point);
    throw new Refusal(
      "inexact_number",
      `the number ${text.slice(0, 40)} cannot be represented exactly as a double (the nearest ` +
        `double is ${nearest})${NUMBER_HINT}`,
    );
  }
  return formatNumber(x);
}

const ANY_SURROGATE = /[\ud800-\udfff]/;

function checkString(s: string): void {
  if (!ANY_SURROGATE.test(s)) return;
  const lone = LONE_SURROGATE.exec(s);
  if (lone) {
    const unit = lone[0].charCodeAt(0).toString(16).padStart(4, "0");
    throw new Refusal("lone_surrogate", `lone surrogate \\u${unit} in a string: it has no UTF-8 form`);
  }
}

/** An object's members in the order written, duplicates included. */
type Members = { members: [string, Parsed][] };
/** A number literal exactly as written. */
type NumberLiteral = { literal: string };
type Parsed = string | boolean | null | NumberLiteral | Members | Parsed[];

class Writer {
  out = "";
  constructor(readonly limits: Limits) {}

  enter(depth: number): void {
    if (depth >= this.limits.maxDepth) {
      throw new Refusal(
        "too_deep",
        `nested deeper than ${this.limits.maxDepth} levels; nest less deeply, or raise the configured limit`,
      );
    }
  }

  members(members: [string, unknown][], depth: number, ofValue: boolean): void {
    this.enter(depth);
    for (const [key] of members) {
      try {
        checkString(key);
      } catch (error) {
        if (error instanceof Refusal) error.parts.push(key);
        throw error;
      }
    }
    // JavaScript compares strings by UTF-16 code units, which is RFC 8785's order.
    let sorted = true;
    for (let i = 1; i < members.length && sorted; i++) sorted = members[i - 1]![0] < members[i]![0];
    const ordered = sorted ? members : [...members].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (let i = 1; i < ordered.length; i++) {
      if (ordered[i]![0] === ordered[i - 1]![0]) {
        throw new Refusal("duplicate_key", `duplicate key ${JSON.stringify(ordered[i]![0])} in one object`);
      }
    }
    this.out += "{";
    let key = "";
    try {
      for (let i = 0; i < ordered.length; i++) {
        const member = ordered[i]!;
        key = member[0];
        this.out += (i ? "," : "") + JSON.stringify(key) + ":";
        this.item(member[1], depth + 1, ofValue);
      }
    } catch (error) {
      if (error instanceof Refusal) error.parts.push(key);
      throw error;
    }
    this.out += "}";
  }

  /** Writes an element or member: a value built in code, or what the parser read. */
  item(v: unknown, depth: number, ofValue: boolean): void {
    if (ofValue) this.value(v, depth);
    else this.parsed(v as Parsed, depth);
  }

  array(items: readonly unknown[], depth: number, ofValue: boolean): void {
    this.enter(depth);
    this.out += "[";
    let i = 0;
    try {
      for (; i < items.length; i++) {
        if (i) this.out += ",";
        this.item(items[i], depth + 1, ofValue);
      }
    } catch (error) {
      if (error instanceof Refusal) error.parts.push(i);
      throw error;
    }
    this.out += "]";
  }

  /** Writes what the parser read. */
  parsed(v: Parsed, depth: number): void {
    if (typeof v === "string") {
      checkString(v);
      this.out += JSON.stringify(v);
    } else if (v === null || typeof v === "boolean") {
      this.out += String(v);
    } else if (Array.isArray(v)) {
      this.array(v, depth, false);
    } else if ("literal" in v) {
      this.out += canonicalLiteral(v.literal);
    } else {
      this.members(v.members, depth, false);
    }
  }

  /** Writes a value built in code. */
  value(v: unknown, depth: number): void {
    if (typeof v === "string") {
      checkString(v);
      this.out += JSON.stringify(v);
    } else if (v === null || typeof v === "boolean") {
      this.out += String(v);
    } else if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new Refusal("non_finite_number", `${String(v)} has no JSON form`);
      this.out += formatNumber(v);
    } else if (typeof v === "bigint") {
      this.out += canonicalLiteral(v.toString());
    } else if (Array.isArray(v)) {
      this.array(v, depth, true);
    } else if (isPlainObject(v)) {
      this.members(Object.entries(v), depth, true);
    } else {
      throw new Refusal(
        "unsupported_type",
        `a ${typeof v} has no JSON form (use plain objects, arrays, strings, numbers, bigints, booleans or null)`,
      );
    }
  }

  /** Writes `write`'s value and returns the canonical bytes, or throws a `CanonicalError`. */
  run(write: (writer: Writer) => void): Uint8Array {
    try {
      write(this);
    } catch (error) {
      if (error instanceof Refusal) throw error.toError();
      throw error;
    }
    const bytes = encoder.encode(this.out);
    if (bytes.length > this.limits.maxBytes) {
      throw new CanonicalError(
        "too_large",
        `the canonical form is larger than ${this.limits.maxBytes} bytes; send less data, or raise the configured limit`,
      );
    }
    return bytes;
  }
}

function isPlainObject(v: unknown): v is object {
  if (typeof v !== "object" || v === null) return false;
  const prototype: unknown = Object.getPrototypeOf(v);
  return prototype === Object.prototype || prototype === null;
}

const WORDS = [["true", true], ["false", false], ["null", null]] as const;
const SPECIAL = /["\\\u0000-\u001f]/g;

const ESCAPES: Record<string, string> = {
  '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t",
};

/** A strict RFC 8259 parser that keeps number literals and every object member. */
class Parser {
  pos = 0;
  constructor(readonly text: string, readonly maxDepth: number) {}

  fail(message: string, at: number = this.pos): never {
    const before = this.text.slice(0, at);
    const line = before.split("\n").length;
    const column = [...before.slice(before.lastIndexOf("\n") + 1)].length + 1;
    throw new CanonicalError("syntax", message, "", line, column);
  }

  ws(): void {
    for (;;) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.pos++;
    }
  }

  document(): Parsed {
    this.ws();
    if (this.pos >= this.text.length) this.fail("empty input: expected a JSON value");
    const value = this.value(0);
    this.ws();
    if (this.pos < this.text.length) {
      this.fail("unexpected data after the end of the JSON value (only one value is allowed)");
    }
    return value;
  }

  value(depth: number): Parsed {
    const c = this.text[this.pos];
    if (c === "[" || c === "{") {
      if (depth > this.maxDepth + 1) {
        throw new CanonicalError("too_deep", `nested deeper than ${this.maxDepth} levels; nest less deeply`);
      }
      return c === "[" ? this.array(depth) : this.object(depth);
    }
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const [word, value] of WORDS) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    if (c === undefined) this.fail("unexpected end of input: expected a JSON value");
    if (c === "\ufeff") this.fail("unexpected byte order mark U+FEFF: expected a JSON value (remove the BOM)");
    this.fail(`unexpected ${JSON.stringify(c)}: expected a JSON value`);
  }

  array(depth: number): Parsed[] {
    this.pos++;
    const items: Parsed[] = [];
    this.ws();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return items;
    }
    for (;;) {
      this.ws();
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.text[this.pos++];
      if (c === "]") return items;
      if (c !== ",") this.fail("expected ',' or ']' after an array element", this.pos - 1);
    }
  }

  object(depth: number): Members {
    this.pos++;
    const members: [string, Parsed][] = [];
    this.ws();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return { members };
    }
    for (;;) {
      this.ws();
      if (this.text[this.pos] !== '"') this.fail("expected a string key");
      const key = this.string();
      this.ws();
      if (this.text[this.pos++] !== ":") this.fail("expected ':' after an object key", this.pos - 1);
      this.ws();
      members.push([key, this.value(depth + 1)]);
      this.ws();
      const c = this.text[this.pos++];
      if (c === "}") return { members };
      if (c !== ",") this.fail("expected ',' or '}' after an object member", this.pos - 1);
    }
  }

  string(): string {
    const open = this.pos++;
    let out = "";
    for (;;) {
      SPECIAL.lastIndex = this.pos;
      const found = SPECIAL.exec(this.text);
      if (!found) this.fail("unterminated string: no closing '\"'", open);
      out += this.text.slice(this.pos, found.index);
      this.pos = found.index;
      const c = found[0];
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c !== "\\") {
        const code = c.charCodeAt(0).toString(16).padStart(4, "0").toUpperCase();
        this.fail(`raw control character U+${code} in a string`);
      }
      const letter = this.text[this.pos + 1] ?? "";
      if (letter === "u") {
        const hex = this.text.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail(`invalid escape \\u${hex}`);
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (letter in ESCAPES) {
        out += ESCAPES[letter];
        this.pos += 2;
      } else {
        this.fail(`invalid escape \\${letter}`);
      }
    }
  }

  number(): NumberLiteral {
    const match = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    match.lastIndex = this.pos;
    const found = match.exec(this.text);
    const next = this.text[this.pos + (found?.[0].length ?? 0)] ?? "";
    if (!found || found[0] === "-" || /[0-9.eE+-]/.test(next)) {
      this.fail("invalid number");
    }
    this.pos += found[0].length;
    return { literal: found[0] };
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Canonicalizes a JSON text (UTF-8 bytes or a string), refusing what RFC 8785 cannot represent
 * exactly; the same bytes as `handsign canonicalize`. */
export function canonicalize(text: Uint8Array | string, limits: Limits = DEFAULT_LIMITS): Uint8Array {
  let source: string;
  if (typeof text === "string") {
    source = text;
  } else {
    try {
      source = decoder.decode(text);
    } catch {
      throw new CanonicalError("invalid_utf8", "invalid UTF-8 (JSON text must be UTF-8)");
    }
  }
  const document = new Parser(source, limits.maxDepth).document();
  return new Writer(limits).run((writer) => writer.parsed(document, 0));
}

/** Canonicalizes params built in code (plain objects, arrays, strings, numbers, bigints,
 * booleans, null). Bigints above 2**53 are held to the rule of literals in text. */
export function canonicalizeValue(value: unknown, limits: Limits = DEFAULT_LIMITS): Uint8Array {
  return new Writer(limits).run((writer) => writer.value(value, 0));
}

/** `params_sha256`: base64url (no padding) of SHA-256 over canonical params. */
export function paramsSha256(canonical: Uint8Array): string {
  return createHash("sha256").update(canonical).digest("base64url");
}

/** Parses a JSON text strictly (no duplicate members, no lone surrogates) into plain values;
 * for the JSON inside tokens and proofs, which `JSON.parse` would read leniently. */
export function parseStrict(text: Uint8Array, maxDepth = 16): unknown {
  let source: string;
  try {
    source = decoder.decode(text);
  } catch {
    throw new CanonicalError("invalid_utf8", "invalid UTF-8 (JSON text must be UTF-8)");
  }
  const plain = (v: Parsed): unknown => {
    if (v === null || typeof v !== "object") {
      if (typeof v === "string") checkString(v);
      return v;
    }
    if (Array.isArray(v)) return v.map(plain);
    if ("literal" in v) return Number(v.literal);
    const out: Record<string, unknown> = {};
    for (const [key, value] of v.members) {
      if (Object.prototype.hasOwnProperty.call(out, key)) throw new Refusal("duplicate_key", `duplicate member ${JSON.stringify(key)}`);
      checkString(key);
      // Defined, not assigned: a "__proto__" member must stay a member.
      Object.defineProperty(out, key, { value: plain(value), enumerable: true, writable: true, configurable: true });
    }
    return out;
  };
  try {
    return plain(new Parser(source, maxDepth).document());
  } catch (error) {
    if (error instanceof Refusal) throw error.toError();
    throw error;
  }
}
