; Expand-down data segments: the valid offsets are limit+1 .. 0xFFFFFFFF (B set) or .. 0xFFFF
; (B clear); an access at or below the limit, or one running past the top, is #GP(0); a
; read-only expand-down segment refuses writes.
%include "boot.inc"

%macro EXPECT_GP 2                      ; check number, instruction
        mov dword [resume], %%after
        mov dword [vec], -1
%%ins:  %2
        jmp fail_nofault
%%after:
        CHECK %1, dword [vec], 13
        CHECK %1 + 100, dword [eip_seen], %%ins
        CHECK %1 + 200, dword [err], 0
%endmacro

main:
        mov eax, gp_handler
        mov ebx, 13
        mov edx, 0x8e00
        call set_gate
        ; 0x48: expand-down, writable, B=1, limit 0xfff, base 0
        mov dword [gdt + 0x48], 0x00000fff
        mov dword [gdt + 0x4c], 0x00409600
        ; 0x50: expand-down, writable, B=0, limit 0xfff, base 0
        mov dword [gdt + 0x50], 0x00000fff
        mov dword [gdt + 0x54], 0x00009600
        ; 0x58: expand-down, read-only, B=1, limit 0xfff, base 0
        mov dword [gdt + 0x58], 0x00000fff
        mov dword [gdt + 0x5c], 0x00409400

        mov ax, 0x48
        mov es, ax
        mov dword [probe], 0x12345678
        mov eax, [es:probe]             ; above the limit: fine (base 0: the same memory)
        CHECK 1, eax, 0x12345678
        mov dword [es:probe], 0x11111111
        CHECK 2, dword [probe], 0x11111111
        mov eax, [es:0x1000]            ; the first valid offset
        mov ebx, 0x1000
        mov eax, [es:ebx]
        EXPECT_GP 3, {mov eax, [es:0xffc]}      ; below the limit
        EXPECT_GP 4, {mov eax, [es:0xffe]}      ; straddles the limit
        EXPECT_GP 5, {mov byte [es:0], 1}
        EXPECT_GP 6, {mov eax, [es:0xfffffffe]} ; runs past 4 GiB
        ; string instructions check too
        mov edi, 0xff0
        mov ecx, 1
        EXPECT_GP 7, {rep stosd}
        mov edi, probe
        mov eax, 0x22222222
        stosd
        CHECK 8, dword [probe], 0x22222222

        ; B clear: the top is 0xFFFF
        mov ax, 0x50
        mov es, ax
        mov eax, [es:0xfffc]
        mov ax, [es:0x1000]
        EXPECT_GP 10, {mov eax, [es:0xfffe]}    ; past 0xFFFF
        EXPECT_GP 11, {mov eax, [es:0x10000]}
        EXPECT_GP 12, {mov al, [es:0xfff]}

        ; read-only: reads above the limit, no writes anywhere
        mov ax, 0x58
        mov es, ax
        mov eax, [es:probe]
        CHECK 20, eax, 0x22222222
        EXPECT_GP 21, {mov [es:probe], eax}
        mov ax, DATA32
        mov es, ax
        jmp pass

fail_nofault:
        mov dword [check_no], 99
        jmp fail

gp_handler:
        mov dword [vec], 13
        pop dword [err]
        push eax
        mov eax, [esp + 4]
        mov [eip_seen], eax
        mov eax, [resume]
        mov [esp + 4], eax
        pop eax
        iret

        align 4
vec:    dd 0
err:    dd 0
eip_seen: dd 0
resume: dd 0
probe:  dd 0
