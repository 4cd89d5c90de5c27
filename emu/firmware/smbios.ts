/**
 * SMBIOS 2.8 tables as QEMU hands them to SeaBIOS through fw_cfg ("etc/smbios/smbios-anchor",
 * "etc/smbios/smbios-tables"): system (type 1) and chassis (type 3) information naming the
 * machine as QEMU's pc does, and the end marker. SeaBIOS adds its own BIOS information (type 0),
 * places the tables and fixes the entry point's address and checksums.
 */

export const SMBIOS_ANCHOR_FILE = "etc/smbios/smbios-anchor";
export const SMBIOS_TABLES_FILE = "etc/smbios/smbios-tables";

const enc = new TextEncoder();

/** One structure: the formatted area (after the 4-byte header) and its strings. */
function structure(type: number, handle: number, body: number[], strings: string[]): Uint8Array {
  const head = [type, 4 + body.length, handle & 0xff, handle >> 8, ...body];
  const text: number[] = [];
  for (const s of strings) text.push(...enc.encode(s), 0);
  if (!strings.length) text.push(0);
  text.push(0);
  return new Uint8Array([...head, ...text]);
}

export interface SmbiosInfo {
  manufacturer: string;
  product: string;
  version: string;
  uuid?: Uint8Array;
}

/** QEMU 7.2's defaults for the pc machine. */
export const QEMU_PC_SMBIOS: SmbiosInfo = {
  manufacturer: "QEMU",
  product: "Standard PC (i440FX + PIIX, 1996)",
  version: "pc-i440fx-7.2",
};

/** Builds the anchor (SMBIOS 2.8 entry point) and the structure table. */
export function buildSmbios(info: SmbiosInfo = QEMU_PC_SMBIOS): {
  anchor: Uint8Array;
  tables: Uint8Array;
} {
  const uuid = [...(info.uuid ?? new Uint8Array(16))];
  const type1 = structure(1, 0x100, [
    1, // manufacturer
    2, // product name
    3, // version
    0, // serial number
    ...uuid,
    0x06, // wake-up type: power switch
    0, // SKU number
    0, // family
  ], [info.manufacturer, info.product, info.version]);
  const type3 = structure(3, 0x300, [
    1, // manufacturer
    0x01, // type: other
    2, // version
    0, // serial number
    0, // asset tag
    0x03, // boot-up state: safe
    0x03, // power supply state: safe
    0x03, // thermal state: safe
    0x02, // security status: unknown
    0,
    0,
    0,
    0, // OEM-defined
    0, // height
    0, // power cords
    0, // contained element count
    0, // contained element record length
    0, // SKU number
  ], [info.manufacturer, info.version]);
  const type127 = structure(127, 0x7f00, [], []);
  const parts = [type1, type3, type127];
  const tables = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    tables.set(p, o);
    o += p.length;
  }
  const anchor = new Uint8Array(0x1f);
  const v = new DataView(anchor.buffer);
  anchor.set(enc.encode("_SM_"), 0);
  anchor[5] = 0x1f;
  anchor[6] = 2;
  anchor[7] = 8;
  v.setUint16(8, Math.max(...parts.map((p) => p.length)), true);
  anchor.set(enc.encode("_DMI_"), 0x10);
  v.setUint16(0x16, tables.length, true);
  v.setUint32(0x18, 0, true); // the table address: SeaBIOS fills it in
  v.setUint16(0x1c, parts.length, true);
  anchor[0x1e] = 0x28;
  const sum = (a: number, b: number) => anchor.subarray(a, b).reduce((x, y) => (x + y) & 0xff, 0);
  anchor[0x15] = (0x100 - sum(0x10, 0x1f)) & 0xff;
  anchor[4] = (0x100 - sum(0, 0x1f)) & 0xff;
  return { anchor, tables };
}
