import { deepStrictEqual, throws } from "node:assert/strict";
import { getopt, type QemuImgError } from "./cli.ts";

const LONG = [{ name: "output", arg: true, key: "output" }, {
  name: "shrink",
  arg: false,
  key: "shrink",
}];

Deno.test("getopt permutes operands, bundles flags and honours --", () => {
  deepStrictEqual(
    getopt(["x.img", "-qf", "raw", "--output=json", "1M", "--", "-5"], ":f:q", LONG),
    {
      opts: [["q", ""], ["f", "raw"], ["output", "json"]],
      rest: ["x.img", "1M", "-5"],
    },
  );
  deepStrictEqual(getopt(["--out", "json", "-fqcow2"], ":f:", LONG).opts, [["output", "json"], [
    "f",
    "qcow2",
  ]]);
});

Deno.test("getopt errors read as qemu-img's", () => {
  throws(
    () => getopt(["-5"], ":f:", LONG),
    (e: QemuImgError) =>
      e.message ===
        "qemu-img: unrecognized option '-5'\nTry 'qemu-img --help' for more information",
  );
  throws(
    () => getopt(["-f"], ":f:", LONG),
    (e: QemuImgError) => e.message.startsWith("qemu-img: missing argument for option '-f'"),
  );
});
