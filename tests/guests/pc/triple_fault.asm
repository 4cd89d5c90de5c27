; A boot sector that prints a marker, then triple-faults (an empty IDT, then INT3): the PC
; resets — or, with -no-reboot, the emulator exits.
bits 16
org 0x7c00

start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7c00
  mov si, msg
  call puts
  lidt [idtr]
  int3

%include "common.inc"

idtr: dw 0
      dd 0
msg: db "DEMU-TRIPLE-FAULT", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
