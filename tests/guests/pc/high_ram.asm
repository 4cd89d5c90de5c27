; A boot sector that checks RAM above 4 GiB: long mode with 2 MiB pages identity-mapping the
; first 2 MiB and the 2 MiB at 4 GiB, a pattern written there and read back. Prints
; "HIGH-RAM-OK" (or "HIGH-RAM-BAD") on COM1, then powers off. Run it with -m 4G.
bits 16
org 0x7c00

%include "boot_pm.inc"

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff        ; 0x08 32-bit code
  dq 0x00cf92000000ffff        ; 0x10 data
  dq 0x00209a0000000000        ; 0x18 64-bit code
gdtr:
  dw gdtr - gdt - 1
  dd gdt

times 510-($-$$) db 0
dw 0xaa55

bits 32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7c00
  mov edi, 0x1000              ; PML4 0x1000, PDPT 0x2000, PD(0) 0x3000, PD(4 GiB) 0x4000
  mov ecx, 0x4000 / 4
  xor eax, eax
  rep stosd
  mov dword [0x1000], 0x2003
  mov dword [0x2000], 0x3003   ; PDPT[0]: 0-1 GiB
  mov dword [0x2020], 0x4003   ; PDPT[4]: 4-5 GiB
  mov dword [0x3000], 0x0083   ; 0-2 MiB
  mov dword [0x4000], 0x0083   ; 4 GiB - 4 GiB+2 MiB (physical high dword below)
  mov dword [0x4004], 1
  mov eax, cr4
  or eax, 1 << 5
  mov cr4, eax
  mov eax, 0x1000
  mov cr3, eax
  mov ecx, 0xc0000080
  rdmsr
  or eax, 1 << 8
  wrmsr
  mov eax, cr0
  or eax, 1 << 31
  mov cr0, eax
  jmp 0x18:lm64

bits 64
lm64:
  mov rdi, 0x100000000
  mov rax, 0x0123456789abcdef
  mov [rdi], rax
  mov [rdi + 0x1ffff8], rax
  mov rsi, m_bad
  cmp [rdi], rax
  jne .print
  cmp [rdi + 0x1ffff8], rax
  jne .print
  mov rsi, m_ok
.print:
  lodsb
  test al, al
  jz .off
  mov ah, al
  mov dx, 0x3fd
.w:
  in al, dx
  test al, 0x20
  jz .w
  mov al, ah
  mov dx, 0x3f8
  out dx, al
  jmp .print
.off:
  mov eax, 0x80000b40
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  and eax, 0xffc0
  lea edx, [rax + 4]
  mov ax, 0x2000
  out dx, ax
.h:
  hlt
  jmp .h

m_ok:  db "HIGH-RAM-OK", 13, 10, 0
m_bad: db "HIGH-RAM-BAD", 13, 10, 0

STAGE2_SECTORS equ 1
times 512 * (1 + STAGE2_SECTORS) - ($-$$) db 0
