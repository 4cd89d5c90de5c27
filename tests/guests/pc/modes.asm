; A boot sector that climbs the x86 modes and reports each on COM1: real mode, 32-bit protected
; mode, paging (PAE), long mode (when CPUID says the CPU has it), checking an MMIO device on the
; way (the VGA text buffer at 0xB8000, which demu serves by trapping every access), then powers
; off through ACPI. Printed: "REAL PROT MMIO LONG" when the CPU has long mode (entered straight
; from protected mode with 4-level paging), else "REAL PROT MMIO PAGING" (32-bit PAE paging).
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
  mov ax, 0x0200 | STAGE2_SECTORS   ; the rest of the program, right after the boot sector
  mov cx, 0x0002
  xor dh, dh
  mov bx, 0x7e00
  int 0x13
  cli
  jmp stage2

%include "common.inc"

times 510-($-$$) db 0
dw 0xaa55

stage2:
  mov si, m_real
  call puts
  lgdt [gdtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp 0x08:pm32

bits 32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7c00
  mov esi, m_prot
  call puts32
  ; MMIO: write a pattern to the VGA text buffer and read it back.
  mov dword [0xb8000], 0x1f4b1f4f
  cmp dword [0xb8000], 0x1f4b1f4f
  jne .no_mmio
  mov esi, m_mmio
  call puts32
.no_mmio:
  ; Page tables for both paths: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 (one 2 MiB page at 0),
  ; and a PAE-only PDPT at 0x4000 (its entries may not have R/W set).
  mov edi, 0x1000
  mov ecx, 0x4000 / 4
  xor eax, eax
  rep stosd
  mov dword [0x1000], 0x2003
  mov dword [0x2000], 0x3003
  mov dword [0x3000], 0x0083
  mov dword [0x4000], 0x3001
  mov eax, cr4
  or eax, 1 << 5               ; PAE
  mov cr4, eax
  ; Long mode if CPUID 0x80000001 EDX bit 29 says so: straight from protected mode.
  mov eax, 0x80000000
  cpuid
  cmp eax, 0x80000001
  jb .pae
  mov eax, 0x80000001
  cpuid
  test edx, 1 << 29
  jz .pae
  mov eax, 0x1000
  mov cr3, eax
  mov ecx, 0xc0000080          ; EFER.LME
  rdmsr
  or eax, 1 << 8
  wrmsr
  mov eax, cr0
  or eax, 1 << 31
  mov cr0, eax
  jmp 0x18:lm64
.pae:                          ; no long mode: 32-bit PAE paging
  mov eax, 0x4000
  mov cr3, eax
  mov eax, cr0
  or eax, 1 << 31
  mov cr0, eax
  jmp .paged
.paged:
  mov esi, m_paging
  call puts32
  jmp off32

puts32:
  lodsb
  test al, al
  jz .e
  mov ah, al
  mov dx, 0x3fd
.w:
  in al, dx
  test al, 0x20
  jz .w
  mov al, ah
  mov dx, 0x3f8
  out dx, al
  jmp puts32
.e:
  ret

off32:
  mov eax, 0x80000b40
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  and eax, 0xffc0
  lea edx, [eax + 4]
  mov ax, 0x2000
  out dx, ax
.h:
  hlt
  jmp .h

bits 64
lm64:
  mov esi, m_long
.l:
  lodsb
  test al, al
  jz .done
  mov ah, al
  mov dx, 0x3fd
.w:
  in al, dx
  test al, 0x20
  jz .w
  mov al, ah
  mov dx, 0x3f8
  out dx, al
  jmp .l
.done:
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

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff        ; 0x08 32-bit code
  dq 0x00cf92000000ffff        ; 0x10 data
  dq 0x00209a0000000000        ; 0x18 64-bit code
gdtr:
  dw gdtr - gdt - 1
  dd gdt

m_real:   db "REAL", 0
m_prot:   db " PROT", 0
m_mmio:   db " MMIO", 0
m_paging: db " PAGING", 13, 10, 0
m_long:   db " LONG", 13, 10, 0

STAGE2_SECTORS equ 2
times 512 * (1 + STAGE2_SECTORS) - ($-$$) db 0
