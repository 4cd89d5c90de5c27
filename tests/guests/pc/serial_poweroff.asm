; A boot sector: prints a marker on COM1 and powers the PC off through the PIIX4's ACPI PM1a
; control register (SLP_TYP 0 + SLP_EN, the S5 state of QEMU's pc machine), at the PM I/O base
; read from PCI 00:01.3 (PMBA, config 0x40).
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
  jmp poweroff

%include "common.inc"

msg: db "DEMU-BOOT-OK", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
