; A boot sector that jumps into device memory (the VGA window at 0xA000:0000). KVM cannot
; fetch instructions from MMIO: this is how a guest provokes a KVM internal error, which demu
; must report (exit reason, registers) and exit on instead of hanging.
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
  jmp 0xa000:0x0000

%include "common.inc"

msg: db "JUMPING-TO-MMIO", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
