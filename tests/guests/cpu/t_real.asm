; Real mode beyond the 286: 32-bit operands and addresses with 66h/67h, FS/GS, MOVZX, unreal
; mode (4 GiB limits kept after leaving protected mode), and back.
        bits 16
        org 0x8000
start:
        cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7000
        mov eax, 0x12345678
        mov ebx, eax
        shr ebx, 16
        cmp bx, 0x1234
        jne fail16
        mov ecx, 0x4000
        mov dword [ecx * 2 + 0x1000], 0xdeadbeef    ; 67h: SIB addressing in real mode
        mov esi, 0x8000
        cmp dword [esi + 0x1000], 0xdeadbeef
        jne fail16
        ; a 32-bit offset beyond the 64 KiB limit faults (#GP through IVT vector 13)
        mov word [13 * 4], gp_handler
        mov word [13 * 4 + 2], 0
        mov dword [gp_seen], 0
        mov esi, 0x10000
        mov al, [esi]
        cmp dword [gp_seen], 1
        jne fail16
        mov ax, 0x100
        mov fs, ax
        mov byte [fs:0x10], 0x5a        ; 0x1010
        movzx edx, byte [0x1010]
        cmp edx, 0x5a
        jne fail16
        ; unreal mode: load a 4 GiB data segment in PE, return to real mode, keep the limit
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        mov bx, 0x08
        mov es, bx
        and al, 0xfe
        mov cr0, eax
        xor ax, ax
        mov es, ax                      ; base 0 again, limit stays 4 GiB
        mov dword [es:0x200000], 0x600d600d
        cmp dword [es:0x200000], 0x600d600d
        jne fail16
        ; a real-mode interrupt through the IVT
        mov word [0x80 * 4], handler
        mov word [0x80 * 4 + 2], 0
        mov ax, 0
        int 0x80
        cmp ax, 0x4321
        jne fail16
        mov eax, 0
        out 0xf4, eax
        hlt
fail16:
        mov eax, 1
        out 0xf4, eax
        hlt
handler:
        mov ax, 0x4321
        iret
gp_handler:
        inc dword [gp_seen]
        mov bp, sp
        add word [bp], 3                ; skip "mov al, [esi]" (67 8A 06)
        iret
gp_seen: dd 0

        align 8
gdt:    dq 0
        dq 0x00cf92000000ffff
gdtr:   dw 15
        dd gdt
