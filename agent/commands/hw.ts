/**
 * CPUs and memory blocks through sysfs: guest-get/set-vcpus, guest-get/set-memory-blocks,
 * guest-get-memory-block-info. A change is written only when the state differs.
 */
import type { CommandDef } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";

const CPU_DIR = "/sys/devices/system/cpu";
const MEM_DIR = "/sys/devices/system/memory";

function readTrim(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** Writes text at offset 0 without truncating, as a sysfs attribute is written (pwrite). */
function pwriteText(path: string, text: string): void {
  const f = Deno.openSync(path, { write: true });
  try {
    f.writeSync(new TextEncoder().encode(text));
  } finally {
    f.close();
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The CPUs the kernel knows of (cpuN directories), in directory order as qemu-ga lists them. */
function cpuIds(): number[] {
  const ids: number[] = [];
  for (const e of Deno.readDirSync(CPU_DIR)) {
    const m = /^cpu(\d+)$/.exec(e.name);
    if (m) ids.push(Number(m[1]));
  }
  return ids;
}

function cpuState(id: number): { online: boolean; canOffline: boolean } {
  const v = readTrim(`${CPU_DIR}/cpu${id}/online`);
  // No "online" file: the CPU is always on (typically cpu0).
  return v === undefined ? { online: true, canOffline: false } : {
    online: v[0] !== "0",
    canOffline: true,
  };
}

function memoryBlocks(): number[] {
  const ids: number[] = [];
  try {
    for (const e of Deno.readDirSync(MEM_DIR)) {
      const m = /^memory(\d+)$/.exec(e.name);
      if (m) ids.push(Number(m[1]));
    }
  } catch (e) {
    throw new QgaError(`Can't open directory "${MEM_DIR}": ${errnoText(e)}`);
  }
  return ids;
}

export const hwCommands: CommandDef[] = [
  {
    name: "guest-get-vcpus",
    run: () =>
      cpuIds().map((id) => {
        const s = cpuState(id);
        return { online: s.online, "can-offline": s.canOffline, "logical-id": id };
      }),
  },
  {
    name: "guest-set-vcpus",
    args: {
      vcpus: {
        list: { struct: { "logical-id": "int", online: "bool", "*can-offline": "bool" } },
      },
    },
    run: (args) => {
      const list = args.vcpus as { "logical-id": number; online: boolean }[];
      let processed = 0;
      for (const v of list) {
        const id = Number(v["logical-id"]);
        const dir = `${CPU_DIR}/cpu${id}/`;
        try {
          if (id < 0 || !exists(dir)) {
            throw new QgaError(`open("${dir}"): No such file or directory`);
          }
          const s = cpuState(id);
          if (s.online !== v.online) {
            if (!s.canOffline) throw new QgaError(`logical processor #${id} can't be offlined`);
            try {
              pwriteText(`${dir}online`, v.online ? "1" : "0");
            } catch (e) {
              throw new QgaError(`pwrite("${dir}online"): ${errnoText(e)}`);
            }
          }
        } catch (e) {
          // Like qemu-ga: report how many were done; the error only if none were.
          if (processed > 0) return processed;
          throw e;
        }
        processed++;
      }
      return processed;
    },
  },
  {
    name: "guest-get-memory-blocks",
    run: () =>
      memoryBlocks().map((id) => {
        const state = readTrim(`${MEM_DIR}/memory${id}/state`);
        const removable = readTrim(`${MEM_DIR}/memory${id}/removable`);
        return {
          online: state === undefined || state.startsWith("online"),
          "can-offline": state !== undefined && removable === "1",
          "phys-index": id,
        };
      }),
  },
  {
    name: "guest-set-memory-blocks",
    args: {
      "mem-blks": {
        list: { struct: { "phys-index": "uint64", online: "bool", "*can-offline": "bool" } },
      },
    },
    run: (args) => {
      const list = args["mem-blks"] as { "phys-index": number | bigint; online: boolean }[];
      return list.map((b) => {
        const idx = b["phys-index"];
        const dir = `${MEM_DIR}/memory${idx}`;
        const state = readTrim(`${dir}/state`);
        if (state === undefined) {
          return { response: "not-found", "error-code": 2, "phys-index": idx };
        }
        const online = state.startsWith("online");
        if (online !== b.online) {
          // Whether the kernel lets the block go is its call: the write reports it.
          try {
            pwriteText(`${dir}/state`, b.online ? "online" : "offline");
          } catch (e) {
            const code = (e as { code?: string }).code === "EBUSY" ? 16 : 5;
            return { response: "operation-failed", "error-code": code, "phys-index": idx };
          }
        }
        return { response: "success", "phys-index": idx };
      });
    },
  },
  {
    name: "guest-get-memory-block-info",
    run: () => {
      const v = readTrim(`${MEM_DIR}/block_size_bytes`);
      if (v === undefined) {
        throw new QgaError(
          `open("${MEM_DIR}/block_size_bytes"): No such file or directory`,
        );
      }
      return { size: parseInt(v, 16) };
    },
  },
];
