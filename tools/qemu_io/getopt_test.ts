import { deepStrictEqual, throws } from "node:assert/strict";
import { getopt, GetoptError } from "./getopt.ts";

const LONG = [{ name: "format", arg: true, key: "f" }, { name: "read-only", arg: false, key: "r" }];

Deno.test("getopt: clusters, attached and separate arguments, permuted operands", () => {
  deepStrictEqual(getopt(["-rq", "-Pabc", "0", "-f", "raw", "64k"], "rqP:f:"), {
    opts: [["r", ""], ["q", ""], ["P", "abc"], ["f", "raw"]],
    operands: ["0", "64k"],
  });
  deepStrictEqual(getopt(["--format=qcow2", "--read-only", "--form", "raw", "img"], "f:r", LONG), {
    opts: [["f", "qcow2"], ["r", ""], ["f", "raw"]],
    operands: ["img"],
  });
  deepStrictEqual(getopt(["-r", "--", "-f"], "rf:"), { opts: [["r", ""]], operands: ["-f"] });
});

Deno.test("getopt: glibc's messages", () => {
  throws(() => getopt(["-z"], "r"), new GetoptError("invalid option -- 'z'"));
  throws(() => getopt(["-f"], "f:"), new GetoptError("option requires an argument -- 'f'"));
  throws(() => getopt(["--bogus"], "", LONG), new GetoptError("unrecognized option '--bogus'"));
  throws(
    () => getopt(["--format"], "", LONG),
    new GetoptError("option '--format' requires an argument"),
  );
});
