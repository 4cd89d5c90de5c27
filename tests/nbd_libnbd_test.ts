/**
 * demu's qemu-nbd against the real libnbd tools and QEMU's NBD client, side by side with the real
 * qemu-nbd serving the same image:
 *
 * - nbdinfo --json (size, flags, block sizes, contexts), nbdinfo --map (base:allocation) and
 *   --map=qemu:allocation-depth print the same as against the real qemu-nbd, for raw with holes
 *   and zeros, qcow2 with zero clusters, and a qcow2 over a backing file; over TCP and a UNIX
 *   socket.
 * - nbdcopy export -> file gives exactly the bytes the real qemu-img reads from the image;
 *   nbdcopy file -> export writes them so the real qemu-img compares them identical and the real
 *   qemu-img check passes.
 * - the real qemu-img (info, map, convert) and qemu-io (writes, pattern reads) using nbd:// on
 *   demu's server.
 */
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import {
  DEMU_QEMU_NBD,
  freePort,
  peers,
  type Ran,
  Rng,
  run,
  type Server,
  startDemuNbd,
  startServer,
  tempDir,
} from "../tools/qemu_nbd/testing.ts";

const ignore = !peers("qemu-nbd", "qemu-img", "qemu-io", "nbdinfo", "nbdcopy");
const MiB = 1 << 20;

function must(r: Ran, what: string): string {
  strictEqual(r.code, 0, `${what} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function qemuIo(fmt: string, image: string, cmds: string[]): Promise<void> {
  must(await run("qemu-io", ["-f", fmt, ...cmds.flatMap((c) => ["-c", c]), image]), "qemu-io");
}

/** The images every case serves, built by the real tools. */
async function buildImages(dir: string): Promise<Record<string, { path: string; fmt: string }>> {
  const raw = `${dir}/disk.raw`;
  await Deno.writeFile(raw, new Uint8Array(0));
  await Deno.truncate(raw, 16 * MiB);
  await qemuIo("raw", raw, [
    "write -P 0x11 0 64k",
    "write -P 0x22 1M 4k",
    "write -P 0 4M 64k", // explicit zeros: data, not a hole
    "write -P 0x33 8M 1M",
    "write -P 0x44 16380k 4k",
  ]);
  const base = `${dir}/base.qcow2`;
  must(await run("qemu-img", ["create", "-q", "-f", "qcow2", base, "16M"]), "create");
  await qemuIo("qcow2", base, [
    "write -P 0xaa 0 128k",
    "write -z 2M 64k",
    "write -P 0xbb 5M 1M",
    "write -P 0xbc 12M 64k",
    "discard 12M 64k",
  ]);
  const top = `${dir}/top.qcow2`;
  must(
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top]),
    "create top",
  );
  await qemuIo("qcow2", top, [
    "write -P 0xcc 64k 64k",
    "write -z 5M 64k",
    "write -P 0xdd 10M 64k",
    "write -z 14M 1M",
  ]);
  return {
    raw: { path: raw, fmt: "raw" },
    qcow2: { path: base, fmt: "qcow2" },
    backing: { path: top, fmt: "qcow2" },
  };
}

interface Pair {
  demu: Server;
  real: Server;
  demuUri: string;
  realUri: string;
}

/** Serves one image read-only from demu's and the real qemu-nbd, over tcp or unix. */
async function servePair(
  dir: string,
  img: { path: string; fmt: string },
  transport: "tcp" | "unix",
  extra: string[] = ["-r"],
): Promise<Pair> {
  const common = ["-t", "-e", "4", "-f", img.fmt, "-x", "exp", "-D", "an export", "-A", ...extra];
  const servers: Server[] = [];
  const uris: string[] = [];
  for (const who of ["demu", "real"]) {
    let at: { port?: number; socket?: string };
    let addr: string[];
    if (transport === "tcp") {
      at = { port: freePort() };
      addr = ["-b", "127.0.0.1", "-p", String(at.port)];
      uris.push(`nbd://127.0.0.1:${at.port}/exp`);
    } else {
      at = { socket: `${dir}/${who}.sock` };
      addr = ["-k", at.socket!];
      uris.push(`nbd+unix:///exp?socket=${at.socket}`);
    }
    const args = [...common, ...addr, img.path];
    servers.push(
      who === "demu" ? await startDemuNbd(args, at) : await startServer("qemu-nbd", args, at),
    );
  }
  return { demu: servers[0], real: servers[1], demuUri: uris[0], realUri: uris[1] };
}

async function stopPair(p: Pair): Promise<void> {
  await Promise.all([p.demu.stop(), p.real.stop()]);
}

/** nbdinfo --json without the fields that name the address. */
async function infoJson(uri: string): Promise<unknown> {
  const j = JSON.parse(must(await run("nbdinfo", ["--json", uri]), "nbdinfo"));
  for (const e of j.exports) delete e.uri;
  return j;
}

