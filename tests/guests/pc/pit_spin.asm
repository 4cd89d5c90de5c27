; A boot sector: programs PIT channel 0 at 100 Hz, then spins (no HLT, no I/O: under KVM only
; a kick out of KVM_RUN lets demu inject the interrupts) until IRQ 0 has fired
; 20 times (IRQ 0 at vector 8, as the BIOS left the PIC), prints the marker and powers off.
bits 16
org 0x7c00

start:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7c00
  mov word [8 * 4], irq0
  mov word [8 * 4 + 2], 0
  mov al, 0x34             ; channel 0, lobyte/hibyte, mode 2
  out 0x43, al
  mov ax, 11932            ; 1193182 Hz / 100
  out 0x40, al
  mov al, ah
  out 0x40, al
  in al, 0x21
  and al, 0xfe             ; unmask IRQ 0
  out 0x21, al
  sti
.spin:
  cmp word [ticks], 20
  jb .spin
  cli
  mov si, msg
  call puts
  jmp poweroff

irq0:
  inc word [cs:ticks]
  push ax
  mov al, 0x20
  out 0x20, al
  pop ax
  iret

%include "common.inc"

ticks: dw 0
msg: db "DEMU-SPIN-OK", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
