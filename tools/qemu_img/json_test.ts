import { strictEqual } from "node:assert/strict";
import { qdictOrder, toQemuJson } from "./json.ts";

Deno.test("QDict order matches qemu-img info --output=json", () => {
  // The order QEMU 7.2 prints for an ImageInfo with a backing file.
  const keys = [
    "filename",
    "format",
    "dirty-flag",
    "actual-size",
    "virtual-size",
    "cluster-size",
    "backing-filename",
    "full-backing-filename",
    "backing-filename-format",
    "format-specific",
  ];
  strictEqual(
    qdictOrder(keys).join(","),
    "backing-filename-format,virtual-size,filename,cluster-size,format,actual-size," +
      "format-specific,full-backing-filename,backing-filename,dirty-flag",
  );
});

Deno.test("pretty printing uses four-space indents and QEMU's empty containers", () => {
  strictEqual(
    toQemuJson({ a: [1, { b: true }], c: [] }),
    '{\n    "a": [\n        1,\n        {\n            "b": true\n        }\n    ],\n    "c": [\n    ]\n}',
  );
});
