/**
 * Character backends for serial ports and debugcon: stdio, file:, none (and null). Output is
 * written synchronously (a guest's byte is on the host before its OUT instruction completes);
 * input arrives asynchronously and is handed to the attached device.
 */

/** A character backend. */
export interface CharBackend {
  /** Sends guest output to the host. */
  write(bytes: Uint8Array): void;
  /** Attaches the device that receives host input. */
  setReceiver(receive: (bytes: Uint8Array) => void): void;
  /** Releases the backend after sending what is still queued. */
  close(): void | Promise<void>;
}

/** Discards output, never gives input (-serial none / null). */
export class NullBackend implements CharBackend {
  write(): void {}
  setReceiver(): void {}
  close(): void {}
}

/**
 * Writes output to a file (-serial file:PATH, -chardev file,path=PATH), truncating it first as
 * QEMU does, or adding to its end with `append` (-chardev file,...,append=on).
 */
export class FileBackend implements CharBackend {
  readonly #file: Deno.FsFile;
  constructor(path: string, append = false) {
    this.#file = Deno.openSync(path, { write: true, create: true, truncate: !append, append });
  }
  write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) done += this.#file.writeSync(bytes.subarray(done));
  }
  setReceiver(): void {}
  close(): void {
    this.#file.close();
  }
}

/**
 * The terminal (-serial stdio, -nographic, -chardev stdio). With `mux` (as -nographic's
 * mon:stdio), Ctrl-A X quits and Ctrl-A C is passed to the monitor hook; Ctrl-A Ctrl-A sends one
 * Ctrl-A. `signal` (QEMU's signal=on, the default except for mon:stdio) leaves the terminal's
 * Ctrl-C to the host, which stops the emulator; with signal=off Ctrl-C goes to the guest.
 */
export class StdioBackend implements CharBackend {
  #receive: ((bytes: Uint8Array) => void) | null = null;
  #escape = false;
  #reading = false;
  #raw = false;
  /** Called on Ctrl-A X. */
  onQuit: (() => void) | null = null;
  /** Called on Ctrl-A C (switch between the guest and the monitor). */
  onCommand: (() => void) | null = null;
  /** Takes input while the monitor has the terminal (returns true when consumed). */
  monitorInput: ((bytes: Uint8Array) => boolean) | null = null;

  constructor(readonly mux = false, readonly signal = !mux) {}

  write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
  }

  setReceiver(receive: (bytes: Uint8Array) => void): void {
    this.#receive = receive;
    if (this.#reading) return;
    this.#reading = true;
    if (Deno.stdin.isTerminal()) {
      Deno.stdin.setRaw(true, { cbreak: this.signal });
      this.#raw = true;
    }
    this.#pump();
  }

  async #pump(): Promise<void> {
    const buf = new Uint8Array(256);
    for (;;) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buf);
      } catch {
        return;
      }
      if (n === null || !this.#reading) return;
      this.#input(buf.subarray(0, n));
    }
  }

  #input(bytes: Uint8Array): void {
    if (!this.mux) return this.#receive?.(bytes.slice());
    const out: number[] = [];
    for (const b of bytes) {
      if (this.#escape) {
        this.#escape = false;
        if (b === 0x78 || b === 0x58) { // x: quit
          this.write(new TextEncoder().encode("QEMU: Terminated\r\n"));
          this.onQuit?.();
          return;
        }
        if (b === 0x63 || b === 0x43) { // c: monitor
          if (out.length) this.#deliver(new Uint8Array(out.splice(0)));
          this.onCommand?.();
          continue;
        }
        if (b === 0x01) out.push(1);
        continue;
      }
      if (b === 0x01) this.#escape = true;
      else out.push(b);
    }
    if (out.length) this.#deliver(new Uint8Array(out));
  }

  #deliver(bytes: Uint8Array): void {
    if (this.monitorInput?.(bytes)) return;
    this.#receive?.(bytes);
  }

  close(): void {
    this.#reading = false;
    if (this.#raw) {
      try {
        Deno.stdin.setRaw(false);
      } catch { /* stdin gone */ }
    }
  }
}

/**
 * A backend whose output is also copied to a log file (QEMU's `logfile=`, for every backend):
 * what the guest sent, whether or not anyone was listening.
 */
export class LogTee implements CharBackend {
  constructor(readonly inner: CharBackend, readonly log: Deno.FsFile) {}
  write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) done += this.log.writeSync(bytes.subarray(done));
    this.inner.write(bytes);
  }
  setReceiver(receive: (bytes: Uint8Array) => void): void {
    this.inner.setReceiver(receive);
  }
  async close(): Promise<void> {
    await this.inner.close();
    this.log.close();
  }
}

/** Opens a backend from QEMU's -serial syntax; throws with QEMU's message on unknown kinds. */
export function openCharBackend(spec: string, mux = false): CharBackend {
  if (spec === "none" || spec === "null") return new NullBackend();
  if (spec === "stdio") return new StdioBackend(mux);
  if (spec === "mon:stdio") return new StdioBackend(true);
  if (spec.startsWith("file:")) return new FileBackend(spec.slice(5));
  throw new Error(`'${spec}' is not a valid char driver`);
}
