/**
 * QMP-style JSON framing, as QEMU's json-lexer/json-streamer/json-parser do it: messages are
 * not newline-delimited but cut where the brace/bracket depth returns to zero; a lexing error
 * (a stray byte, such as the 0xFF a client sends to reset the stream) discards the message in
 * progress and reports "JSON parse error, stray '...'"; the lexer then skips ahead to a
 * structural character before resuming. Numbers keep QEMU's distinction between integers and
 * floats, and replies are written in QEMU's layout (`{"a": 1, "b": [2, 3]}`).
 */

/** A JSON number written with a fraction or exponent: never an integer argument, as in QEMU. */
export class JsonFloat {
  constructor(readonly value: number) {}
}

/** A value produced by {@link JsonStreamer}: integers beyond 2^53 arrive as bigint. */
export type JsonValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | JsonFloat
  | JsonValue[]
  | { [key: string]: JsonValue };

/** Called once per complete message: either a value or an error text. */
export type MessageHandler = (value: JsonValue | undefined, error: string | undefined) => void;

// Limits that keep a hostile peer from making the agent allocate without bound.
const MAX_TOKEN_SIZE = 64 * 1024 * 1024;
const MAX_TOKEN_COUNT = 2 * 1024 * 1024;
const MAX_NESTING = 1024;

const enum Tok {
  LCurly,
  RCurly,
  LSquare,
  RSquare,
  Colon,
  Comma,
  Integer,
  Float,
  Keyword,
  String,
}

interface Token {
  type: Tok;
  text: Uint8Array;
}

const enum St {
  Start,
  Recovery,
  String,
  StringEscape,
  Minus,
  Zero,
  NonZero,
  Dot,
  Fraction,
  ExpMark,
  ExpSign,
  ExpDigits,
  Keyword,
}

const decoder = new TextDecoder();

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}

/** Splits a byte stream into JSON messages exactly where QEMU's streamer does. */
export class JsonStreamer {
  #state = St.Start;
  #quote = 0;
  #token = new TokenBuffer();
  #tokens: Token[] = [];
  #tokenBytes = 0;
  #braces = 0;
  #brackets = 0;

  constructor(private readonly onMessage: MessageHandler) {}

  /** Forget any partial message (a new client connected). */
  reset(): void {
    this.#state = St.Start;
    this.#token.clear();
    this.#resetStreamer();
  }

