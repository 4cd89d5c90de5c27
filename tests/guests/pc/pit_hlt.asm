; A boot sector: programs PIT channel 0 at 100 Hz, sleeps in STI;HLT until IRQ 0 has fired
; 20 times (the PIC as the BIOS left it: IRQ 0 at vector 8), prints the marker and powers off.
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
.sleep:
  sti
  hlt
  cmp word [ticks], 20
  jb .sleep
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
msg: db "DEMU-PIT-OK", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
