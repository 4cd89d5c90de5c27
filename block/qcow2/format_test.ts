import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import {
  backingFormatOf,
  decodeCompressedDescriptor,
  decodeFeatureTable,
  encodeCompressedDescriptor,
  encodeFeatureTable,
  getRefcount,
  maxRefcount,
  parseHeader,
  parseSnapshotTable,
  QCOW2_COMPAT_LAZY_REFCOUNTS,
  QCOW2_EXT_MAGIC_FEATURE_TABLE,
  QCOW2_FEATURE_NAMES,
  QCOW2_INCOMPAT_EXTL2,
  type Qcow2Header,
  type Qcow2Snapshot,
  QCOW_MAGIC,
  QCOW_OFLAG_COMPRESSED,
  serializeHeader,
  serializeSnapshotTable,
  setBackingFormat,
  setRefcount,
} from "./format.ts";

function header(over: Partial<Qcow2Header> = {}): Qcow2Header {
  return {
    magic: QCOW_MAGIC,
    version: 3,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: 16,
    size: 10 * 2 ** 30,
    cryptMethod: 0,
    l1Size: 20,
    l1TableOffset: 0x30000,
    refcountTableOffset: 0x10000,
    refcountTableClusters: 1,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: QCOW2_INCOMPAT_EXTL2,
    compatibleFeatures: QCOW2_COMPAT_LAZY_REFCOUNTS,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: 112,
    compressionType: 0,
    extensions: [],
    ...over,
  };
}

Deno.test("format: header round trip keeps every field, extensions in order and the backing name", () => {
  const h = header({
    extensions: [
      { type: QCOW2_EXT_MAGIC_FEATURE_TABLE, data: encodeFeatureTable(QCOW2_FEATURE_NAMES) },
      { type: 0x12345678, data: new Uint8Array([1, 2, 3]) }, // unknown: kept as is
    ],
    backingFile: "base image.qcow2",
  });
  setBackingFormat(h, "qcow2");
  const bytes = serializeHeader(h);
  strictEqual(bytes.length, 65536);
  const p = parseHeader(bytes);
  strictEqual(p.backingFile, "base image.qcow2");
  strictEqual(backingFormatOf(p), "qcow2");
  deepStrictEqual(p.extensions.map((e) => e.type), [
    0xe2792aca,
    QCOW2_EXT_MAGIC_FEATURE_TABLE,
    0x12345678,
  ]);
  deepStrictEqual([...p.extensions[2].data], [1, 2, 3]);
  for (
    const k of [
      "version",
      "clusterBits",
      "size",
      "l1Size",
      "l1TableOffset",
      "refcountTableOffset",
      "incompatibleFeatures",
      "compatibleFeatures",
      "refcountOrder",
      "headerLength",
    ] as const
  ) {
    strictEqual(p[k], h[k], k);
  }
  // Re-serializing the parsed header gives the same bytes.
  deepStrictEqual(serializeHeader(p), bytes);
});

Deno.test("format: version 2 header is 72 bytes with no v3 fields", () => {
  const bytes = serializeHeader(
    header({ version: 2, incompatibleFeatures: 0n, compatibleFeatures: 0n }),
  );
  const p = parseHeader(bytes);
  strictEqual(p.version, 2);
  strictEqual(p.headerLength, 72);
  strictEqual(p.refcountOrder, 4);
  ok(bytes.subarray(72, 200).every((b) => b === 0));
});

Deno.test("format: bad headers are refused with QEMU's words", () => {
  const good = serializeHeader(header());
  const bad = (f: (b: Uint8Array) => void, re: RegExp) => {
    const b = good.slice();
    f(b);
    throws(() => parseHeader(b), re);
  };
  bad((b) => (b[0] = 0), /not in qcow2 format/);
  bad((b) => (b[7] = 4), /Unsupported qcow2 version 4/);
  bad((b) => (b[23] = 8), /Unsupported cluster size: 2\^8/);
  bad((b) => (b[23] = 22), /Unsupported cluster size: 2\^22/);
  throws(() => parseHeader(good.subarray(0, 40)), /not in qcow2 format/);
});

