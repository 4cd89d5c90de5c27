; A boot sector: writes a marker sector to LBA 1 through the BIOS (INT 13h AH=03h, CHS 0/0/2),
; reads it back (AH=02h) into a second buffer, prints the read-back marker on COM1 and powers off.
bits 16
org 0x7c00

start:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7c00
  sti
  cld
  mov [drive], dl
  mov di, 0x9000           ; the sector to write: the marker, then zeros
  mov cx, 512
  xor al, al
  rep stosb
  mov si, payload
  mov di, 0x9000
  mov cx, payload_len
  rep movsb
  mov ax, 0x0301           ; write 1 sector
  mov cx, 0x0002           ; cylinder 0, sector 2
  xor dh, dh
  mov dl, [drive]
  mov bx, 0x9000
  int 0x13
  jc fail
  mov ax, 0x0201           ; read it back
  mov cx, 0x0002
  xor dh, dh
  mov dl, [drive]
  mov bx, 0x8000
  int 0x13
  jc fail
  mov si, 0x8000
  call puts
  jmp poweroff
fail:
  mov si, failmsg
  call puts
  jmp poweroff

%include "common.inc"

drive: db 0
failmsg: db "DEMU-DISK-FAIL", 13, 10, 0
payload: db "DEMU-DISK-WRITTEN", 13, 10, 0
payload_len equ $ - payload

times 510-($-$$) db 0
dw 0xaa55
