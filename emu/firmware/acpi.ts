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

/** An AML PkgLength for `n` bytes that follow it (the encoding's own bytes included). */
function pkgLength(n: number): number[] {
  if (n + 1 < 0x40) return [n + 1];
  const t = n + 2; // two bytes cover up to 4095
  return [0x40 | (t & 0x0f), t >> 4];
}

/** A resource template for the host bridge's _CRS: what QEMU's pc DSDT declares for PCI0. */
function pciCrs(): number[] {
  const b: number[] = [];
  const w = (v: number) => b.push(v & 0xff, (v >> 8) & 0xff);
  const d = (v: number) => b.push(v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24);
  // Word address space: bus numbers (type 2) and I/O (type 1, ISA and non-ISA ranges).
  const word = (type: number, flags: number, min: number, max: number) => {
    b.push(0x88, 0x0d, 0x00, type, 0x0c, flags);
    [0, min, max, 0, max - min + 1].forEach(w);
  };
  // DWord memory (producer, MinFixed, MaxFixed), flags: 1 read-write, 2 cacheable.
  const mem = (flags: number, min: number, max: number) => {
    b.push(0x87, 0x17, 0x00, 0x00, 0x0c, flags);
    [0, min, max, 0, max - min + 1].forEach(d);
  };
  word(2, 0, 0x00, 0xff);
  word(1, 3, 0x0000, 0x0cf7);
  word(1, 3, 0x0d00, 0xffff);
  mem(3, 0x000a0000, 0x000bffff);
  // SeaBIOS places BARs at 0xE0000000 and up (below the I/O APIC's 0xFEC00000).
  mem(1, 0xe0000000, 0xfebfffff);
  b.push(0x79, 0x00); // end tag
  return b;
}

const nameSeg = (s: string) => [...enc.encode(s)];

/** Device (NAME) { _HID EisaId (0x41D0xxxx: "PNPxxxx"), _CRS ResourceTemplate () { ... } }. */
function pnpDevice(name: string, pnpId: number, resources: number[]): number[] {
  const crs = [...resources, 0x79, 0x00];
  const buffer = [0x0a, crs.length, ...crs];
  const body = [
    ...nameSeg(name),
    ...[0x08, ...nameSeg("_HID"), 0x0c, 0x41, 0xd0, pnpId >> 8, pnpId & 0xff],
    ...[0x08, ...nameSeg("_CRS"), 0x11, ...pkgLength(buffer.length), ...buffer],
  ];
  return [0x5b, 0x82, ...pkgLength(body.length), ...body];
}
const io = (
  port: number,
  len: number,
) => [0x47, 0x01, port & 0xff, port >> 8, port & 0xff, port >> 8, 1, len];
const irq = (n: number) => [0x22, (1 << n) & 0xff, (1 << n) >> 8];

/**
 * The legacy ISA devices QEMU's DSDT declares. SeaBIOS reads the DSDT and, once it lists any
 * device, initialises a PS/2 keyboard (PNP0303), floppy (PNP0700) etc. only when declared there:
 * without them, a DSDT with PCI0 alone left the guest with no keyboard.
 */
const ISA_DEVICES = [
  ...pnpDevice("KBD_", 0x0303, [...io(0x60, 1), ...io(0x64, 1), ...irq(1)]),
  ...pnpDevice("MOU_", 0x0f13, irq(12)),
  ...pnpDevice("FDC0", 0x0700, [...io(0x3f2, 4), ...io(0x3f7, 1), ...irq(6), 0x2a, 0x04, 0x00]),
  ...pnpDevice("LPT1", 0x0400, [...io(0x378, 8), ...irq(7)]),
  ...pnpDevice("COM1", 0x0501, [...io(0x3f8, 8), ...irq(4)]),
];