for (const transport of ["tcp", "unix"] as const) {
  Deno.test({
    name: `libnbd reads demu's qemu-nbd over ${transport} as it reads the real one`,
    ignore,
    async fn() {
      const [dir, cleanup] = await tempDir("demu-nbd-libnbd-");
      try {
        const images = await buildImages(dir);
        for (const [name, img] of Object.entries(images)) {
          const p = await servePair(dir, img, transport);
          try {
            deepStrictEqual(await infoJson(p.demuUri), await infoJson(p.realUri), `${name}: info`);
            for (const map of ["--map", "--map=qemu:allocation-depth"]) {
              const d = must(await run("nbdinfo", [map, p.demuUri]), "nbdinfo map");
              const r = must(await run("nbdinfo", [map, p.realUri]), "nbdinfo map");
              strictEqual(d, r, `${name}: nbdinfo ${map}`);
            }
            // nbdcopy export -> file, byte for byte what the real qemu-img reads.
            const expect = `${dir}/${name}.expect`;
            must(
              await run("qemu-img", ["convert", "-f", img.fmt, "-O", "raw", img.path, expect]),
              "convert",
            );
            const got = `${dir}/${name}.got`;
            must(await run("nbdcopy", [p.demuUri, got]), "nbdcopy out");
            const expectBytes = await Deno.readFile(expect);
            deepStrictEqual(await Deno.readFile(got), expectBytes, `${name}: nbdcopy bytes`);
            // The real QEMU client: qemu-img map through NBD agrees with the real server's.
            const dm = must(
              await run("qemu-img", ["map", "--output=json", "-f", "raw", p.demuUri]),
              "map",
            );
            const rm = must(
              await run("qemu-img", ["map", "--output=json", "-f", "raw", p.realUri]),
              "map",
            );
            strictEqual(dm, rm, `${name}: qemu-img map over nbd`);
          } finally {
            await stopPair(p);
          }
        }
        // Writable exports advertise the same flags too (trim, zeroes, multi-conn); -o exports
        // the image from an offset on.
        const variants = [[], ["-e", "1"], ["--discard=unmap", "-e", "0"], ["-r", "-o", "1052672"]];
        for (const extra of variants) {
          const p = await servePair(dir, images.raw, transport, extra);
          try {
            deepStrictEqual(await infoJson(p.demuUri), await infoJson(p.realUri), `rw ${extra}`);
            const d = must(await run("nbdinfo", ["--map", p.demuUri]), "nbdinfo map");
            strictEqual(d, must(await run("nbdinfo", ["--map", p.realUri]), "map"), `${extra}`);
          } finally {
            await stopPair(p);
          }
        }
      } finally {
        await cleanup();
      }
    },
  });
}

