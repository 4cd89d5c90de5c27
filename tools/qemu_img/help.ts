/** qemu-img --help: the command syntax of every subcommand (QEMU's interface) and what they mean. */
import type { Io } from "./cli.ts";

/** The version lines demu reports (the QEMU release whose behaviour it follows). */
export const VERSION = "qemu-img version 7.2.0 (demu)\n" +
  "demu's TypeScript qemu-img, compatible with QEMU 7.2's command line, output and images\n";

const SYNTAX = [
  "amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename",
  "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename",
  "check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename",
  "commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename",
  "compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2",
  "convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] output_filename",
  "create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]",
  "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output",
  "info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename",
  "map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename",
  "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]",
  "snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename",
  "rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename",
  "resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size",
];

const PARAMETERS = `
Parameters:
  filename, output_filename   an image file (raw or qcow2)
  fmt, output_fmt             image format: raw or qcow2 (probed from the file when not given)
  size                        bytes, with an optional binary suffix: k, M, G, T, P or E
  options                     comma-separated name=value format options; "-o help" lists them
  cache, src_cache            none, writeback, writethrough, directsync or unsafe
                              (convert writes its target with unsafe unless -t says otherwise)
  snapshot_param              snapshot.id=ID,snapshot.name=NAME or just an ID or NAME
  -c                          compress the target's clusters (qcow2)
  -u                          unsafe: create without opening the backing file; rebase by
                              rewriting the backing file name only
  -p                          show progress;  -q: quiet (errors only)
  -S                          zero runs at least this long are left unallocated (default 4k;
                              0 writes everything)
  -n                          convert into an existing target instead of creating it
  --output                    human or json
  check -r leaks|all          repair leaked clusters only, or every repairable error
  compare -s                  strict: sizes and allocation must match too
  snapshot -l|-c|-a|-d        list, create, apply or delete internal snapshots
  dd bs= count= skip= if= of= block size, blocks to copy, blocks to skip, input, output

Supported formats: raw qcow2
`;

/** Prints the help text. */
export function printHelp(io: Io): void {
  io.out(
    VERSION +
      "usage: qemu-img [standard options] command [command options]\n" +
      "QEMU disk image utility (demu)\n\n" +
      "    '-h', '--help'       display this help and exit\n" +
      "    '-V', '--version'    output version information and exit\n" +
      "    '-T', '--trace'      accepted for compatibility (no tracing)\n\n" +
      "Command syntax:\n" + SYNTAX.map((l) => `  ${l}\n`).join("") + PARAMETERS,
  );
}
