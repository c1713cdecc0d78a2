// Canonicalization byte-identical to the Rust implementation: the RFC 8785 vectors in the
// project, the precision rule, and generated documents compared with the gateway's own
// `handsign canonicalize` (HANDSIGN_BIN).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { canonicalize, canonicalizeValue, formatNumber, CanonicalError, paramsSha256 } from "handsign";

const REPO = process.env.HANDSIGN_REPO;
const VECTORS = `${REPO}/crates/handsign-protocol/tests/vectors/jcs`;
const text = (bytes) => Buffer.from(bytes).toString("utf8");

test("reference documents byte for byte", () => {
  for (const name of readdirSync(`${VECTORS}/input`)) {
    let input = readFileSync(`${VECTORS}/input/${name}`);
    if (name === "values.json") {
      // The reference input writes 333333333.33333329, more digits than its double holds.
      assert.throws(() => canonicalize(input), (e) => e.kind === "inexact_number" && e.pointer === "/numbers/0");
      input = Buffer.from(input.toString().replace("333333333.33333329", "333333333.3333333"));
    }
    const expected = readFileSync(`${VECTORS}/output/${name}`);
    assert.deepEqual(Buffer.from(canonicalize(input)), expected, name);
    assert.deepEqual(Buffer.from(canonicalizeValue(JSON.parse(input.toString()))), expected, name);
  }
});

test("ES6 number serialization", () => {
  const lines = ["es6testfile_first10000.txt", "readme_samples.txt"].flatMap((f) =>
    readFileSync(`${VECTORS}/numbers/${f}`, "utf8").split("\n").filter((l) => l && !l.startsWith("#")));
  for (const line of lines) {
    const [bits, expected] = line.split(",");
    const x = Buffer.from(bits.padStart(16, "0"), "hex").readDoubleBE(0);
    assert.equal(formatNumber(x), expected, bits);
    assert.equal(text(canonicalize(expected)), expected);
  }
  for (const x of [NaN, Infinity, -Infinity]) assert.throws(() => canonicalizeValue(x), CanonicalError);
});

const refusals = {
  "9007199254740993": "inexact_number",
  "0.10000000000000000001": "inexact_number",
  "1e-400": "inexact_number",
  "1e400": "number_out_of_range",
  '{"a":1,"a":2}': "duplicate_key",
  '{"a":1,"\\u0061":2}': "duplicate_key",
  '"\\ud800"': "lone_surrogate",
  '["\\udc00x"]': "lone_surrogate",
  '"\\ud800\\u0041"': "lone_surrogate",
  "": "syntax",
  "01": "syntax",
  "1.": "syntax",
  ".5": "syntax",
  "+1": "syntax",
  "[1,]": "syntax",
  '{"a":1} x': "syntax",
  '"a\tb"': "syntax",
  '"\\x"': "syntax",
  "NaN": "syntax",
  "\ufeff{}": "syntax",
  [`${"[".repeat(33)}${"]".repeat(33)}`]: "too_deep",
  [`${"[".repeat(100000)}${"]".repeat(100000)}`]: "too_deep",
};

test("refusals name the problem", () => {
  for (const [input, kind] of Object.entries(refusals)) {
    assert.throws(() => canonicalize(input), (e) => e instanceof CanonicalError && e.kind === kind, input.slice(0, 40));
  }
  assert.throws(() => canonicalize(Buffer.from([0xff])), (e) => e.kind === "invalid_utf8");
  assert.throws(() => canonicalize('{"a": [1, {"b/c": 9007199254740993}]}'), (e) => e.pointer === "/a/1/b~1c");
  assert.throws(() => canonicalize('"' + "a".repeat(100) + '"', { maxBytes: 100, maxDepth: 32 }), (e) => e.kind === "too_large");
});

