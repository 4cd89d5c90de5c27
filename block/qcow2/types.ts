/** Public option and result shapes of the qcow2 driver, shared by qemu-img and the driver. */

/** What {@link Qcow2Format.info} reports (the format-specific part of qemu-img info). */
export interface Qcow2Info {
  clusterSize: number;
  compat: "0.10" | "1.1";
  compressionType: "zlib" | "zstd";
  lazyRefcounts: boolean;
  refcountBits: number;
  corrupt: boolean;
  extendedL2: boolean;
  /** The dirty bit is set (lazy refcounts in use and not cleanly closed). */
  dirty: boolean;
  virtualSize: number;
  backingFile?: string;
  backingFormat?: string;
  /** Header extensions by type, in file order (unknown ones included). */
  headerExtensions: { type: number; length: number }[];
  /** Raw feature masks. */
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
}

/** One internal snapshot, as qemu-img snapshot -l and info list it. */
export interface Qcow2SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  /** Recorded instruction count; absent when not recorded. */
  icount?: number;
  /** Virtual disk size when the snapshot was taken. */
  diskSize?: number;
}

/** Options of {@link createQcow2}, as qemu-img create -o spells them. */
export interface Qcow2CreateOptions {
  /** Virtual size in bytes; when absent, the backing file's size (an error without one). */
  size?: number;
  /** 512..2 MiB, a power of two; default 65536. */
  clusterSize?: number;
  /** "0.10" (v2) or "1.1" (v3, default). "v2"/"v3" accepted as aliases. */
  compat?: string;
  backingFile?: string;
  backingFormat?: string;
  lazyRefcounts?: boolean;
  preallocation?: "off" | "metadata" | "falloc" | "full";
  /** 1..64, a power of two; default 16. */
  refcountBits?: number;
  extendedL2?: boolean;
  compressionType?: "zlib" | "zstd";
  /** Refused: encryption is not supported. */
  encrypt?: boolean | string;
  /** Refused: external data files are not supported. */
  dataFile?: string;
  /** Do not open the backing file to check it or to take its size (qemu-img create -u). */
  unsafe?: boolean;
}

/** Options of {@link Qcow2Format.amend} (qemu-img amend -o). */
export interface Qcow2AmendOptions {
  compat?: string;
  lazyRefcounts?: boolean;
  refcountBits?: number;
  /** Changing these is refused with QEMU's message. */
  clusterSize?: number;
  compressionType?: "zlib" | "zstd";
  extendedL2?: boolean;
  backingFile?: string;
  backingFormat?: string;
  size?: number;
}

/** What {@link measureQcow2} returns (qemu-img measure). */
export interface Qcow2Measure {
  required: number;
  fullyAllocated: number;
  /** Bytes persistent bitmaps would need (demu copies none: 0). */
  bitmaps: number;
  /** Whether QEMU would print the bitmaps line (v3 target and a qcow2 source). */
  hasBitmaps: boolean;
}
