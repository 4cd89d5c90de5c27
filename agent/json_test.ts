import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { formatDouble, JsonFloat, JsonStreamer, type JsonValue, toQmpJson } from "./json.ts";

/** Feeds the chunks and returns what the streamer emitted: values as QMP JSON, errors as text. */
function run(...chunks: (string | number[])[]): string[] {
  const out: string[] = [];
  const s = new JsonStreamer((v, e) => out.push(e ?? toQmpJson(v as JsonValue)));
  for (const c of chunks) {
    s.feed(typeof c === "string" ? new TextEncoder().encode(c) : new Uint8Array(c));
  }
  return out;
}

Deno.test("messages are cut where depth returns to zero, across and within chunks", () => {
  deepStrictEqual(run('{"a": [1, {"b": 2}]}{"c"', ": 3}"), [
    '{"a": [1, {"b": 2}]}',
    '{"c": 3}',
  ]);
  // A top-level number ends only when the next byte arrives.
  deepStrictEqual(run("12"), []);
  deepStrictEqual(run("12", " "), ["12"]);
});

Deno.test("lexing errors report the stray text and resynchronise at a structural byte", () => {
  deepStrictEqual(run('{"execute":@}'), [
    "JSON parse error, stray '@'",
    "JSON parse error, expecting value",
  ]);
  deepStrictEqual(run('{"x": -}'), ["JSON parse error, stray '-}'"]);
  deepStrictEqual(run([0xff], '{"a":1}'), ["JSON parse error, stray '\uFFFD'", '{"a": 1}']);
  deepStrictEqual(run('{"a": TRUE}{"b":1}'), [
    "JSON parse error, stray 'T'",
    "JSON parse error, expecting value",
    '{"b": 1}',
  ]);
});

Deno.test("parser errors use QEMU's wording", () => {
  deepStrictEqual(run("{bad json}"), ["JSON parse error, invalid keyword 'bad'"]);
  deepStrictEqual(run("{1:2}"), ["JSON parse error, key is not a string in object"]);
  deepStrictEqual(run('{"a"}'), ["JSON parse error, missing : in object pair"]);
  deepStrictEqual(run('{"a":1 "b":2}'), ["JSON parse error, expected separator in dict"]);
  deepStrictEqual(run("[1 2]"), ["JSON parse error, expected separator in list"]);
  deepStrictEqual(run("[1,]"), ["JSON parse error, expecting value"]);
  deepStrictEqual(run('{"a":"\\q"}'), ["JSON parse error, invalid escape sequence in string"]);
  deepStrictEqual(run('["\\ud800"]'), [
    "JSON parse error, \\ud800 is not a valid Unicode character",
  ]);
});

Deno.test("numbers keep integer/float distinction and 64-bit integers exactly", () => {
  const got: JsonValue[] = [];
  const s = new JsonStreamer((v) => got.push(v!));
  s.feed(new TextEncoder().encode("[9223372036854775807, 1.0, -5, 1e400]"));
  const list = got[0] as JsonValue[];
  strictEqual(list[0], 9223372036854775807n);
  strictEqual(list[1] instanceof JsonFloat, true);
  strictEqual(list[2], -5);
  strictEqual(toQmpJson(list), "[9223372036854775807, 1, -5, inf]");
});

Deno.test("strings: single quotes accepted, output escapes non-ASCII like QEMU", () => {
  deepStrictEqual(run("{'a':'b'}"), ['{"a": "b"}']);
  deepStrictEqual(run('["\\u00e9\\/\\ud83d\\ude00\\t\u00e9"]'), [
    '["\\u00E9/\\uD83D\\uDE00\\t\\u00E9"]',
  ]);
});

Deno.test("doubles print as %.17g", () => {
  strictEqual(formatDouble(0.1), "0.10000000000000001");
  strictEqual(formatDouble(1500), "1500");
  strictEqual(formatDouble(1e23), "9.9999999999999992e+22");
  strictEqual(formatDouble(-0), "-0");
  strictEqual(formatDouble(1.5e-7), "1.4999999999999999e-07");
});

Deno.test("nesting beyond the limit is refused and the stream recovers", () => {
  const deep = "[".repeat(1100) + "]".repeat(1100);
  const out = run(deep, '{"a":1}');
  strictEqual(out[0], "JSON nesting depth limit exceeded");
  strictEqual(out.at(-1), '{"a": 1}');
});
