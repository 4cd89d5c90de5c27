/**
 * A small line editor for interactive prompts: on a terminal, raw-mode editing (arrows, home/end,
 * backspace/delete, ^A ^E ^K ^U ^W) with up/down history; elsewhere plain lines from stdin, each
 * preceded by the prompt as QEMU prints it.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function write(s: string): void {
  const b = encoder.encode(s);
  let p = 0;
  while (p < b.length) p += Deno.stdout.writeSync(b.subarray(p));
}

/** A CSI or SS3 key sequence after ESC: "[A" (up), "[3~" (delete), "OH" (home). */
// deno-lint-ignore no-control-regex
const ESCAPE_SEQUENCE = /^\x1b(\[|O)([0-9;]*)([A-Za-z~])/;

/** Reads lines with a prompt. */
export class LineEditor {
  #history: string[] = [];
  #pending = "";
  #eof = false;
  #tty: boolean;
  #buf = new Uint8Array(4096);

  constructor(readonly prompt: string) {
    this.#tty = Deno.stdin.isTerminal();
  }

  /** The next line without its newline; null at end of input (or ^D on an empty line). */
  async readLine(): Promise<string | null> {
    write(this.prompt);
    return this.#tty ? await this.#editLine() : await this.#plainLine();
  }

  close(): void {
    if (this.#tty) {
      try {
        Deno.stdin.setRaw(false);
      } catch { /* not a terminal any more */ }
    }
  }

  async #plainLine(): Promise<string | null> {
    for (;;) {
      const nl = this.#pending.indexOf("\n");
      if (nl >= 0) {
        const line = this.#pending.slice(0, nl);
        this.#pending = this.#pending.slice(nl + 1);
        return line;
      }
      if (this.#eof) {
        if (!this.#pending) return null;
        const line = this.#pending;
        this.#pending = "";
        return line;
      }
      const n = await Deno.stdin.read(this.#buf);
      if (n === null) this.#eof = true;
      else this.#pending += decoder.decode(this.#buf.subarray(0, n), { stream: true });
    }
  }

  async #editLine(): Promise<string | null> {
    Deno.stdin.setRaw(true);
    let line = "";
    let cur = 0;
    let hist = this.#history.length;
    const redraw = () => {
      write(`\r${this.prompt}${line}\x1b[K`);
      if (line.length > cur) write(`\x1b[${line.length - cur}D`);
    };
    try {
      for (;;) {
        const n = await Deno.stdin.read(this.#buf);
        if (n === null) return null;
        const input = decoder.decode(this.#buf.subarray(0, n));
        for (let i = 0; i < input.length; i++) {
          const ch = input[i];
          const code = ch.charCodeAt(0);
          if (ch === "\r" || ch === "\n") {
            write("\r\n");
            if (line.trim()) this.#history.push(line);
            return line;
          }
          if (code === 4) { // ^D
            if (!line) {
              write("\r\n");
              return null;
            }
            line = line.slice(0, cur) + line.slice(cur + 1);
          } else if (code === 3) { // ^C drops the line
            line = "";
            cur = 0;
            write("\r\n");
          } else if (code === 127 || code === 8) {
            if (cur > 0) {
              line = line.slice(0, cur - 1) + line.slice(cur);
              cur--;
            }
          } else if (code === 1) cur = 0;
          else if (code === 5) cur = line.length;
          else if (code === 11) line = line.slice(0, cur);
          else if (code === 21) {
            line = line.slice(cur);
            cur = 0;
          } else if (code === 23) {
            const before = line.slice(0, cur).replace(/\S+\s*$/, "");
            line = before + line.slice(cur);
            cur = before.length;
          } else if (ch === "\x1b") {
            const seq = ESCAPE_SEQUENCE.exec(input.slice(i));
            if (!seq) continue;
            i += seq[0].length - 1;
            const key = seq[3] + seq[2];
            if (key === "A" && hist > 0) {
              line = this.#history[--hist];
              cur = line.length;
            } else if (key === "B") {
              hist = Math.min(hist + 1, this.#history.length);
              line = this.#history[hist] ?? "";
              cur = line.length;
            } else if (key === "C") cur = Math.min(cur + 1, line.length);
            else if (key === "D") cur = Math.max(cur - 1, 0);
            else if (key === "H" || key === "~1") cur = 0;
            else if (key === "F" || key === "~4") cur = line.length;
            else if (key === "~3") line = line.slice(0, cur) + line.slice(cur + 1);
          } else if (code >= 32) {
            line = line.slice(0, cur) + ch + line.slice(cur);
            cur++;
          }
          redraw();
        }
      }
    } finally {
      Deno.stdin.setRaw(false);
    }
  }
}
