; A boot sector that measures time: with PIT channel 0 at 100 Hz it counts loop iterations
; between consecutive timer interrupts, three times, and prints the counts in hex on COM1. On
; wall-clock time the counts vary from run to run; with -icount they must not.
bits 16
org 0x7c00

start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7c00
  mov word [8 * 4], irq0
  mov word [8 * 4 + 2], 0
  mov al, 0x34
  out 0x43, al
  mov ax, 11932
  out 0x40, al
  mov al, ah
  out 0x40, al
  in al, 0x21
  and al, 0xfe
  out 0x21, al
  sti
  mov bp, 3
.measure:
  mov ax, [ticks]
.sync:                         ; wait for the next tick edge
  cmp ax, [ticks]
  je .sync
  mov ax, [ticks]
  xor ecx, ecx
.count:                        ; count until the following one
  inc ecx
  cmp ax, [ticks]
  je .count
  mov eax, ecx
  call hex32
  dec bp
  jnz .measure
  cli
  mov si, nl
  call puts
  jmp poweroff

irq0:
  inc word [cs:ticks]
  push ax
  mov al, 0x20
  out 0x20, al
  pop ax
  iret

; hex32: prints EAX as 8 hex digits and a space.
hex32:
  mov cx, 8
.d:
  rol eax, 4
  push eax
  and al, 0x0f
  add al, '0'
  cmp al, '9'
  jbe .p
  add al, 7
.p:
  mov [digit], al
  mov si, digit
  push cx
  call puts
  pop cx
  pop eax
  loop .d
  mov si, space
  call puts
  ret

%include "common.inc"

ticks: dw 0
digit: db 0, 0
space: db " ", 0
nl:    db 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
