/**
 * The qcow2 driver (in process, no CLI around it) beside the real QEMU tools, same machine, same
 * run: a 512 MiB sequential copy of random data into a new qcow2 image (qemu-img convert, whose
 * target cache mode is unsafe: no flushes), sequential 2 MiB reads of it back, and 100000 4 KiB
 * requests as `qemu-img bench` issues them (reads of an allocated image, writes, and allocating
 * writes into an empty one). QEMU's times include its process startup, which is small.
 */
import { createQcow2, FileProtocol, Qcow2Format } from "../../block/mod.ts";

const SIZE = 512 << 20;
const COUNT = 100000;

async function have(cmd: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

async function timedCmd(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) {
    const d = new TextDecoder();
    throw new Error(
      `${cmd} ${args.join(" ")} (${r.code}): ${d.decode(r.stdout)}${d.decode(r.stderr)}`,
    );
  }
  return (performance.now() - t0) / 1000;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** The better of two runs of each side, in ABBA order (the machine is shared and noisy). */
async function pair(
  real: () => Promise<number>,
  demu: () => Promise<number>,
): Promise<[number, number]> {
  const r1 = await real();
  const d1 = await demu();
  const d2 = await demu();
  const r2 = await real();
  return [Math.min(r1, r2), Math.min(d1, d2)];
}

/** An image opened as qemu-img convert opens its target: flushes do not reach the disk. */
async function openUnsafe(path: string): Promise<Qcow2Format> {
  const f = FileProtocol.open(path);
  f.flush = () => Promise.resolve();
  return await Qcow2Format.open(f, {});
}

/** 4 KiB requests at the offsets qemu-img bench uses (step = size, wrapping at the end). */
async function requests(img: Qcow2Format, write: boolean, step: number): Promise<void> {
  const buf = new Uint8Array(4096).fill(0xa5);
  const size = await img.length();
  let off = 0;
  for (let i = 0; i < COUNT; i++) {
    if (write) await img.write(off, buf);
    else await img.read(off, buf);
    off += step;
    if (off + 4096 > size) off = 0;
  }
}

export async function bench(_filters: string[] = []): Promise<void> {
  if (!(await have("qemu-img"))) {
    console.error("WARNING: qemu-img (Debian qemu-utils) is not installed: qcow2 bench skipped");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "demu-bench-qcow2" });
  try {
    const src = `${dir}/src.raw`;
    const f = await Deno.open(src, { write: true, create: true });
    const chunk = new Uint8Array(1 << 20);
    for (let off = 0; off < SIZE; off += chunk.length) {
      for (let i = 0; i < chunk.length; i += 65536) {
        crypto.getRandomValues(chunk.subarray(i, i + 65536));
      }
      await f.write(chunk);
    }
    f.close();
    const rows: [string, number, number, number][] = [];
    const rm = (p: string) => Deno.remove(p).catch(() => {});

    const [real1, demu1] = await pair(
      async () => {
        await rm(`${dir}/r.qcow2`);
        return await timedCmd("qemu-img", [
          "convert",
          "-f",
          "raw",
          "-O",
          "qcow2",
          src,
          `${dir}/r.qcow2`,
        ]);
      },
      async () => {
        await rm(`${dir}/d.qcow2`);
        return await timed(async () => {
          await createQcow2(`${dir}/d.qcow2`, { size: SIZE });
          const img = await openUnsafe(`${dir}/d.qcow2`);
          const raw = FileProtocol.open(src, { readOnly: true });
          const buf = new Uint8Array(2 << 20);
          for (let off = 0; off < SIZE; off += buf.length) {
            raw.readSync(off, buf);
            await img.write(off, buf);
          }
          await raw.close();
          await img.close();
        });
      },
    );
    rows.push(["512 MiB sequential write (convert -O qcow2)", real1, demu1, 1.25]);

    const [real2, demu2] = await pair(
      async () => {
        await rm(`${dir}/r.raw`);
        return await timedCmd("qemu-img", [
          "convert",
          "-O",
          "raw",
          `${dir}/r.qcow2`,
          `${dir}/r.raw`,
        ]);
      },
      async () => {
        await rm(`${dir}/d.raw`);
        return await timed(async () => {
          const img = await Qcow2Format.open(
            FileProtocol.open(`${dir}/d.qcow2`, { readOnly: true }),
            {
              readOnly: true,
            },
          );
          const out = FileProtocol.open(`${dir}/d.raw`, { create: true });
          out.flush = () => Promise.resolve();
          const buf = new Uint8Array(2 << 20);
          for (let off = 0; off < SIZE; off += buf.length) {
            await img.read(off, buf);
            out.writeSync(off, buf);
          }
          await out.close();
          await img.close();
        });
      },
    );
    await rm(`${dir}/r.raw`);
    await rm(`${dir}/d.raw`);
    rows.push(["512 MiB sequential read (convert -O raw)", real2, demu2, 1.5]);

    for (const write of [false, true]) {
      const [real, demu] = await pair(
        () =>
          timedCmd("qemu-img", [
            "bench",
            "-c",
            String(COUNT),
            "-s",
            "4k",
            ...(write ? ["-w"] : []),
            `${dir}/r.qcow2`,
          ]),
        () =>
          timed(async () => {
            const img = await Qcow2Format.open(FileProtocol.open(`${dir}/d.qcow2`), {});
            await requests(img, write, 4096);
            await img.close();
          }),
      );
      rows.push([`bench -c ${COUNT} -s 4k ${write ? "writes" : "reads"}`, real, demu, 1.5]);
    }
    const [real5, demu5] = await pair(
      async () => {
        await rm(`${dir}/e1.qcow2`);
        await createQcow2(`${dir}/e1.qcow2`, { size: 1 << 30 });
        return await timedCmd("qemu-img", [
          "bench",
          "-c",
          String(COUNT),
          "-s",
          "4k",
          "-S",
          "65536",
          "-w",
          `${dir}/e1.qcow2`,
        ]);
      },
      async () => {
        await rm(`${dir}/e2.qcow2`);
        await createQcow2(`${dir}/e2.qcow2`, { size: 1 << 30 });
        return await timed(async () => {
          const img = await Qcow2Format.open(FileProtocol.open(`${dir}/e2.qcow2`), {});
          await requests(img, true, 65536);
          await img.close();
        });
      },
    );
    rows.push([`bench -c ${COUNT} -s 4k -S 64k allocating writes`, real5, demu5, 1.5]);

    console.log("qcow2 driver (in process) beside QEMU 7.2:");
    for (const [name, real, demu, target] of rows) {
      const ratio = demu / real;
      console.log(
        `  ${name.padEnd(48)} qemu ${real.toFixed(2)} s  demu ${demu.toFixed(2)} s  ` +
          `${ratio.toFixed(2)}x (target ${target}x) ${ratio <= target ? "ok" : "SLOW"}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await bench(Deno.args);