/**
 * AML: Name (_S5, Package (4) { 0, 0, 0, 0 }) — SLP_TYP 0 is S5 on QEMU's PIIX4 — and
 * Scope (\_SB) { Device (PCI0) { _HID EisaId ("PNP0A03"), _ADR 0, _UID 0, _CRS } }: with
 * ACPI on, Linux finds PCI host bridges only through PNP0A03 devices (it does not probe bus 0
 * by itself), so without PCI0 it sees no PCI device at all (no IDE, no virtio); and it claims
 * BARs only inside the windows _CRS declares.
 */
const DSDT_AML = (() => {
  const crs = pciCrs();
  const buffer = [0x0a, crs.length, ...crs]; // BufferSize as a ByteConst
  const dev = [
    ...nameSeg("PCI0"),
    ...[0x08, ...nameSeg("_HID"), 0x0c, 0x41, 0xd0, 0x0a, 0x03], // EisaId ("PNP0A03")
    ...[0x08, ...nameSeg("_ADR"), 0x00],
    ...[0x08, ...nameSeg("_UID"), 0x00],
    ...[0x08, ...nameSeg("_CRS"), 0x11, ...pkgLength(buffer.length), ...buffer],
  ];
  const device = [0x5b, 0x82, ...pkgLength(dev.length), ...dev];
  const scope = [0x5c, ...nameSeg("_SB_"), ...device, ...ISA_DEVICES];
  return new Uint8Array([
    ...[0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0, 0, 0, 0],
    ...[0x10, ...pkgLength(scope.length), ...scope],
  ]);
})();

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
  const f = fadtBody(l, l.base + FACS, l.base + DSDT);
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

// fw_cfg's table loader ("etc/table-loader"): commands SeaBIOS runs to place the tables.
const LOADER_ALLOCATE = 1, LOADER_ADD_POINTER = 2, LOADER_ADD_CHECKSUM = 3;
const LOADER_ENTRY = 128, LOADER_FILE = 56;
const ZONE_HIGH = 1, ZONE_FSEG = 2;
export const ACPI_TABLES_FILE = "etc/acpi/tables";
export const ACPI_RSDP_FILE = "etc/acpi/rsdp";
export const TABLE_LOADER_FILE = "etc/table-loader";

class Loader {
  readonly entries: Uint8Array[] = [];
  #entry(cmd: number): [Uint8Array, DataView] {
    const e = new Uint8Array(LOADER_ENTRY);
    const v = new DataView(e.buffer);
    v.setUint32(0, cmd, true);
    this.entries.push(e);
    return [e, v];
  }
  allocate(file: string, align: number, zone: number): void {
    const [e, v] = this.#entry(LOADER_ALLOCATE);
    e.set(enc.encode(file), 4);
    v.setUint32(4 + LOADER_FILE, align, true);
    e[8 + LOADER_FILE] = zone;
  }
  /** dest[offset..+size] += address of src. */
  pointer(dest: string, src: string, offset: number, size: number): void {
    const [e, v] = this.#entry(LOADER_ADD_POINTER);
    e.set(enc.encode(dest), 4);
    e.set(enc.encode(src), 4 + LOADER_FILE);
    v.setUint32(4 + 2 * LOADER_FILE, offset, true);
    e[8 + 2 * LOADER_FILE] = size;
  }
  /** file[offset] = checksum of file[start..start+length). */
  checksum(file: string, offset: number, start: number, length: number): void {
    const [e, v] = this.#entry(LOADER_ADD_CHECKSUM);
    e.set(enc.encode(file), 4);
    v.setUint32(4 + LOADER_FILE, offset, true);
    v.setUint32(8 + LOADER_FILE, start, true);
    v.setUint32(12 + LOADER_FILE, length, true);
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.entries.length * LOADER_ENTRY);
    this.entries.forEach((e, i) => out.set(e, i * LOADER_ENTRY));
    return out;
  }
}

/** The fw_cfg files of QEMU's ACPI table loader, describing demu's PC. */
export interface AcpiFwCfgFiles {
  tables: Uint8Array;
  rsdp: Uint8Array;
  loader: Uint8Array;
}