  /** Feeds bytes; complete messages are delivered synchronously through the handler. */
  feed(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) this.#lex(bytes[i]);
  }

  #lex(b: number): void {
    // A terminal state that cannot take b ends its token and b is looked at again.
    for (;;) {
      switch (this.#state) {
        case St.Recovery:
          if (
            b < 0x20 && b !== 0x09 || b >= 0xfe || b === 0x5b || b === 0x5d || b === 0x7b ||
            b === 0x7d || b === 0x3a || b === 0x2c
          ) {
            this.#state = St.Start;
            continue;
          }
          return;
        case St.Start:
          switch (b) {
            case 0x20:
            case 0x09:
            case 0x0a:
            case 0x0d:
              return;
            case 0x7b:
              return this.#single(Tok.LCurly, b);
            case 0x7d:
              return this.#single(Tok.RCurly, b);
            case 0x5b:
              return this.#single(Tok.LSquare, b);
            case 0x5d:
              return this.#single(Tok.RSquare, b);
            case 0x3a:
              return this.#single(Tok.Colon, b);
            case 0x2c:
              return this.#single(Tok.Comma, b);
            case 0x22:
            case 0x27:
              this.#quote = b;
              this.#token.push(b);
              this.#state = St.String;
              return;
            case 0x2d:
              this.#token.push(b);
              this.#state = St.Minus;
              return;
            case 0x30:
              this.#token.push(b);
              this.#state = St.Zero;
              return;
          }
          if (isDigit(b)) {
            this.#token.push(b);
            this.#state = St.NonZero;
            return;
          }
          if (b >= 0x61 && b <= 0x7a) {
            this.#token.push(b);
            this.#state = St.Keyword;
            return;
          }
          return this.#error(b);
        case St.String:
          if (b < 0x20 || b >= 0xfe) return this.#error(b);
          if (b === this.#quote) {
            this.#token.push(b);
            return this.#finish(Tok.String);
          }
          return this.#push(b, b === 0x5c ? St.StringEscape : St.String);
        case St.StringEscape:
          // The parser judges the escape; the lexer only keeps it inside the string.
          if (b < 0x20 || b >= 0xfe) return this.#error(b);
          return this.#push(b, St.String);
        case St.Minus:
          if (b === 0x30) {
            this.#token.push(b);
            this.#state = St.Zero;
            return;
          }
          if (isDigit(b)) {
            this.#token.push(b);
            this.#state = St.NonZero;
            return;
          }
          return this.#error(b);
        case St.Zero:
          if (isDigit(b)) return this.#error(b);
          if (b === 0x2e) return this.#push(b, St.Dot);
          if (b === 0x65 || b === 0x45) return this.#push(b, St.ExpMark);
          this.#finish(Tok.Integer);
          continue;
        case St.NonZero:
          if (isDigit(b)) return this.#push(b, St.NonZero);
          if (b === 0x2e) return this.#push(b, St.Dot);
          if (b === 0x65 || b === 0x45) return this.#push(b, St.ExpMark);
          this.#finish(Tok.Integer);
          continue;
        case St.Dot:
          if (isDigit(b)) return this.#push(b, St.Fraction);
          return this.#error(b);
        case St.Fraction:
          if (isDigit(b)) return this.#push(b, St.Fraction);
          if (b === 0x65 || b === 0x45) return this.#push(b, St.ExpMark);
          this.#finish(Tok.Float);
          continue;
        case St.ExpMark:
          if (b === 0x2b || b === 0x2d) return this.#push(b, St.ExpSign);
          if (isDigit(b)) return this.#push(b, St.ExpDigits);
          return this.#error(b);
        case St.ExpSign:
          if (isDigit(b)) return this.#push(b, St.ExpDigits);
          return this.#error(b);
        case St.ExpDigits:
          if (isDigit(b)) return this.#push(b, St.ExpDigits);
          this.#finish(Tok.Float);
          continue;
        case St.Keyword:
          if (b >= 0x61 && b <= 0x7a) return this.#push(b, St.Keyword);
          this.#finish(Tok.Keyword);
          continue;
      }
    }
  }

  #push(b: number, next: St): void {
    this.#token.push(b);
    this.#state = next;
    if (this.#token.length + this.#tokenBytes > MAX_TOKEN_SIZE) {
      this.#token.clear();
      this.#state = St.Recovery;
      this.#emitError("JSON token size limit exceeded");
    }
  }

  #single(type: Tok, b: number): void {
    this.#token.push(b);
    this.#finish(type);
  }

  #error(b: number): void {
    this.#token.push(b);
    // The text is a C string in QEMU: it ends at a NUL byte.
    const bytes = this.#token.bytes();
    const nul = bytes.indexOf(0);
    const text = decoder.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
    this.#token.clear();
    this.#state = St.Recovery;
    this.#emitError(`JSON parse error, stray '${text}'`);
  }

  #finish(type: Tok): void {
    const text = this.#token.bytes().slice();
    this.#token.clear();
    this.#state = St.Start;
    if (type === Tok.String && text.length + this.#tokenBytes > MAX_TOKEN_SIZE) {
      return this.#emitError("JSON token size limit exceeded");
    }
    this.#token_(type, text);
  }

  #token_(type: Tok, text: Uint8Array): void {
    if (type === Tok.LCurly) this.#braces++;
    else if (type === Tok.RCurly) this.#braces--;
    else if (type === Tok.LSquare) this.#brackets++;
    else if (type === Tok.RSquare) this.#brackets--;
    if (this.#tokenBytes + text.length + 1 > MAX_TOKEN_SIZE) {
      return this.#emitError("JSON token size limit exceeded");
    }
    if (this.#tokens.length + 1 > MAX_TOKEN_COUNT) {
      return this.#emitError("JSON token count limit exceeded");
    }
    if (this.#braces + this.#brackets > MAX_NESTING) {
      return this.#emitError("JSON nesting depth limit exceeded");
    }
    this.#tokens.push({ type, text });
    this.#tokenBytes += text.length;
    if ((this.#braces > 0 || this.#brackets > 0) && this.#braces >= 0 && this.#brackets >= 0) {
      return;
    }
    const tokens = this.#tokens;
    this.#resetStreamer();
    let value: JsonValue | undefined;
    let error: string | undefined;
    try {
      value = new TokenParser(tokens).parseMessage();
    } catch (e) {
      if (!(e instanceof JsonParseError)) throw e;
      error = `JSON parse error, ${e.message}`;
    }
    this.onMessage(value, error);
  }

  #emitError(message: string): void {
    this.#resetStreamer();
    this.onMessage(undefined, message);
  }

  #resetStreamer(): void {
    this.#tokens = [];
    this.#tokenBytes = 0;
    this.#braces = 0;
    this.#brackets = 0;
  }
}

