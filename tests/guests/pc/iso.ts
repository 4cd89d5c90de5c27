/**
 * A minimal ISO 9660 image with an El Torito no-emulation boot entry, built in TypeScript (no
 * mkisofs/xorriso needed): system area, primary volume descriptor, boot record, terminator,
 * path tables, the root directory, the boot catalog and the boot image (loaded at 0000:7C00).
 */

const SECTOR = 2048;
const enc = new TextEncoder();

function both16(v: DataView, o: number, x: number): void {
  v.setUint16(o, x, true);
  v.setUint16(o + 2, x, false);
}
function both32(v: DataView, o: number, x: number): void {
  v.setUint32(o, x, true);
  v.setUint32(o + 4, x, false);
}
function text(b: Uint8Array, o: number, len: number, s: string): void {
  b.fill(0x20, o, o + len);
  b.set(enc.encode(s).subarray(0, len), o);
}

/** A directory record for "." or ".." (name byte 0 or 1). */
function dirRecord(b: Uint8Array, o: number, extent: number, nameByte: number): number {
  const v = new DataView(b.buffer, b.byteOffset);
  b[o] = 34;
  both32(v, o + 2, extent);
  both32(v, o + 10, SECTOR);
  b[o + 25] = 0x02; // directory
  both16(v, o + 28, 1);
  b[o + 32] = 1;
  b[o + 33] = nameByte;
  return 34;
}

/** Builds the image; `boot` is the boot program (at most 2048 bytes; 4 virtual sectors load). */
export function buildBootIso(boot: Uint8Array, volumeId = "DEMU_BOOT"): Uint8Array {
  const PVD = 16, BOOT_RECORD = 17, TERM = 18, LPATH = 19, MPATH = 20, ROOT = 21, CATALOG = 22;
  const IMAGE = 23, TOTAL = 24;
  const iso = new Uint8Array(TOTAL * SECTOR);
  const v = new DataView(iso.buffer);
  const at = (s: number) => s * SECTOR;

  // Primary volume descriptor.
  let o = at(PVD);
  iso[o] = 1;
  text(iso, o + 1, 5, "CD001");
  iso[o + 6] = 1;
  text(iso, o + 8, 32, "");
  text(iso, o + 40, 32, volumeId);
  both32(v, o + 80, TOTAL);
  both16(v, o + 120, 1);
  both16(v, o + 124, 1);
  both16(v, o + 128, SECTOR);
  both32(v, o + 132, 10);
  v.setUint32(o + 140, LPATH, true);
  v.setUint32(o + 148, MPATH, false);
  dirRecord(iso, o + 156, ROOT, 0);
  for (
    const [off, len] of [[190, 128], [318, 128], [446, 128], [574, 128], [702, 37], [739, 37], [
      776,
      37,
    ]]
  ) {
    text(iso, o + off, len, "");
  }
  for (const off of [813, 830, 847, 864]) {
    text(iso, o + off, 16, "0000000000000000");
    iso[o + off + 16] = 0;
  }
  iso[o + 881] = 1;

  // El Torito boot record.
  o = at(BOOT_RECORD);
  iso[o] = 0;
  text(iso, o + 1, 5, "CD001");
  iso[o + 6] = 1;
  iso.fill(0, o + 7, o + 39);
  iso.set(enc.encode("EL TORITO SPECIFICATION"), o + 7);
  v.setUint32(o + 71, CATALOG, true);

  // Terminator.
  o = at(TERM);
  iso[o] = 255;
  text(iso, o + 1, 5, "CD001");
  iso[o + 6] = 1;

  // Path tables: just the root.
  for (const [s, le] of [[LPATH, true], [MPATH, false]] as const) {
    o = at(s);
    iso[o] = 1;
    v.setUint32(o + 2, ROOT, le);
    v.setUint16(o + 6, 1, le);
  }

  // Root directory: "." and "..".
  o = at(ROOT);
  o += dirRecord(iso, o, ROOT, 0);
  dirRecord(iso, o, ROOT, 1);

  // Boot catalog: validation entry, then the initial/default entry.
  o = at(CATALOG);
  iso[o] = 1; // header ID
  iso[o + 1] = 0; // platform: 80x86
  iso.set(enc.encode("DEMU"), o + 4);
  iso[o + 30] = 0x55;
  iso[o + 31] = 0xaa;
  let sum = 0;
  for (let i = 0; i < 32; i += 2) sum = (sum + v.getUint16(o + i, true)) & 0xffff;
  v.setUint16(o + 28, (0x10000 - sum) & 0xffff, true);
  iso[o + 32] = 0x88; // bootable
  iso[o + 33] = 0; // no emulation
  v.setUint16(o + 34, 0, true); // load segment 0: 0x7C0
  v.setUint16(o + 38, 4, true); // 4 virtual 512-byte sectors
  v.setUint32(o + 40, IMAGE, true);

  if (boot.length > SECTOR) throw new Error("boot image larger than one CD sector");
  iso.set(boot, at(IMAGE));
  return iso;
}
