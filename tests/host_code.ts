/**
 * Native x86 code for differential tests: an executable page below 2 GiB (MAP_32BIT, so 32-bit
 * addressing reaches it) and a data page beside it; `fn.call(data.pointer)` runs the code with the
 * data page's address as its one argument (RDI in the SysV ABI).
 */
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  type Mapping,
  mmap,
  munmap,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "@demu/sys";

/** mmap(2): place the mapping in the first 2 GiB (x86-64). */
const MAP_32BIT = 0x40;

const def = { parameters: ["pointer"], result: "void" } as const;

export class HostCode {
  readonly code: Mapping;
  readonly data: Mapping;
  readonly fn: Deno.UnsafeFnPointer<typeof def>;

  constructor(codeBytes = 4096) {
    this.code = mmap(
      codeBytes,
      PROT_READ | PROT_WRITE | PROT_EXEC,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
    );
    this.data = mmap(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT);
    this.fn = new Deno.UnsafeFnPointer(
      this.code.pointer as Deno.PointerObject<typeof def>,
      def,
    );
  }

  /** Unmaps both pages. */
  close(): void {
    munmap(this.code);
    munmap(this.data);
  }
}