class JsonParseError extends Error {}

/** The bytes of the token being lexed, in a buffer that grows by doubling. */
class TokenBuffer {
  #buf = new Uint8Array(256);
  length = 0;

  push(b: number): void {
    if (this.length === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    this.#buf[this.length++] = b;
  }

  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }

  clear(): void {
    this.length = 0;
    if (this.#buf.length > 65536) this.#buf = new Uint8Array(256);
  }
}

/** Recursive descent over one message's tokens, with QEMU's error wording. */
class TokenParser {
  #pos = 0;
  constructor(private readonly tokens: Token[]) {}

  parseMessage(): JsonValue {
    const v = this.#value();
    return v;
  }

  #next(): Token | undefined {
    return this.tokens[this.#pos++];
  }

  #peek(): Token | undefined {
    return this.tokens[this.#pos];
  }

  #value(): JsonValue {
    const t = this.#next();
    if (!t) throw new JsonParseError("expecting value");
    switch (t.type) {
      case Tok.LCurly:
        return this.#object();
      case Tok.LSquare:
        return this.#array();
      case Tok.String:
        return parseString(t.text);
      case Tok.Integer:
        return parseInteger(t.text);
      case Tok.Float:
        return new JsonFloat(Number(decoder.decode(t.text)));
      case Tok.Keyword: {
        const k = decoder.decode(t.text);
        if (k === "true") return true;
        if (k === "false") return false;
        if (k === "null") return null;
        throw new JsonParseError(`invalid keyword '${k}'`);
      }
      default:
        throw new JsonParseError("expecting value");
    }
  }

  #object(): JsonValue {
    const obj: { [key: string]: JsonValue } = {};
    let t = this.#peek();
    if (!t) throw new JsonParseError("premature EOI");
    if (t.type === Tok.RCurly) {
      this.#pos++;
      return obj;
    }
    for (;;) {
      // Like QEMU: the key is parsed as any value first, then required to be a string.
      const name = this.#value();
      if (typeof name !== "string") throw new JsonParseError("key is not a string in object");
      const colon = this.#next();
      if (!colon) throw new JsonParseError("premature EOI");
      if (colon.type !== Tok.Colon) throw new JsonParseError("missing : in object pair");
      const value = this.#value();
      if (Object.hasOwn(obj, name)) throw new JsonParseError(`duplicate key '${name}'`);
      Object.defineProperty(obj, name, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      t = this.#next();
      if (!t) throw new JsonParseError("premature EOI");
      if (t.type === Tok.RCurly) return obj;
      if (t.type !== Tok.Comma) throw new JsonParseError("expected separator in dict");
    }
  }

  #array(): JsonValue {
    const list: JsonValue[] = [];
    let t = this.#peek();
    if (!t) throw new JsonParseError("premature EOI");
    if (t.type === Tok.RSquare) {
      this.#pos++;
      return list;
    }
    for (;;) {
      list.push(this.#value());
      t = this.#next();
      if (!t) throw new JsonParseError("premature EOI");
      if (t.type === Tok.RSquare) return list;
      if (t.type !== Tok.Comma) throw new JsonParseError("expected separator in list");
    }
  }
}

const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;

function parseInteger(text: Uint8Array): number | bigint | JsonFloat {
  const s = decoder.decode(text);
  const n = Number(s);
  if (Number.isSafeInteger(n)) return n;
  const big = BigInt(s);
  // Like QEMU: int64, else uint64, else a double.
  if (big >= INT64_MIN && big <= UINT64_MAX) return big;
  return new JsonFloat(n);
}

function hex4(s: string, i: number): number {
  const h = s.slice(i, i + 4);
  if (!/^[0-9a-fA-F]{4}$/.test(h)) {
    throw new JsonParseError("invalid hex escape sequence in string");
  }
  return parseInt(h, 16);
}

