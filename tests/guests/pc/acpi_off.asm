; A boot sector that powers off the way an ACPI OS does, using only the firmware's tables:
; find the RSDP in 0xE0000-0xFFFFF, walk the RSDT to the FADT, enable ACPI mode through
; SMI_CMD/ACPI_ENABLE when the FADT asks for it (waiting for SCI_EN), then write SLP_TYP 0 |
; SLP_EN to PM1a_CNT. Prints what it found on COM1.
bits 16
org 0x7c00

%include "boot_pm.inc"

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff
  dq 0x00cf92000000ffff
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
  mov edi, 0xe0000
.scan:
  cmp dword [edi], 'RSD '
  jne .next
  cmp dword [edi + 4], 'PTR '
  je .rsdp
.next:
  add edi, 16
  cmp edi, 0x100000
  jb .scan
  mov esi, m_nordsp
  jmp fail
.rsdp:
  mov esi, m_rsdp
  call puts
  mov ebx, [edi + 16]          ; RSDT
  mov ecx, [ebx + 4]
  sub ecx, 36
  shr ecx, 2                   ; entries
  lea edx, [ebx + 36]
.entry:
  jecxz .nofadt
  mov eax, [edx]
  cmp dword [eax], 'FACP'
  je .fadt
  add edx, 4
  dec ecx
  jmp .entry
.nofadt:
  mov esi, m_nofadt
  jmp fail
.fadt:
  mov ebx, eax
  mov esi, m_fadt
  call puts
  mov edx, [ebx + 64]          ; PM1a_CNT_BLK
  mov ecx, [ebx + 48]          ; SMI_CMD
  jecxz .acpi_on
  in ax, dx
  test al, 1                   ; SCI_EN already?
  jnz .acpi_on
  push edx
  mov edx, ecx
  mov al, [ebx + 52]           ; ACPI_ENABLE
  out dx, al
  pop edx
.wait:
  in ax, dx
  test al, 1
  jz .wait
  mov esi, m_enabled
  call puts
.acpi_on:
  mov esi, m_off
  call puts
  mov ax, 0x2000               ; SLP_TYP 0 (S5 on these machines) | SLP_EN
  out dx, ax
  mov esi, m_still
fail:
  call puts
.h:
  hlt
  jmp .h

puts:
  push edx
.l:
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
  jmp .l
.e:
  pop edx
  ret

m_rsdp:    db "RSDP ", 0
m_fadt:    db "FADT ", 0
m_enabled: db "ACPI-MODE ", 0
m_off:     db "S5", 13, 10, 0
m_nordsp:  db "no RSDP", 13, 10, 0
m_nofadt:  db "no FADT", 13, 10, 0
m_still:   db "still running", 13, 10, 0

STAGE2_SECTORS equ 1
times 512 * (1 + STAGE2_SECTORS) - ($-$$) db 0
