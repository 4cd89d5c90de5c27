; A boot sector: prints "KEYS:" on COM1, then echoes each key read through the BIOS keyboard
; service (INT 16h AH=00h: ASCII from the PS/2 keyboard's scancodes) until Enter, then powers off.
bits 16
org 0x7c00

start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7c00
  sti
  mov si, msg
  call puts
.key:
  xor ah, ah
  int 0x16
  cmp al, 13
  je .done
  mov [ch1], al
  mov si, ch1
  call puts
  jmp .key
.done:
  mov si, nl
  call puts
  jmp poweroff

%include "common.inc"

msg: db "KEYS:", 0
ch1: db 0, 0
nl:  db 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