/** Decodes a string token (quotes included), validating escapes and UTF-8 like QEMU. */
function parseString(text: Uint8Array): string {
  let raw: string;
  try {
    raw = new TextDecoder("utf-8", { fatal: true }).decode(text.subarray(1, text.length - 1));
  } catch {
    throw new JsonParseError("invalid UTF-8 sequence in string");
  }
  if (!raw.includes("\\")) return raw;
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = raw[++i];
    switch (e) {
      case '"':
      case "'":
      case "\\":
      case "/":
        out += e;
        break;
      case "b":
        out += "\b";
        break;
      case "f":
        out += "\f";
        break;
      case "n":
        out += "\n";
        break;
      case "r":
        out += "\r";
        break;
      case "t":
        out += "\t";
        break;
      case "u": {
        let cp = hex4(raw, i + 1);
        const start = i - 1;
        i += 4;
        if (cp >= 0xd800 && cp <= 0xdbff && raw[i + 1] === "\\" && raw[i + 2] === "u") {
          const lo = hex4(raw, i + 3);
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
          }
        }
        if (cp >= 0xd800 && cp <= 0xdfff) {
          throw new JsonParseError(
            `${raw.slice(start, i + 1)} is not a valid Unicode character`,
          );
        }
        out += String.fromCodePoint(cp);
        break;
      }
      default:
        throw new JsonParseError("invalid escape sequence in string");
    }
  }
  return out;
}

/** Characters that need escaping in QEMU's output: quote, backslash, controls, non-ASCII. */
// deno-lint-ignore no-control-regex
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\uffff]/;

function quoteString(s: string): string {
  // Most strings (base64 payloads above all) are plain ASCII: no work needed.
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        continue;
      case "\\":
        out += "\\\\";
        continue;
      case "\b":
        out += "\\b";
        continue;
      case "\f":
        out += "\\f";
        continue;
      case "\n":
        out += "\\n";
        continue;
      case "\r":
        out += "\\r";
        continue;
      case "\t":
        out += "\\t";
        continue;
    }
    if (cp >= 0x20 && cp < 0x7f) {
      out += ch;
    } else if (cp > 0xffff) {
      const v = cp - 0x10000;
      out += `\\u${hex(0xd800 + (v >> 10))}\\u${hex(0xdc00 + (v & 0x3ff))}`;
    } else {
      out += `\\u${hex(cp)}`;
    }
  }
  return out + '"';
}

function hex(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, "0");
}

/** A double as C's printf("%.17g") writes it, which is what QEMU emits. */
export function formatDouble(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  let s: string;
  const e = Number(x.toExponential(16).split("e")[1]);
  if (e < -4 || e >= 17) {
    const [mant, ex] = x.toExponential(16).split("e");
    const m = mant.includes(".") ? mant.replace(/0+$/, "").replace(/\.$/, "") : mant;
    const n = Number(ex);
    s = `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  } else {
    s = x.toFixed(Math.max(0, 16 - e));
    if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
  }
  return s;
}

const QDICT_BUCKET_MAX = 512;
const textEncoder = new TextEncoder();

/** The hash QEMU's QDict files a key under (tdb_hash), modulo its 512 buckets. */
export function qdictBucket(key: string): number {
  const b = textEncoder.encode(key);
  let value = Math.imul(0x238f13af, b.length) >>> 0;
  for (let i = 0; i < b.length; i++) value = (value + (b[i] << ((i * 5) % 24))) >>> 0;
  return ((Math.imul(1103515243, value) + 12345) >>> 0) % QDICT_BUCKET_MAX;
}

/**
 * Orders members the way QEMU prints a QDict: by hash bucket, and within a bucket the member
 * added last comes first. This makes demu's replies byte-identical to qemu-ga's.
 */
function qdictOrder<T>(entries: [string, T][]): [string, T][] {
  return entries
    .map((e, i) => ({ e, i, b: qdictBucket(e[0]) }))
    .sort((x, y) => x.b - y.b || y.i - x.i)
    .map((x) => x.e);
}

/** Serializes a value in QEMU's reply layout (members in QDict order). */
export function toQmpJson(v: unknown): string {
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "number":
      return Number.isInteger(v) && !Object.is(v, -0) ? String(v) : formatDouble(v);
    case "bigint":
      return v.toString();
    case "string":
      return quoteString(v);
  }
  if (v instanceof JsonFloat) return formatDouble(v.value);
  if (Array.isArray(v)) {
    return v.length ? `[${v.map(toQmpJson).join(", ")}]` : "[]";
  }
  const entries = qdictOrder(
    Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined),
  );
  if (!entries.length) return "{}";
  return `{${entries.map(([k, x]) => `${quoteString(k)}: ${toQmpJson(x)}`).join(", ")}}`;
}