test("exact documents are accepted", () => {
  const accepted = {
    "1.0": "1", "1e21": "1e+21", "-0": "0", "-0.0": "0", "0.1000": "0.1", "1E2": "100",
    "1152921504606847000": "1152921504606847000",
    '{"b":1, "a":[true,false,null]}': '{"a":[true,false,null],"b":1}',
    '"\\u00e9\\/\\u2028\\u007f"': '"é/\u2028\u007f"',
    '{"\\ud83d\\ude00":1,"\\ue000":2}': '{"😀":1,"\ue000":2}',
  };
  for (const [input, output] of Object.entries(accepted)) assert.equal(text(canonicalize(input)), output, input);
  assert.equal(text(canonicalizeValue({ b: 2n ** 53n, a: [1.5, null, true] })), '{"a":[1.5,null,true],"b":9007199254740992}');
  assert.throws(() => canonicalizeValue({ n: 2n ** 60n }), (e) => e.kind === "inexact_number");
  assert.throws(() => canonicalizeValue({ s: "\ud800" }), (e) => e.kind === "lone_surrogate");
  assert.throws(() => canonicalizeValue({ d: new Date() }), (e) => e.kind === "unsupported_type");
  assert.equal(paramsSha256(canonicalize("{}")), "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o");
});

// --- generated documents against the gateway's implementation --------------------------------

function rng(seed) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
}

const ALPHABET = ["a", "b", "Z", "é", "\u2028", "\u007f", "😀", "\ue000", "\uffff", "\n", '"', "\\", "/", "\u0001", "𝄞", "ß"];

function generate(r, depth = 0) {
  const pick = (items) => items[Math.floor(r() * items.length)];
  const int = (n) => Math.floor(r() * n);
  const str = () => {
    let s = "";
    for (let i = int(5); i > 0; i--) {
      const c = pick(ALPHABET);
      s += r() < 0.3 && c.length === 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}` : JSON.stringify(c).slice(1, -1);
    }
    if (r() < 0.03) s += pick(["\\ud800", "\\udfff", "\\ud83d\\ude00"]);
    return `"${s}"`;
  };
  const num = () => pick([
    () => String(int(2 ** 31) - 2 ** 30) + String(int(1e9)),
    () => String((r() - 0.5) * 2e6),
    () => `${1 + int(9)}.${int(1e12)}e${int(660) - 330}`,
    () => pick(["0", "-0", "0.0", "1e0", "1E+2", "123.4500", "5e-324", "1e-7", "2e21"]),
    () => String(2 ** 53 + int(7) - 3),
    () => `0.${"0".repeat(int(8))}${1 + int(1e15)}`,
  ])();
  const kind = int(depth < 4 ? 10 : 5);
  if (kind < 2) return num();
  if (kind < 4) return str();
  if (kind === 4) return pick(["true", "false", "null"]);
  if (kind < 7) return `[${Array.from({ length: int(4) }, () => generate(r, depth + 1)).join(",")}]`;
  const keys = Array.from({ length: int(5) }, str);
  if (keys.length && r() < 0.1) keys.push(keys[0]);
  const ws = pick(["", " ", "\n\t"]);
  return `{${keys.map((k) => `${ws}${k}${ws}:${ws}${generate(r, depth + 1)}`).join(",")}}`;
}

test("generated documents match the gateway", () => {
  assert.ok(process.env.HANDSIGN_BIN, "set HANDSIGN_BIN to the gateway binary (sdk/typescript/test.sh does)");
  const r = rng(8785);
  let accepted = 0;
  for (let i = 0; i < 300; i++) {
    const doc = generate(r);
    let ours = null;
    try {
      ours = text(canonicalize(doc));
    } catch (e) {
      if (!(e instanceof CanonicalError)) throw e;
    }
    const done = spawnSync(process.env.HANDSIGN_BIN, ["canonicalize"], { input: doc });
    const theirs = done.status === 0 ? done.stdout.toString("utf8") : null;
    assert.equal(ours, theirs, doc);
    if (ours !== null) accepted++;
  }
  assert.ok(accepted > 100 && accepted < 300, `accepted ${accepted}`);
});
