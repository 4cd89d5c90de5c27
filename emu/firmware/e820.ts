/** The e820 memory map QEMU hands SeaBIOS through fw_cfg ("etc/e820"): the RAM ranges. */

export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface E820Entry {
  addr: number;
  len: number;
  type: number;
}

/** Serializes entries as fw_cfg's etc/e820 (packed: le64 addr, le64 len, le32 type). */
export function e820Bytes(entries: E820Entry[]): Uint8Array {
  const b = new Uint8Array(entries.length * 20);
  const v = new DataView(b.buffer);
  entries.forEach((e, i) => {
    v.setBigUint64(i * 20, BigInt(e.addr), true);
    v.setBigUint64(i * 20 + 8, BigInt(e.len), true);
    v.setUint32(i * 20 + 16, e.type, true);
  });
  return b;
}
