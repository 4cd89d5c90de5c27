; A tiny "kernel" with a Linux boot protocol 2.15 header (a bzImage: one setup sector, the
; protected-mode part loaded at 1 MiB). Entered either the 32-bit way (ESI = boot_params, flat
; segments: demu's -kernel) or through the real-mode setup entry (QEMU's linuxboot ROM), it
; prints the command line and the start of the initrd from boot_params on COM1, then powers off
; through the ACPI tables: RSDP -> RSDT -> FADT -> PM1a_CNT, SLP_TYP 0 | SLP_EN.
bits 16
org 0

times 0x1f1-($-$$) db 0
setup_sects:     db 1
root_flags:      dw 0
syssize:         dd (pm_end - pm_start + 15) / 16
ram_size:        dw 0
vid_mode:        dw 0xffff
root_dev:        dw 0
boot_flag:       dw 0xaa55
jump:            db 0xeb, hdr_end - 0x202
header:          db "HdrS"
version:         dw 0x020f
realmode_swtch:  dd 0
start_sys_seg:   dw 0x1000
kernel_version:  dw 0
type_of_loader:  db 0
loadflags:       db 0x01
setup_move_size: dw 0x8000
code32_start:    dd 0x100000
ramdisk_image:   dd 0
ramdisk_size:    dd 0
bootsect_kludge: dd 0
heap_end_ptr:    dw 0
ext_loader_ver:  db 0
ext_loader_type: db 0
cmd_line_ptr:    dd 0
initrd_addr_max: dd 0x37ffffff
kernel_align:    dd 0x100000
relocatable:     db 0
min_alignment:   db 0
xloadflags:      dw 0
cmdline_size:    dd 2047
hardware_subarch: dd 0
hardware_subarch_data: dq 0
payload_offset:  dd 0
payload_length:  dd 0
setup_data:      dq 0
pref_address:    dq 0x100000
init_size:       dd 0x10000
handover_offset: dd 0
kernel_info_offset: dd 0
hdr_end:

; Real-mode entry (CS = setup segment + 0x20, DS = setup segment = boot_params).
rm_entry:
  cli
  mov ax, ds
  movzx esi, ax
  shl esi, 4
  mov eax, esi
  add eax, gdt
  mov [gdtr + 2], eax
  lgdt [gdtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp dword 0x10:0x100000

align 8
gdtr: dw gdt_end - gdt - 1
      dd 0
align 8
gdt:  dq 0, 0
      dq 0x00cf9a000000ffff
      dq 0x00cf92000000ffff
gdt_end:

times 1024-($-$$) db 0

section pm vstart=0x100000
bits 32
pm_start:
  mov ax, 0x18
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x90000
  mov ebx, esi                 ; boot_params
  mov esi, msg_cmd
  call puts
  mov esi, [ebx + 0x228]       ; cmd_line_ptr
  call puts
  mov esi, msg_initrd
  call puts
  mov esi, [ebx + 0x218]       ; ramdisk_image
  mov ecx, [ebx + 0x21c]       ; ramdisk_size
  cmp ecx, 16
  jbe .n
  mov ecx, 16
.n:
  jecxz .done_initrd
.ic:
  lodsb
  call putc
  loop .ic
.done_initrd:
  mov esi, msg_nl
  call puts
  ; ACPI: find the RSDP in 0xE0000-0xFFFFF on 16-byte boundaries.
  mov edi, 0xe0000
.scan:
  cmp dword [edi], 'RSD '
  jne .next
  cmp dword [edi + 4], 'PTR '
  je .found
.next:
  add edi, 16
  cmp edi, 0x100000
  jb .scan
  mov esi, msg_noacpi
  call puts
  jmp .hang
.found:
  mov eax, [edi + 16]          ; RSDT
  mov eax, [eax + 36]          ; its first entry: the FADT (demu and QEMU list it first)
  cmp dword [eax], 'FACP'
  jne .hang
  mov edx, [eax + 64]          ; PM1a_CNT_BLK
  mov ax, 0x2000
  out dx, ax
.hang:
  cli
  hlt
  jmp .hang

putc:                          ; AL to COM1
  push edx
  push eax
  mov dx, 0x3fd
.w:
  in al, dx
  test al, 0x20
  jz .w
  pop eax
  mov dx, 0x3f8
  out dx, al
  pop edx
  ret

puts:                          ; NUL-terminated string at ESI
  lodsb
  test al, al
  jz .e
  call putc
  jmp puts
.e:
  ret

msg_cmd:    db "LINUX-STUB cmdline=[", 0
msg_initrd: db "] initrd=[", 0
msg_nl:     db "]", 13, 10, 0
msg_noacpi: db "no RSDP", 13, 10, 0
pm_end:
