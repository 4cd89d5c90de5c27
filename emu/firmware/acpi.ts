/**
 * Minimal ACPI tables for a PC booted without firmware (-kernel): RSDP, RSDT, FADT (revision 1,
 * PIIX4 PM registers at the base the loader programs), FACS and a DSDT whose AML is only the
 * \_S5 sleep package, so that an OS can power the machine off through PM1a_CNT.
 */

const enc = new TextEncoder();

function checksum(b: Uint8Array, at: number): void {
  let sum = 0;
  for (const x of b) sum = (sum + x) & 0xff;
  b[at] = (0x100 - sum) & 0xff;
}

/** A table with the standard 36-byte header filled in (checksum included). */
function table(sig: string, revision: number, body: Uint8Array): Uint8Array {
  const t = new Uint8Array(36 + body.length);
  const v = new DataView(t.buffer);
  t.set(enc.encode(sig), 0);
  v.setUint32(4, t.length, true);
  t[8] = revision;
  t.set(enc.encode("DEMU  "), 10);
  t.set(enc.encode("DEMUPC  "), 16);
  v.setUint32(24, 1, true);
  t.set(enc.encode("DEMU"), 28);
  v.setUint32(32, 1, true);
  t.set(body, 36);
  checksum(t, 9);
  return t;
}

/** AML: Name (_S5, Package (4) { 0, 0, 0, 0 }) — SLP_TYP 0 is S5 on QEMU's PIIX4. */
const DSDT_AML = new Uint8Array([0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0, 0, 0, 0]);

export interface AcpiLayout {
  /** Guest physical address where the tables go (16-byte aligned, in 0xE0000-0xFFFFF). */
  base: number;
  /** PIIX4 PM I/O base (PM1a_EVT; PM1a_CNT = +4, PM_TMR = +8). */
  pmBase: number;
  gpe0: number;
  sciIrq: number;
}

/** Builds the tables; returns the bytes to copy at layout.base and the RSDP's address. */
export function buildAcpiTables(l: AcpiLayout): { bytes: Uint8Array; rsdp: number } {
  const out = new Uint8Array(0x400);
  const ov = new DataView(out.buffer);
  const RSDP = 0x000, FACS = 0x040, RSDT = 0x080, FADT = 0x100, DSDT = 0x200;
  // FACS (64 bytes, 64-byte aligned).
  out.set(enc.encode("FACS"), FACS);
  ov.setUint32(FACS + 4, 64, true);
  // DSDT.
  const dsdt = table("DSDT", 1, DSDT_AML);
  out.set(dsdt, DSDT);
  // FADT revision 1 (116 bytes).
  const f = new Uint8Array(116 - 36);
  const fv = new DataView(f.buffer);
  const o = (x: number) => x - 36;
  fv.setUint32(o(36), l.base + FACS, true);
  fv.setUint32(o(40), l.base + DSDT, true);
  fv.setUint16(o(46), l.sciIrq, true);
  fv.setUint32(o(48), 0, true); // no SMI command port: the hardware is always in ACPI mode
  fv.setUint32(o(56), l.pmBase, true);
  fv.setUint32(o(64), l.pmBase + 4, true);
  fv.setUint32(o(76), l.pmBase + 8, true);
  fv.setUint32(o(80), l.gpe0, true);
  f[o(88)] = 4;
  f[o(89)] = 2;
  f[o(91)] = 4;
  f[o(92)] = 4;
  fv.setUint16(o(96), 0xfff, true); // no C2
  fv.setUint16(o(98), 0xfff, true); // no C3
  f[o(108)] = 0x32; // RTC century register
  fv.setUint32(o(112), (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5), true); // WBINVD, C1, buttons
  out.set(table("FACP", 1, f), FADT);
  // RSDT.
  const r = new Uint8Array(4);
  new DataView(r.buffer).setUint32(0, l.base + FADT, true);
  out.set(table("RSDT", 1, r), RSDT);
  // RSDP (revision 0).
  out.set(enc.encode("RSD PTR "), RSDP);
  out.set(enc.encode("DEMU  "), RSDP + 9);
  ov.setUint32(RSDP + 16, l.base + RSDT, true);
  checksum(out.subarray(RSDP, RSDP + 20), 8);
  return { bytes: out, rsdp: l.base + RSDP };
}