/**
 * Builds the tables as fw_cfg files for SeaBIOS: FACS, DSDT (\_S5), FADT (PIIX4 PM at pmBase,
 * SMI_CMD 0xB2 with ACPI_ENABLE/DISABLE as QEMU's PIIX4 answers them) and RSDT in
 * etc/acpi/tables, the RSDP in etc/acpi/rsdp, and the loader commands that place them, patch
 * their pointers and fill in their checksums. No MADT: demu's PC has no local or I/O APIC, so
 * an OS uses the 8259 pair.
 */
export function buildAcpiFwCfg(l: Omit<AcpiLayout, "base">): AcpiFwCfgFiles {
  const FACS = 0, DSDT = 64;
  const dsdt = table("DSDT", 1, DSDT_AML);
  const FADT = align(DSDT + dsdt.length, 8);
  const f = fadtBody({ ...l, base: 0, smiCmd: 0xb2 }, 0, 0);
  const fadt = table("FACP", 1, f);
  const RSDT = align(FADT + fadt.length, 8);
  const rsdtBody = new Uint8Array(4);
  new DataView(rsdtBody.buffer).setUint32(0, FADT, true);
  const rsdt = table("RSDT", 1, rsdtBody);
  const tables = new Uint8Array(RSDT + rsdt.length);
  tables.set(enc.encode("FACS"), FACS);
  new DataView(tables.buffer).setUint32(FACS + 4, 64, true);
  tables.set(dsdt, DSDT);
  tables.set(fadt, FADT);
  tables.set(rsdt, RSDT);
  // FADT: FIRMWARE_CTRL -> FACS, DSDT -> DSDT (offsets now, addresses once placed).
  const tv = new DataView(tables.buffer);
  tv.setUint32(FADT + 36, FACS, true);
  tv.setUint32(FADT + 40, DSDT, true);
  const rsdp = new Uint8Array(20);
  rsdp.set(enc.encode("RSD PTR "), 0);
  rsdp.set(enc.encode("DEMU  "), 9);
  new DataView(rsdp.buffer).setUint32(16, RSDT, true);

  const ld = new Loader();
  ld.allocate(ACPI_RSDP_FILE, 16, ZONE_FSEG);
  ld.allocate(ACPI_TABLES_FILE, 64, ZONE_HIGH);
  ld.pointer(ACPI_TABLES_FILE, ACPI_TABLES_FILE, FADT + 36, 4);
  ld.pointer(ACPI_TABLES_FILE, ACPI_TABLES_FILE, FADT + 40, 4);
  ld.pointer(ACPI_TABLES_FILE, ACPI_TABLES_FILE, RSDT + 36, 4);
  ld.pointer(ACPI_RSDP_FILE, ACPI_TABLES_FILE, 16, 4);
  for (const [at, len] of [[DSDT, dsdt.length], [FADT, fadt.length], [RSDT, rsdt.length]]) {
    tables[at + 9] = 0;
    ld.checksum(ACPI_TABLES_FILE, at + 9, at, len);
  }
  ld.checksum(ACPI_RSDP_FILE, 8, 0, 20);
  return { tables, rsdp, loader: ld.bytes() };
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** The FADT (revision 1) after its header. */
function fadtBody(l: AcpiLayout & { smiCmd?: number }, facs: number, dsdt: number): Uint8Array {
  const f = new Uint8Array(116 - 36);
  const fv = new DataView(f.buffer);
  const o = (x: number) => x - 36;
  fv.setUint32(o(36), facs, true);
  fv.setUint32(o(40), dsdt, true);
  fv.setUint16(o(46), l.sciIrq, true);
  if (l.smiCmd) {
    fv.setUint32(o(48), l.smiCmd, true);
    f[o(52)] = 0xf1; // ACPI_ENABLE
    f[o(53)] = 0xf0; // ACPI_DISABLE
  }
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
  return f;
}
