/**
 * The x87's FERR# on the PC (emu/hw/pc.ts): with CR0.NE clear, an unmasked x87 error reaches the
 * guest as IRQ 13 through the real PIC pair (vector = slave base + 5); the handler's write to port
 * 0xF0 clears the request, FNCLEX ends the error, and a later error interrupts again. A real-mode
 * nasm program runs on demu's CPU attached to the PC's machine (no BIOS runs).
 */

import { strictEqual } from "node:assert/strict";
import { Pc } from "../emu/hw/pc.ts";
import { Cpu } from "../emu/cpu/cpu.ts";
import { haveNasm } from "./guests/cpu/build.ts";

const nasm = haveNasm();
if (!nasm) console.warn("WARNING: nasm not found: FERR#/IRQ 13 PC test skipped");

const PROGRAM = `
        bits 16
        org 0x8000
        cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7000
        mov word [0x75 * 4], irq13
        mov word [0x75 * 4 + 2], 0
        mov eax, cr0
        and eax, ~0x20          ; NE clear: errors go out on FERR#
        mov cr0, eax
        sti
        fninit
        fldcw [cw]
        fld1
        fldz
        fdivp st1, st0          ; ZE pending
        fwait                   ; FERR# -> IRQ 13
        mov al, [count]
        mov [after1], al
        fld1
        fldz
        fdivp st1, st0
        fwait                   ; a second error, a second interrupt
        mov al, [count]
        mov [after2], al
        cli
        hlt
irq13:
        inc byte [count]
        push ax
        xor al, al
        out 0xf0, al            ; clear the FERR# latch
        fnclex
        mov al, 0x20
        out 0xa0, al            ; EOI slave and master
        out 0x20, al
        pop ax
        iret
cw:     dw 0x037b
count:  db 0
after1: db 0xff
after2: db 0xff
`;

Deno.test({
  name: "pc: x87 FERR# is IRQ 13 through the PIC, cleared by port 0xF0 (CR0.NE clear)",
  ignore: !nasm,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "demu-ferr-" });
    try {
      Deno.writeTextFileSync(`${dir}/p.asm`, PROGRAM);
      const r = new Deno.Command("nasm", {
        args: ["-f", "bin", "-o", `${dir}/p.bin`, `${dir}/p.asm`],
      }).outputSync();
      strictEqual(r.success, true, new TextDecoder().decode(r.stderr));
      const image = Deno.readFileSync(`${dir}/p.bin`);
      const pc = await Pc.create({
        ram: new Uint8Array(2 << 20),
        bios: new Uint8Array(128 << 10),
        vgaRom: null,
        vga: false,
        drives: [],
        serial: null,
        nographic: true,
        timeSource: null,
      });
      const m = pc.machine;
      // the PIC pair as a BIOS leaves it: master at 0x08, slave at 0x70, all unmasked
      for (const [cmd, data, base, cascade] of [[0x20, 0x21, 0x08, 4], [0xa0, 0xa1, 0x70, 2]]) {
        m.io.write(cmd, 1, 0x11);
        m.io.write(data, 1, base);
        m.io.write(data, 1, cascade);
        m.io.write(data, 1, 0x01);
        m.io.write(data, 1, 0x00);
      }
      m.ram.set(image, 0x8000);
      const cpu = new Cpu(m);
      cpu.setSegCache(1, 0, 0, 0xffff, 0x9b);
      cpu.eip = 0x8000;
      for (let k = 0; k < 100 && !cpu.halted; k++) cpu.run(10000);
      const at = (label: number) => m.ram[0x8000 + image.length - label];
      strictEqual(cpu.halted, true, "the program ran to its HLT");
      strictEqual(at(3), 2, "two IRQ 13 interrupts");
      strictEqual(at(2), 1, "the first error interrupted once");
      strictEqual(at(1), 2, "the second error interrupted again");
      strictEqual(m.hasInterrupt(), false);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
