/**
 * Runs small looping programs on a bare CPU and prints the final state as JSON; cpu_jit_test.ts
 * runs it with the block compiler on every block and with it off and compares the two. The loops
 * exercise blocks that jump back to their own start (compiled as a loop), jumps forward inside
 * a block, a fault in a later turn, the run budget ending a loop (run(1000) each time), calls and
 * pushes, and flags carried from one turn into the next.
 */
import { Cpu, ramOnlyBus } from "../emu/cpu/cpu.ts";

interface Case {
  name: string;
  code: number[];
  regs: Record<number, number>;
  /** DS limit (a store past it faults: #GP, then with no IDT a triple fault). */
  dsLimit: number;
}

const CASES: Case[] = [
  {
    // mov [edi], eax; add edi, 4; inc eax; dec ecx; jnz top; hlt -- faults at EDI = 0x3000
    name: "store loop into a limit fault",
    code: [0x89, 0x07, 0x83, 0xc7, 0x04, 0x40, 0x49, 0x75, 0xf7, 0xf4],
    regs: { 0: 7, 1: 5000, 7: 0x1000 },
    dsLimit: 0x2fff,
  },
  {
    name: "store loop to its end",
    code: [0x89, 0x07, 0x83, 0xc7, 0x04, 0x40, 0x49, 0x75, 0xf7, 0xf4],
    regs: { 0: 7, 1: 3000, 7: 0x1000 },
    dsLimit: 0xfffff,
  },
  {
    // adc eax, ebx; add ebx, eax; dec ecx; jnz top; hlt -- CF from the last turn's add
    name: "carry from one turn into the next",
    code: [0x11, 0xd8, 0x01, 0xc3, 0x49, 0x75, 0xf9, 0xf4],
    regs: { 0: 0x9e3779b9 | 0, 1: 7000, 3: 0x7f4a7c15 },
    dsLimit: 0xfffff,
  },
  {
    // movzx edx, byte [esi]; add eax, edx; inc esi; cmp esi, edi; jb top; hlt
    name: "byte sum with a compare at the back edge",
    code: [0x0f, 0xb6, 0x16, 0x01, 0xd0, 0x46, 0x39, 0xfe, 0x72, 0xf6, 0xf4],
    regs: { 6: 0x2000, 7: 0x2000 + 9000 },
    dsLimit: 0xfffff,
  },
  {
    // mov edx, [esi]; add esi, 4; test edx, 1; jz skip; add eax, edx; inc ebx;
    // skip: dec ecx; jnz top; hlt -- a jump forward inside the loop's block
    name: "odd sum with a jump over two records",
    code: [0x8b, 0x16, 0x83, 0xc6, 0x04, 0xf7, 0xc2, 1, 0, 0, 0, 0x74, 0x03, 0x01, 0xd0, 0x43]
      .concat([0x49, 0x75, 0xed, 0xf4]),
    regs: { 1: 6000, 6: 0x2000 },
    dsLimit: 0xfffff,
  },
  {
    // test eax, 3; jnz skip; mov [edi], eax; skip: add edi, 4; inc eax; dec ecx; jnz top;
    // hlt -- the store after a skipped turn faults at the limit
    name: "skipped stores, then a limit fault",
    code: [0xa9, 3, 0, 0, 0, 0x75, 0x02, 0x89, 0x07, 0x83, 0xc7, 0x04, 0x40, 0x49, 0x75, 0xf0]
      .concat([0xf4]),
    regs: { 0: 1, 1: 9000, 7: 0x1000 },
    dsLimit: 0x4fff,
  },
  {
    // mov ebx, 3; top: add eax, ebx; test eax, 4; jz skip; inc edx; skip: mov [edi], eax;
    // add edi, 4; dec ecx; jnz top; hlt -- a loop whose head is not the block's start
    name: "loop after a first instruction, to its end",
    code: [0xbb, 3, 0, 0, 0, 0x01, 0xd8, 0xf7, 0xc0, 4, 0, 0, 0, 0x74, 0x01, 0x42, 0x89, 0x07]
      .concat([0x83, 0xc7, 0x04, 0x49, 0x75, 0xed, 0xf4]),
    regs: { 1: 5000, 7: 0x1000 },
    dsLimit: 0xfffff,
  },
  {
    name: "loop after a first instruction, into a limit fault",
    code: [0xbb, 3, 0, 0, 0, 0x01, 0xd8, 0xf7, 0xc0, 4, 0, 0, 0, 0x74, 0x01, 0x42, 0x89, 0x07]
      .concat([0x83, 0xc7, 0x04, 0x49, 0x75, 0xed, 0xf4]),
    regs: { 1: 5000, 7: 0x1000 },
    dsLimit: 0x3fff,
  },
  {
    // top: add eax, ecx; dec ecx; jz out; jmp top; out: hlt -- closed by the block's last jump
    name: "loop closed by a jmp",
    code: [0x01, 0xc8, 0x49, 0x74, 0x02, 0xeb, 0xf9, 0xf4],
    regs: { 1: 9000 },
    dsLimit: 0xfffff,
  },
  {
    // top: add eax, ecx; loop top; hlt -- closed by LOOP (a handler the compiler calls)
    name: "loop closed by LOOP",
    code: [0x01, 0xc8, 0xe2, 0xfc, 0xf4],
    regs: { 1: 9000 },
    dsLimit: 0xfffff,
  },
  {
    // top: push eax; call f; pop edx; add eax, edx; dec ecx; jnz top; hlt;
    // f: mov ebx, [esp+4]; inc ebx; mov [esp+4], ebx; ret -- the stack written out
    name: "calls and pushes on a flat stack",
    code: [0x50, 0xe8, 7, 0, 0, 0, 0x5a, 0x01, 0xd0, 0x49, 0x75, 0xf4, 0xf4]
      .concat([0x8b, 0x5c, 0x24, 0x04, 0x43, 0x89, 0x5c, 0x24, 0x04, 0xc3]),
    regs: { 0: 5, 1: 3000 },
    dsLimit: 0xfffff,
  },
  {
    // top: inc eax; cmp eax, ecx; jz out; mov [edi], eax; add edi, 4; jmp top; out: hlt -- a
    // fused compare-and-jump (two instructions, one record) before the store that faults
    name: "fused compare before a faulting store",
    code: [0x40, 0x39, 0xc8, 0x74, 0x07, 0x89, 0x07, 0x83, 0xc7, 0x04, 0xeb, 0xf4, 0xf4],
    regs: { 1: 5000, 7: 0x1000 },
    dsLimit: 0x2fff,
  },
];