Deno.test("format: feature name table encodes 48-byte entries", () => {
  const t = encodeFeatureTable(QCOW2_FEATURE_NAMES);
  strictEqual(t.length, 48 * QCOW2_FEATURE_NAMES.length);
  deepStrictEqual(decodeFeatureTable(t), [...QCOW2_FEATURE_NAMES]);
});

Deno.test("format: refcount entries of every width, packed as QEMU packs them", () => {
  for (let order = 0; order <= 6; order++) {
    const block = new Uint8Array(512);
    const n = (512 * 8) >> order;
    const max = maxRefcount(order);
    const want: number[] = [];
    let x = 12345;
    for (let i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      const v = order >= 5 ? x % 1000003 : x % (max + 1);
      want.push(v);
      setRefcount(block, i, order, v);
    }
    for (let i = 0; i < n; i++) {
      strictEqual(getRefcount(block, i, order), want[i], `order ${order} #${i}`);
    }
  }
  // 1-bit entries: least significant bit first; 16-bit: big-endian.
  const b = new Uint8Array(8);
  setRefcount(b, 0, 0, 1);
  setRefcount(b, 3, 0, 1);
  strictEqual(b[0], 0b1001);
  setRefcount(b, 1, 4, 0x1234);
  deepStrictEqual([...b.subarray(2, 4)], [0x12, 0x34]);
  const w = new Uint8Array(16);
  setRefcount(w, 1, 6, 2 ** 40 + 7);
  strictEqual(getRefcount(w, 1, 6), 2 ** 40 + 7);
});

Deno.test("format: compressed descriptors round trip for every cluster size", () => {
  for (let bits = 9; bits <= 21; bits++) {
    for (
      const [off, len] of [[0x50000, 721], [0x50301, 426], [2 ** 40 + 3, 2 ** bits - 1], [512, 1]]
    ) {
      const e = encodeCompressedDescriptor(off, len, bits);
      ok(e & QCOW_OFLAG_COMPRESSED);
      const d = decodeCompressedDescriptor(e, bits);
      strictEqual(d.offset, off);
      ok(d.size >= len, `bits ${bits}: stored ${d.size} covers ${len}`);
      strictEqual((d.offset + d.size) % 512, 0);
    }
  }
});

Deno.test("format: snapshot table round trip (8-aligned entries, 24 bytes of extra data)", () => {
  const snaps: Qcow2Snapshot[] = [
    {
      l1TableOffset: 0x70000,
      l1Size: 4,
      id: "1",
      name: "first",
      dateSec: 1700000000,
      dateNsec: 5,
      vmClockNsec: 123456789,
      vmStateSize: 0,
      diskSize: 1 << 20,
      icount: 0,
      extraUnknown: new Uint8Array(0),
      extraDataSize: 24,
    },
    {
      l1TableOffset: 0x80000,
      l1Size: 1,
      id: "12",
      name: "второй",
      dateSec: 1,
      dateNsec: 2,
      vmClockNsec: 3,
      vmStateSize: 2 ** 33,
      diskSize: 5 << 20,
      extraUnknown: new Uint8Array([9, 9]),
      extraDataSize: 26,
    },
  ];
  const bytes = serializeSnapshotTable(snaps);
  strictEqual(bytes.length % 8, 0);
  deepStrictEqual(parseSnapshotTable(bytes, 2), snaps);
  throws(() => parseSnapshotTable(bytes.subarray(0, 50), 2), /truncated/);
});

Deno.test("format: header fields past 112 bytes (a newer version's) are kept", () => {
  const h = header({
    headerLength: 120,
    unknownHeaderFields: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
  });
  const p = parseHeader(serializeHeader(h));
  strictEqual(p.headerLength, 120);
  deepStrictEqual([...p.unknownHeaderFields!], [1, 2, 3, 4, 5, 6, 7, 8]);
});
