; Error codes of faults raised while delivering an interrupt or exception through the IDT: the
; IDT bit (2) with the vector's index, and EXT (1) when the event was not a software INT:
; a not-present gate (#NP), a gate beyond the IDT limit or of a wrong type (#GP), a gate whose
; code selector is null (#GP(EXT)), names a non-code segment (#GP(sel+EXT)) or a not-present one
; (#NP(sel+EXT)); and a fault that is itself delivered through a bad gate (EXT=1).
%include "boot.inc"

main:
        mov eax, gp_handler
        mov ebx, 13
        mov edx, 0x8e00
        call set_gate
        mov eax, np_handler
        mov ebx, 11
        call set_gate
        ; gate 0x50: not present
        mov eax, target
        mov ebx, 0x50
        mov edx, 0x0e00
        call set_gate
        ; gate 0x52: a present "gate" of type 1 (not an interrupt/trap/task gate)
        mov ebx, 0x52
        mov edx, 0x8100
        call set_gate
        ; gate 0x53: a null code selector
        mov ebx, 0x53
        mov edx, 0x8e00
        call set_gate
        mov word [IDT + 0x53 * 8 + 2], 0
        ; gate 0x54: a data segment as its code selector
        mov ebx, 0x54
        call set_gate
        mov word [IDT + 0x54 * 8 + 2], DATA32
        ; gate 0x55: a not-present code segment (a copy of CODE32 with P clear, GDT spare slot)
        mov dword [gdt + 0x48], 0x0000ffff
        mov dword [gdt + 0x4c], 0x00cf1a00
        mov ebx, 0x55
        call set_gate
        mov word [IDT + 0x55 * 8 + 2], 0x48

        mov dword [skip], 2
        int 0x50
        CHECK 1, dword [vec], 11
        CHECK 2, dword [err], 0x50 * 8 + 2
        int 0x52
        CHECK 3, dword [vec], 13
        CHECK 4, dword [err], 0x52 * 8 + 2
        int 0x53
        CHECK 5, dword [vec], 13
        CHECK 6, dword [err], 0
        int 0x54
        CHECK 7, dword [vec], 13
        CHECK 8, dword [err], DATA32
        int 0x55
        CHECK 9, dword [vec], 11
        CHECK 10, dword [err], 0x48
        ; beyond the IDT limit
        sidt [saved_idt]
        mov word [small_idt], 0x60 * 8 - 1
        mov eax, [saved_idt + 2]
        mov [small_idt + 2], eax
        lidt [small_idt]
        int 0x70
        lidt [saved_idt]
        CHECK 11, dword [vec], 13
        CHECK 12, dword [err], 0x70 * 8 + 2

        ; an exception (#UD) through a not-present gate: #NP with EXT
        mov eax, target
        mov ebx, 6
        mov edx, 0x0e00
        call set_gate
        ud2
        CHECK 20, dword [vec], 11
        CHECK 21, dword [err], 6 * 8 + 2 + 1
        ; ... and through a gate with a not-present code segment: #NP(sel) with EXT
        mov edx, 0x8e00
        call set_gate
        mov word [IDT + 6 * 8 + 2], 0x48
        ud2
        CHECK 22, dword [vec], 11
        CHECK 23, dword [err], 0x48 + 1
        ; INT3 (a software exception): no EXT
        mov eax, target
        mov ebx, 3
        mov edx, 0x0e00
        call set_gate
        mov dword [skip], 1
        int3
        CHECK 24, dword [vec], 11
        CHECK 25, dword [err], 3 * 8 + 2
        jmp pass

; #GP / #NP: record the vector and error code, skip the faulting INT n / UD2 / INT3
gp_handler:
        mov dword [vec], 13
        jmp record
np_handler:
        mov dword [vec], 11
record:
        pop dword [err]
        push eax
        mov eax, [skip]
        add [esp + 4], eax
        pop eax
        iret

target:
        jmp fail

        align 4
vec:    dd 0
err:    dd 0
skip:   dd 2
saved_idt: dw 0
        dd 0
small_idt: dw 0
        dd 0
