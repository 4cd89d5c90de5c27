/**
 * The VGA text screen drawn in the terminal (as QEMU's curses display), and the terminal's keys
 * sent to the guest's PS/2 keyboard. Redraws only rows that changed, a few times a second.
 */

/** What the display reads: a VGA in text mode. */
export interface TextSource {
  generation: number;
  readonly textMode: boolean;
  textScreen(): {
    cols: number;
    rows: number;
    chars: Uint8Array;
    attrs: Uint8Array;
    cursor: number;
  };
}

/** Code page 437 to Unicode for the printable range the BIOS and boot loaders use. */
const CP437_HIGH =
  "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■ ";
const ANSI = [30, 34, 32, 36, 31, 35, 33, 37];

export function cp437(c: number): string {
  if (c >= 0x80) return CP437_HIGH[c - 0x80];
  if (c < 0x20) return c === 0 ? " " : "·";
  return String.fromCharCode(c);
}

export class TerminalDisplay {
  #timer: ReturnType<typeof setInterval> | undefined;
  #shown = -1;
  #rows: string[] = [];
  readonly #enc = new TextEncoder();

  constructor(readonly vga: TextSource, readonly out: (b: Uint8Array) => void) {}

  start(intervalMs = 100): void {
    this.out(this.#enc.encode("\x1b[2J"));
    this.#timer = setInterval(() => this.draw(), intervalMs);
  }

  draw(): void {
    if (this.vga.generation === this.#shown) return;
    this.#shown = this.vga.generation;
    if (!this.vga.textMode) return;
    const s = this.vga.textScreen();
    let out = "";
    for (let y = 0; y < s.rows; y++) {
      let line = "";
      let lastAttr = -1;
      for (let x = 0; x < s.cols; x++) {
        const a = s.attrs[y * s.cols + x];
        if (a !== lastAttr) {
          line += `\x1b[0;${ANSI[a & 7] + (a & 8 ? 60 : 0)};${ANSI[(a >> 4) & 7] + 10}m`;
          lastAttr = a;
        }
        line += cp437(s.chars[y * s.cols + x]);
      }
      if (line !== this.#rows[y]) {
        this.#rows[y] = line;
        out += `\x1b[${y + 1};1H${line}`;
      }
    }
    if (out) {
      const cy = Math.floor(s.cursor / s.cols) + 1, cx = (s.cursor % s.cols) + 1;
      this.out(this.#enc.encode(`${out}\x1b[0m\x1b[${cy};${cx}H`));
    }
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.draw();
    this.out(this.#enc.encode("\x1b[0m\r\n"));
  }
}

// Scancode set 2 make codes for the keys a terminal sends.
const SET2: Record<string, number> = {
  a: 0x1c,
  b: 0x32,
  c: 0x21,
  d: 0x23,
  e: 0x24,
  f: 0x2b,
  g: 0x34,
  h: 0x33,
  i: 0x43,
  j: 0x3b,
  k: 0x42,
  l: 0x4b,
  m: 0x3a,
  n: 0x31,
  o: 0x44,
  p: 0x4d,
  q: 0x15,
  r: 0x2d,
  s: 0x1b,
  t: 0x2c,
  u: 0x3c,
  v: 0x2a,
  w: 0x1d,
  x: 0x22,
  y: 0x35,
  z: 0x1a,
  "1": 0x16,
  "2": 0x1e,
  "3": 0x26,
  "4": 0x25,
  "5": 0x2e,
  "6": 0x36,
  "7": 0x3d,
  "8": 0x3e,
  "9": 0x46,
  "0": 0x45,
  "`": 0x0e,
  "-": 0x4e,
  "=": 0x55,
  "[": 0x54,
  "]": 0x5b,
  "\\": 0x5d,
  ";": 0x4c,
  "'": 0x52,
  ",": 0x41,
  ".": 0x49,
  "/": 0x4a,
  " ": 0x29,
};
const SHIFTED: Record<string, string> = {
  "!": "1",
  "@": "2",
  "#": "3",
  $: "4",
  "%": "5",
  "^": "6",
  "&": "7",
  "*": "8",
  "(": "9",
  ")": "0",
  _: "-",
  "+": "=",
  "{": "[",
  "}": "]",
  "|": "\\",
  ":": ";",
  '"': "'",
  "<": ",",
  ">": ".",
  "?": "/",
  "~": "`",
};
const LSHIFT = 0x12, LCTRL = 0x14;
const ESCAPES: Record<string, [number, boolean]> = {
  "[A": [0x75, true],
  "[B": [0x72, true],
  "[C": [0x74, true],
  "[D": [0x6b, true],
  "[H": [0x6c, true],
  "[F": [0x69, true],
  "[5~": [0x7d, true],
  "[6~": [0x7a, true],
  "[3~": [0x71, true],
  "[2~": [0x70, true],
  OP: [0x05, false],
  OQ: [0x06, false],
  OR: [0x04, false],
  OS: [0x0c, false],
  "[15~": [0x03, false],
  "[17~": [0x0b, false],
  "[18~": [0x83, false],
  "[19~": [0x0a, false],
  "[20~": [0x01, false],
  "[21~": [0x09, false],
};

/** A key press and release: (set 2 code, release, extended). */
export type KeySink = (code: number, release: boolean, extended: boolean) => void;

/** Turns terminal input bytes into key presses. */
export function terminalKeys(bytes: Uint8Array, key: KeySink): void {
  const tap = (code: number, ext = false, mods: number[] = []) => {
    for (const m of mods) key(m, false, false);
    key(code, false, ext);
    key(code, true, ext);
    for (const m of mods.toReversed()) key(m, true, false);
  };
  const s = new TextDecoder().decode(bytes);
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    const c = ch.charCodeAt(0);
    if (c === 0x1b) {
      const rest = s.slice(i + 1);
      const seq = Object.keys(ESCAPES).find((k) => rest.startsWith(k));
      if (seq) {
        const [code, ext] = ESCAPES[seq];
        tap(code, ext);
        i += seq.length;
      } else {
        tap(0x76);
      }
      continue;
    }
    if (c === 13 || c === 10) tap(0x5a);
    else if (c === 127 || c === 8) tap(0x66);
    else if (c === 9) tap(0x0d);
    else if (c >= 1 && c <= 26) tap(SET2[String.fromCharCode(c + 96)], false, [LCTRL]);
    else if (SET2[ch] !== undefined) tap(SET2[ch]);
    else if (SET2[ch.toLowerCase()] !== undefined) tap(SET2[ch.toLowerCase()], false, [LSHIFT]);
    else if (SHIFTED[ch]) tap(SET2[SHIFTED[ch]], false, [LSHIFT]);
  }
}
