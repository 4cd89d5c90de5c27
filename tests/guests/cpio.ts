/** Writing the initramfs archives of the Linux test guests. */

/** A cpio "newc" archive writer (the format the kernel unpacks into its initial rootfs). */
export class Cpio {
  #parts: Uint8Array[] = [];
  #ino = 1;
  #enc = new TextEncoder();

  #entry(name: string, mode: number, data: Uint8Array, rdev = [0, 0]) {
    const nameBytes = this.#enc.encode(name + "\0");
    const fields = [
      this.#ino++,
      mode,
      0,
      0,
      (mode & 0o170000) === 0o040000 ? 2 : 1,
      0,
      data.length,
      0,
      0,
      rdev[0],
      rdev[1],
      nameBytes.length,
      0,
    ];
    const head = "070701" + fields.map((f) => f.toString(16).padStart(8, "0")).join("");
    this.#parts.push(this.#enc.encode(head), nameBytes);
    this.#pad(110 + nameBytes.length);
    this.#parts.push(data);
    this.#pad(data.length);
  }

  #pad(n: number) {
    const r = (4 - (n % 4)) % 4;
    if (r) this.#parts.push(new Uint8Array(r));
  }

  dir(name: string) {
    this.#entry(name, 0o040755, new Uint8Array(0));
  }
  file(name: string, data: Uint8Array, perm = 0o644) {
    this.#entry(name, 0o100000 | perm, data);
  }
  symlink(name: string, target: string) {
    this.#entry(name, 0o120777, this.#enc.encode(target));
  }
  charDev(name: string, major: number, minor: number) {
    this.#entry(name, 0o020600, new Uint8Array(0), [major, minor]);
  }
  async writeTo(path: string) {
    this.#entry("TRAILER!!!", 0, new Uint8Array(0));
    const f = await Deno.open(path, { write: true, create: true, truncate: true });
    try {
      for (const p of this.#parts) {
        for (let off = 0; off < p.length;) off += await f.write(p.subarray(off));
      }
    } finally {
      f.close();
    }
  }
}