Deno.test({
  name: "nbdcopy and the real qemu-io/qemu-img write into demu's qemu-nbd (raw and qcow2)",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-write-");
    try {
      const rng = new Rng(7);
      const src = `${dir}/src.raw`;
      const data = new Uint8Array(8 * MiB);
      // Random data with runs of zeros, so the copy has both.
      for (let off = 0; off < data.length; off += 256 * 1024) {
        if (rng.below(3)) data.set(rng.bytes(256 * 1024), off);
      }
      await Deno.writeFile(src, data);
      for (const [fmt, transport] of [["raw", "unix"], ["qcow2", "tcp"]] as const) {
        const target = `${dir}/target.${fmt}`;
        must(await run("qemu-img", ["create", "-q", "-f", fmt, target, "8M"]), "create");
        const at = transport === "tcp" ? { port: freePort() } : { socket: `${dir}/w.sock` };
        const addr = at.port ? ["-b", "127.0.0.1", "-p", String(at.port)] : ["-k", at.socket!];
        const uri = at.port ? `nbd://127.0.0.1:${at.port}/` : `nbd+unix:///?socket=${at.socket}`;
        const s = await startDemuNbd(["-t", "-e", "0", "-f", fmt, ...addr, target], at);
        try {
          must(await run("nbdcopy", [src, uri]), "nbdcopy in");
          must(
            await run("qemu-io", [
              "-f",
              "raw",
              "-c",
              "write -P 0x5c 7M 64k",
              "-c",
              "read -P 0x5c 7M 64k",
              uri,
            ]),
            "qemu-io over nbd",
          );
          data.fill(0x5c, 7 * MiB, 7 * MiB + 65536);
          const info = must(await run("qemu-img", ["info", "-f", "raw", uri]), "info");
          ok(info.includes("virtual size: 8 MiB (8388608 bytes)"), info);
          const back = `${dir}/back.raw`;
          must(await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", uri, back]), "convert");
          deepStrictEqual(await Deno.readFile(back), data, `${fmt}: bytes read back`);
        } finally {
          await s.stop();
        }
        await Deno.writeFile(src, data);
        must(await run("qemu-img", ["compare", "-f", "raw", "-F", fmt, src, target]), "compare");
        if (fmt === "qcow2") {
          must(await run("qemu-img", ["check", "-f", "qcow2", target]), "check");
        }
      }
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name: "qemu-nbd -l exports an internal snapshot read-only, as the real one does",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-snap-");
    try {
      const img = `${dir}/s.qcow2`;
      must(await run("qemu-img", ["create", "-q", "-f", "qcow2", img, "4M"]), "create");
      await qemuIo("qcow2", img, ["write -P 0x11 0 1M", "write -z 2M 64k"]);
      must(await run("qemu-img", ["snapshot", "-c", "before", img]), "snapshot");
      await qemuIo("qcow2", img, ["write -P 0x22 0 2M", "discard 3M 64k"]);
      const outs: Uint8Array[] = [];
      const maps: string[] = [];
      for (const who of ["demu", "real"]) {
        const sock = `${dir}/${who}.sock`;
        const args = ["-t", "-f", "qcow2", "-l", "snapshot.name=before", "-k", sock, img];
        const s = who === "demu"
          ? await startDemuNbd(args, { socket: sock })
          : await startServer("qemu-nbd", args, { socket: sock });
        try {
          const uri = `nbd+unix:///?socket=${sock}`;
          const j = JSON.parse(must(await run("nbdinfo", ["--json", uri]), "info"));
          strictEqual(j.exports[0].is_read_only, true);
          must(await run("nbdcopy", [uri, `${dir}/${who}.raw`]), "nbdcopy");
          outs.push(await Deno.readFile(`${dir}/${who}.raw`));
          maps.push(must(await run("nbdinfo", ["--map", uri]), "map"));
        } finally {
          await s.stop();
        }
      }
      deepStrictEqual(outs[0], outs[1]);
      ok(outs[0].subarray(0, MiB).every((b) => b === 0x11));
      strictEqual(maps[0], maps[1]);
      // The image itself is untouched.
      await qemuIo("qcow2", img, ["read -P 0x22 0 2M"]);
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name: "--discard=unmap and --detect-zeroes leave the same maps as the real qemu-nbd",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-zero-");
    try {
      for (const fmt of ["raw", "qcow2"]) {
        for (
          const extra of [[], ["--discard=unmap"], ["--discard=unmap", "--detect-zeroes=unmap"]]
        ) {
          const maps: string[] = [];
          for (const who of ["demu", "real"]) {
            const img = `${dir}/${who}.${fmt}`;
            must(await run("qemu-img", ["create", "-q", "-f", fmt, img, "4M"]), "create");
            await qemuIo(fmt, img, ["write -P 0x66 0 4M"]);
            const sock = `${dir}/${who}.sock`;
            const args = ["-t", "-f", fmt, ...extra, "-k", sock, img];
            const s = who === "demu"
              ? await startDemuNbd(args, { socket: sock })
              : await startServer("qemu-nbd", args, { socket: sock });
            try {
              const uri = `nbd+unix:///?socket=${sock}`;
              must(
                await run("qemu-io", [
                  "-f",
                  "raw",
                  "-c",
                  "write -P 0 0 1M",
                  "-c",
                  "discard 1M 1M",
                  "-c",
                  "write -z -u 2M 512k",
                  "-c",
                  "write -z 3M 512k",
                  uri,
                ]),
                "qemu-io",
              );
              maps.push(must(await run("nbdinfo", ["--map", uri]), "map"));
            } finally {
              await s.stop();
            }
          }
          strictEqual(maps[0], maps[1], `${fmt} ${extra.join(" ")}`);
        }
      }
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name: "qemu-nbd --fork returns once serving, --pid-file names it, -s leaves the image alone",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-fork-");
    try {
      const img = `${dir}/d.raw`;
      const data = new Uint8Array(2 * MiB).fill(0x31);
      await Deno.writeFile(img, data);
      const sock = `${dir}/f.sock`;
      const pidFile = `${dir}/f.pid`;
      // The forked server keeps the caller's stderr (as QEMU's does), so the parent is waited
      // for without capturing its output pipes.
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          DEMU_QEMU_NBD,
          "--fork",
          "--pid-file",
          pidFile,
          "-s",
          "-t",
          "-f",
          "raw",
          "-k",
          sock,
          img,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      strictEqual(r.code, 0);
      const pid = Number((await Deno.readTextFile(pidFile)).trim());
      ok(pid > 0);
      try {
        const uri = `nbd+unix:///?socket=${sock}`;
        must(
          await run("qemu-io", [
            "-f",
            "raw",
            "-c",
            "write -P 0x32 0 64k",
            "-c",
            "read -P 0x32 0 64k",
            "-c",
            "read -P 0x31 64k 64k",
            uri,
          ]),
          "qemu-io through the snapshot",
        );
      } finally {
        Deno.kill(pid, "SIGTERM");
      }
      // The server removes its socket and pid file on the way out.
      for (let i = 0; i < 100; i++) {
        try {
          await Deno.stat(pidFile);
          await new Promise((res) => setTimeout(res, 50));
        } catch {
          break;
        }
      }
      await rejects(Deno.stat(pidFile));
      await rejects(Deno.stat(sock));
      deepStrictEqual(await Deno.readFile(img), data, "-s wrote nothing to the image");
    } finally {
      await cleanup();
    }
  },
});
