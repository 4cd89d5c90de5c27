; A boot sector that drives a virtio-blk disk as a legacy (pre-1.0) driver: finds 1AF4:1001 on
; PCI bus 0, resets it, accepts no features, lays out queue 0 by page frame number, then posts
; three chains: write sector 1 (512 bytes of 'V'); once it is done, read it back and flush
; together. It polls the used ring (reading the ISR meanwhile), checks the status bytes and the
; data, prints a marker on COM1 and powers the PC off.
bits 16
org 0x7c00

Q_SEG equ 0x1000        ; queue 0 at 0x10000: desc (256 x 16), avail at +0x1000, used at +0x2000
BUF equ 0x4000          ; request area at Q_SEG:0x4000 (0x14000)

start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7c00
  mov ecx, 0x80000000
.scan:
  mov eax, ecx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  cmp eax, 0x10011af4
  je .found
  add ecx, 0x800
  cmp ecx, 0x80010000
  jb .scan
  mov si, notfound
  jmp finish
.found:
  lea eax, [ecx + 0x10]
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  and ax, 0xfffc
  mov bp, ax
  lea dx, [bp + 18]       ; reset, ACKNOWLEDGE, DRIVER
  mov al, 0
  out dx, al
  mov al, 1
  out dx, al
  mov al, 3
  out dx, al
  lea dx, [bp + 4]        ; no features
  xor eax, eax
  out dx, eax
  ; Zero the ring and request pages.
  mov bx, Q_SEG
  mov es, bx
  cld
  xor di, di
  mov cx, 0x2800
  rep stosw
  lea dx, [bp + 14]       ; queue 0 ...
  out dx, ax
  lea dx, [bp + 8]        ; ... at PFN 0x10
  mov eax, 0x10
  out dx, eax
  lea dx, [bp + 18]
  mov al, 7               ; DRIVER_OK
  out dx, al
  ; Headers: OUT sector 1 at +0, IN sector 1 at +0x10, FLUSH at +0x20.
  mov byte [es:BUF + 0x00], 1
  mov byte [es:BUF + 0x08], 1
  mov byte [es:BUF + 0x18], 1
  mov byte [es:BUF + 0x20], 4
  ; Data to write: 512 x 'V' at +0x200; status bytes at +0x400..0x402 (0xFF until answered).
  mov di, BUF + 0x200
  mov al, 'V'
  mov cx, 512
  rep stosb
  mov dword [es:BUF + 0x400], 0xffffffff
  ; Descriptors (addr, len, flags, next), built by a table walk.
  mov si, descs
  xor di, di
  mov cx, 8
.d:
  lodsw                   ; offset in the request area
  movzx eax, ax
  add eax, 0x10000 + BUF
  stosd
  xor eax, eax
  stosd
  lodsw                   ; length
  stosd
  lodsw                   ; flags | next << 16
  stosw
  lodsw
  stosw
  loop .d
  ; The write first (requests in flight may complete in any order), then the read and the
  ; flush: avail ring 0, 3, 6.
  mov word [es:0x1006], 3
  mov word [es:0x1008], 6
  mov bx, 1
  call kick_wait
  mov bx, 3
  call kick_wait
  ; All three OK, and the data read back equals what was written.
  mov si, bad
  cmp dword [es:BUF + 0x400], 0xff000000
  jne finish
  push ds
  push es
  pop ds
  mov si, BUF + 0x200
  mov di, BUF + 0x600
  mov cx, 512
  repe cmpsb
  pop ds
  mov si, bad
  jne finish
  mov si, done
finish:
  call puts
  jmp poweroff

; kick_wait: publishes avail idx BX, kicks queue 0, waits for used idx BX (reading the ISR).
kick_wait:
  mov [es:0x1002], bx
  lea dx, [bp + 16]
  xor ax, ax
  out dx, ax
  lea dx, [bp + 19]
.w:
  in al, dx
  cmp [es:0x2002], bx
  jne .w
  ret

; Descriptors: offset, length, flags, next (NEXT = 1, WRITE = 2).
descs:
  dw 0x000, 16, 1, 1      ; 0: OUT header
  dw 0x200, 512, 1, 2     ; 1: data
  dw 0x400, 1, 2, 0       ; 2: status
  dw 0x010, 16, 1, 4      ; 3: IN header
  dw 0x600, 512, 3, 5     ; 4: read buffer
  dw 0x401, 1, 2, 0       ; 5: status
  dw 0x020, 16, 1, 7      ; 6: FLUSH header
  dw 0x402, 1, 2, 0       ; 7: status

%include "common.inc"

notfound: db "NO-VIRTIO-BLK", 13, 10, 0
bad: db "VIRTIO-BLK-BAD", 13, 10, 0
done: db "DEMU-VIRTIO-BLK-OK", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
