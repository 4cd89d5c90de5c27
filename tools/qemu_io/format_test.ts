import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { cvtnum, cvtstr, dumpBuffer, fixed, report, timestr } from "./format.ts";

Deno.test("cvtstr prints sizes as qemu-io does", () => {
  strictEqual(cvtstr(0), "0 bytes");
  strictEqual(cvtstr(512), "512 bytes");
  strictEqual(cvtstr(65536), "64 KiB");
  strictEqual(cvtstr(4608), "4.500 KiB");
  strictEqual(cvtstr(0x1e0000), "1.875 MiB");
  strictEqual(cvtstr(0x210000), "2.062 MiB"); // a tie, rounded to even as glibc does
  strictEqual(cvtstr(2 ** 30), "1 GiB");
  strictEqual(cvtstr(3 * 2 ** 40), "3 TiB");
});

Deno.test("fixed rounds exact ties to even and everything else to nearest", () => {
  strictEqual(fixed(2.0625, 3), "2.062");
  strictEqual(fixed(2.0635, 3), "2.063"); // 2.06349999... as a double: not a tie
  strictEqual(fixed(0.125, 2), "0.12");
  strictEqual(fixed(0.375, 2), "0.38");
  strictEqual(fixed(1.5, 0), "2");
  strictEqual(fixed(2.5, 0), "2");
});

Deno.test("timestr: seconds under one, h:mm:ss.cc above or when asked", () => {
  strictEqual(timestr(0.001), "00.00 sec");
  strictEqual(timestr(0.5), "00.50 sec");
  strictEqual(timestr(61.25), "0:01:01.25");
  strictEqual(timestr(0.001, true), "0:00:00.00");
});

Deno.test("report: the two lines, or the -C line", () => {
  strictEqual(
    report("read", 0.5, 0, 65536, 65536, 1, false),
    "read 65536/65536 bytes at offset 0\n64 KiB, 1 ops; 00.50 sec (128 KiB/sec and 2.0000 ops/sec)\n",
  );
  strictEqual(report("wrote", 0.5, 0, 512, 512, 1, true), "512,1,0:00:00.50,1024.000,2.000\n");
});

Deno.test("cvtnum takes suffixes and refuses junk", () => {
  deepStrictEqual(
    ["0", "512", "4k", "1M", "1.5k", "2G", "1b", "0x10"].map(cvtnum),
    [0, 512, 4096, 1048576, 1536, 2147483648, 1, 16],
  );
  deepStrictEqual(["xx", "-1", "1P5", "", "1.5"].map(cvtnum), [
    "EINVAL",
    "EINVAL",
    "EINVAL",
    "EINVAL",
    "EINVAL",
  ]);
  strictEqual(cvtnum("16E"), "ERANGE");
});

Deno.test("dumpBuffer: offsets, hex and printable text, short last line unpadded", () => {
  const b = new Uint8Array(20).fill(0x41);
  b[0] = 0;
  strictEqual(
    dumpBuffer(b, 0x8000),
    "00008000:  00 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41  .AAAAAAAAAAAAAAA\n" +
      "00008010:  41 41 41 41  AAAA\n",
  );
});
