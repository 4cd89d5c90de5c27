; LOCK: allowed on the read-modify-write instructions with a memory destination (they run
; normally); #UD on everything else (a register destination, CMP, MOV, NOP), a fault at the
; LOCK prefix's address.
%include "boot.inc"

%macro BADLOCK 2                        ; check number, instruction bytes after F0
        mov dword [resume], %%after
        mov dword [vec], -1
%%ins:  db 0xf0, %2
        jmp fail_nofault
%%after:
        CHECK %1, dword [vec], 6
        CHECK %1 + 100, dword [eip_seen], %%ins
%endmacro

main:
        mov eax, ud_handler
        mov ebx, 6
        mov edx, 0x8e00
        call set_gate
        ; allowed forms run
        mov dword [mem], 5
        mov eax, 3
        lock add [mem], eax
        lock inc dword [mem]
        lock xchg [mem], eax            ; eax = 9, mem = 3
        CHECK 1, eax, 9
        CHECK 2, dword [mem], 3
        mov ecx, 7
        mov eax, 3
        lock cmpxchg [mem], ecx
        CHECK 3, dword [mem], 7
        lock bts dword [mem], 4
        CHECK 4, dword [mem], 0x17
        lock neg dword [mem]
        CHECK 5, dword [mem], -0x17
        mov eax, 1
        lock xadd [mem], eax
        CHECK 6, eax, -0x17
        lock sub dword [mem], 2
        lock or byte [mem], 0x80
        lock not word [mem]
        ; invalid
        BADLOCK 10, {0x01, 0xd8}        ; add eax, ebx (register destination)
        BADLOCK 11, {0x39, 0x05, 0, 0, 0, 0} ; cmp [0], eax
        BADLOCK 12, {0x89, 0x05, 0, 0, 0, 0} ; mov [0], eax
        BADLOCK 13, {0x90}              ; nop
        BADLOCK 14, {0x03, 0x05, 0, 0, 0, 0} ; add eax, [0] (register destination)
        BADLOCK 15, {0x0f, 0xa3, 0x05, 0, 0, 0, 0} ; bt [0], eax (BT reads only)
        CHECK 20, dword [mem], 0xffff0017 ; nothing invalid wrote memory
        jmp pass

fail_nofault:
        mov dword [check_no], 99
        jmp fail

ud_handler:
        mov dword [vec], 6
        push eax
        mov eax, [esp + 4]
        mov [eip_seen], eax
        mov eax, [resume]
        mov [esp + 4], eax
        pop eax
        iret

        align 4
vec:    dd 0
eip_seen: dd 0
resume: dd 0
mem:    dd 0