const CODE = 0x40000;
const out: unknown[] = [];
for (const c of CASES) {
  const ram = new Uint8Array(1 << 20);
  for (let a = 0; a < 0x8000; a++) ram[0x2000 + a] = (a * 37 + (a >> 7)) & 0xff;
  ram.set(c.code, CODE);
  const cpu = new Cpu(ramOnlyBus(ram));
  cpu.reset();
  cpu.cr0 |= 1;
  cpu.setSegCache(1, 8, 0, 0xffffffff, 0xc09b);
  for (const s of [0, 2, 4, 5]) cpu.setSegCache(s, 16, 0, 0xffffffff, 0xc093);
  cpu.setSegCache(3, 24, 0, c.dsLimit, 0x4093);
  cpu.modeChanged();
  for (const [r, v] of Object.entries(c.regs)) cpu.r32[Number(r)] = v;
  cpu.r32[4] = 0x8000;
  cpu.eip = CODE;
  let exit = 0;
  for (let k = 0; k < 1000 && !cpu.halted; k++) {
    exit = cpu.run(1000);
    if (exit !== 0 && !cpu.halted) break; // shutdown (the triple fault)
  }
  let sum = 0;
  for (let a = 0; a < 0x10000; a++) sum = (sum * 31 + ram[a]) | 0;
  out.push({
    name: c.name,
    // (not the last run's exit: a compiled loop may overrun a run's budget before its HLT)
    halted: cpu.halted,
    shutdown: exit === 2,
    regs: [...cpu.r32.subarray(0, 8)],
    eip: cpu.eip,
    flags: cpu.getFlags(),
    instructions: cpu.instructions,
    ram: sum,
  });
}
console.log(JSON.stringify(out, null, 1));
