/** Human-readable output shared by info and snapshot: the snapshot table and QObject dumps. */
import type { Qcow2SnapshotInfo } from "@demu/block";
import { qdictOrder, type QValue } from "./json.ts";
import { sizeToStr } from "./size.ts";

const pad2 = (n: number) => String(n).padStart(2, "0");

/** "%Y-%m-%d %H:%M:%S" in local time, as g_date_time_format prints it. */
export function localDate(sec: number): string {
  const d = new Date(sec * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** The header line of a snapshot table (bdrv_snapshot_dump(NULL)). */
export function snapshotHeader(): string {
  return "ID".padEnd(10) + "TAG".padEnd(17) + "VM SIZE".padStart(8) + "DATE".padStart(20) +
    "VM CLOCK".padStart(13) + "ICOUNT".padStart(11);
}

/** One row of a snapshot table. */
export function snapshotRow(sn: Qcow2SnapshotInfo): string {
  const secs = Math.floor(sn.vmClockNsec / 1e9);
  const clock = `${String(Math.floor(secs / 3600)).padStart(2, "0")}:${
    pad2(Math.floor(secs / 60) % 60)
  }:${pad2(secs % 60)}.${String(Math.floor(sn.vmClockNsec / 1e6) % 1000).padStart(3, "0")}`;
  const icount = sn.icount === undefined ? "" : String(sn.icount);
  return sn.id.padEnd(9) + " " + sn.name.padEnd(16) + " " + sizeToStr(sn.vmStateSize).padStart(8) +
    localDate(sn.dateSec).padStart(20) + clock.padStart(13) + icount.padStart(11);
}

/** The snapshot list as info and snapshot -l print it ("" when there are none). */
export function snapshotTable(snaps: Qcow2SnapshotInfo[]): string {
  if (!snaps.length) return "";
  return "Snapshot list:\n" + snapshotHeader() + "\n" +
    snaps.map((s) => snapshotRow(s) + "\n").join("");
}

/** A snapshot as the QAPI SnapshotInfo (JSON). */
export function snapshotJson(sn: Qcow2SnapshotInfo): QValue {
  return {
    id: sn.id,
    name: sn.name,
    "vm-state-size": sn.vmStateSize,
    "date-sec": sn.dateSec,
    "date-nsec": sn.dateNsec,
    "vm-clock-sec": Math.floor(sn.vmClockNsec / 1e9),
    "vm-clock-nsec": sn.vmClockNsec % 1e9,
    icount: sn.icount,
  };
}

/** dump_qobject(): nested dicts and lists, keys with dashes as spaces, 4 spaces per level. */
export function dumpQObject(indent: number, v: QValue): string {
  const pad = " ".repeat(indent * 4);
  if (Array.isArray(v)) {
    return v.map((e, i) => {
      const composite = typeof e === "object" && e !== null;
      return `${pad}[${i}]:${composite ? "\n" : " "}${dumpQObject(indent + 1, e)}`;
    }).join("");
  }
  if (typeof v === "object" && v !== null) {
    const keys = qdictOrder(Object.keys(v).filter((k) => v[k] !== undefined));
    return keys.map((k) => {
      const e = v[k]!;
      const composite = typeof e === "object" && e !== null;
      return `${pad}${k.replaceAll("-", " ")}:${composite ? "\n" : " "}${
        dumpQObject(indent + 1, e)
      }`;
    }).join("");
  }
  return `${v}\n`;
}
