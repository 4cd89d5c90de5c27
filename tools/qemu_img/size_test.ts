import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { cvtnum, sizeToStr, strtosz, toFixedC } from "./size.ts";
import type { QemuImgError } from "./cli.ts";

Deno.test("strtosz reads QEMU's size syntax", () => {
  strictEqual(strtosz("10G"), 10n << 30n);
  strictEqual(strtosz("1.5M"), 1572864n);
  strictEqual(strtosz("0x100"), 256n);
  strictEqual(strtosz(" 12"), 12n);
  strictEqual(strtosz("12b"), 12n);
  strictEqual(strtosz("1.k"), 1024n);
  strictEqual(strtosz("1.5"), "EINVAL");
  strictEqual(strtosz("1e3"), "EINVAL");
  strictEqual(strtosz("-1"), "EINVAL");
  strictEqual(strtosz("10X"), "EINVAL");
  strictEqual(strtosz("18E"), "ERANGE");
  strictEqual(strtosz("0x10k"), "EINVAL");
});

Deno.test("cvtnum gives qemu-img's two messages", () => {
  strictEqual(cvtnum("image size", "1M"), 1 << 20);
  throws(
    () => cvtnum("image size", "9E"),
    (e: QemuImgError) =>
      e.message === "Invalid image size specified. Must be between 0 and 9223372036854775807.",
  );
  throws(
    () => cvtnum("image size", "abc"),
    (e: QemuImgError) =>
      e.message.startsWith("Invalid image size specified. You may use k, M, G, T, P or E"),
  );
});

Deno.test("sizeToStr prints like size_to_str", () => {
  deepStrictEqual(
    [0, 1000, 1024, 4096, 331776, 1 << 30, 1572864, 123456789, 197120, 199680].map(sizeToStr),
    [
      "0 B",
      "0.977 KiB",
      "1 KiB",
      "4 KiB",
      "324 KiB",
      "1 GiB",
      "1.5 MiB",
      "118 MiB",
      "192 KiB",
      "195 KiB",
    ],
  );
});

Deno.test("toFixedC rounds exact ties to even like printf", () => {
  deepStrictEqual([3.125, 0.125, 2.5, 1.005, 12.375, 100].map((x) => toFixedC(x, 2)), [
    "3.12",
    "0.12",
    "2.50",
    "1.00",
    "12.38",
    "100.00",
  ]);
});
