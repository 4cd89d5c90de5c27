; A boot sector that drives a virtio console as a legacy (pre-1.0) driver does: finds the
; virtio-serial PCI function (1AF4:1003) on bus 0, resets it, acknowledges it without features
; (so port 0 alone, no control queue), lays out the receive queue (0) and the transmit queue (1)
; by page frame number, sends a greeting, waits for one buffer of host data, echoes it back, then
; prints a marker on COM1 and powers the PC off. Everything is polled (no interrupts).
bits 16
org 0x7c00

RX_SEG equ 0x2000                 ; queue 0 at 0x20000: desc, avail at +0x800, used at +0x1000
TX_SEG equ 0x1000                 ; queue 1 at 0x10000
RX_BUF equ 0x2000                 ; receive buffer at RX_SEG:0x2000 (0x22000), 64 bytes

start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7c00
  ; Find the device: config dword 0 of 00:dev.0 for dev 0..31.
  mov ecx, 0x80000000
.scan:
  mov eax, ecx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  cmp eax, 0x10031af4
  je .found
  add ecx, 0x800
  cmp ecx, 0x80010000
  jb .scan
  mov si, notfound
  call puts
  jmp poweroff
.found:
  lea eax, [ecx + 0x10]           ; BAR 0: the legacy I/O block
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  and ax, 0xfffc
  mov bp, ax
  ; Reset, ACKNOWLEDGE, DRIVER; accept no features.
  lea dx, [bp + 18]
  mov al, 0
  out dx, al
  mov al, 1
  out dx, al
  mov al, 3
  out dx, al
  lea dx, [bp + 4]
  xor eax, eax
  out dx, eax
  ; Queues: zero the ring pages (and the receive buffer), select, give the page frame number.
  cld
  xor ax, ax
  xor di, di
  mov bx, TX_SEG
  mov es, bx
  mov cx, 0x1800
  rep stosw
  mov bx, RX_SEG
  mov es, bx
  xor di, di
  mov cx, 0x1800
  rep stosw
  xor bx, bx                      ; queue 0 at PFN 0x20
  mov eax, 0x20
  call setup_queue
  mov bx, 1                       ; queue 1 at PFN 0x10
  mov eax, 0x10
  call setup_queue
  lea dx, [bp + 18]
  mov al, 7                       ; DRIVER_OK
  out dx, al
  ; Post the receive buffer: desc 0 = {0x22000, 64, WRITE}; avail ring[0] = 0; idx = 1.
  mov ax, RX_SEG
  mov es, ax
  mov dword [es:0], 0x22000
  mov word [es:8], 64
  mov word [es:12], 2
  mov word [es:0x804], 0
  mov word [es:0x802], 1
  lea dx, [bp + 16]
  xor ax, ax
  out dx, ax
  ; Send the greeting: desc 0 = {greeting, len}; idx = 1; kick queue 1; wait for used idx 1.
  mov ax, TX_SEG
  mov es, ax
  mov dword [es:0], greeting
  mov word [es:8], greeting_end - greeting
  mov word [es:0x804], 0
  mov word [es:0x802], 1
  call kick_tx
  mov ax, 1
  call wait_tx
  ; Wait for host data in the receive queue, reading the ISR meanwhile (an exit to the VMM
  ; on each round, so an accelerator without a device thread gets to serve the host side).
  mov ax, RX_SEG
  mov es, ax
  lea dx, [bp + 19]
.rxwait:
  in al, dx
  cmp word [es:0x1002], 1
  jne .rxwait
  mov ecx, [es:0x1008]            ; used[0].len: bytes received
  ; Echo them back: desc 1 = {0x22000, len}; avail ring[1] = 1; idx = 2.
  mov ax, TX_SEG
  mov es, ax
  mov dword [es:16], 0x22000
  mov [es:24], ecx
  mov word [es:0x806], 1
  mov word [es:0x802], 2
  call kick_tx
  mov ax, 2
  call wait_tx
  mov si, done
  call puts
  jmp poweroff

; setup_queue: BX = queue index, EAX = page frame number.
setup_queue:
  push eax
  lea dx, [bp + 14]
  mov ax, bx
  out dx, ax
  lea dx, [bp + 8]
  pop eax
  out dx, eax
  ret

kick_tx:
  lea dx, [bp + 16]
  mov ax, 1
  out dx, ax
  ret

; wait_tx: waits until queue 1's used idx reaches AX.
wait_tx:
  push ds
  push word TX_SEG
  pop ds
.w:
  cmp [0x1002], ax
  jne .w
  pop ds
  ret

%include "common.inc"

greeting: db "hello over virtio", 10
greeting_end:
notfound: db "NO-VIRTIO", 13, 10, 0
done: db "DEMU-VIRTIO-OK", 13, 10, 0

times 510-($-$$) db 0
dw 0xaa55
