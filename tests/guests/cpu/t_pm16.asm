; 16-bit protected mode: a 16-bit code segment (operand and address size 16 by default, 66h/67h
; for 32), a 286-style interrupt gate (pushes 16-bit IP/CS/FLAGS), far transfers between 16- and
; 32-bit code, and NMI delivery ending with IRET.
%include "boot.inc"
main:
        ; 16-bit interrupt gate (type 6) at vector 0x40 to CODE16:int16
        mov eax, int16 - $$ + 0x8000
        mov word [IDT + 0x40 * 8], ax
        mov word [IDT + 0x40 * 8 + 2], CODE16
        mov word [IDT + 0x40 * 8 + 4], 0x8600
        mov word [IDT + 0x40 * 8 + 6], 0
        mov ax, DATA16
        mov ss, ax
        mov esp, 0x6000
        jmp CODE16:code16

        bits 16
code16:
        mov ax, 0x1234
        push ax                         ; 16-bit push: SP -= 2
        cmp sp, 0x6000 - 2
        jne .bad
        pop bx
        mov eax, 0x12345678             ; 66h: 32-bit operand in 16-bit code
        cmp eax, 0x12345678
        jne .bad
        mov ebx, 0x7000
        mov dword [ebx], 0xabcdef01     ; 67h: 32-bit address
        cmp dword [0x7000], 0xabcdef01
        jne .bad
        int 0x40                        ; 16-bit gate: 6-byte frame
        cmp cx, 0x4242
        jne .bad
        cmp sp, 0x6000
        jne .bad
        jmp dword CODE32:back32          ; 66h far jump to 32-bit code
.bad:
        mov eax, 0x77
        jmp dword CODE32:exit

int16:
        mov bp, sp
        cmp sp, 0x6000 - 6              ; IP, CS, FLAGS: two bytes each
        jne .ibad
        cmp word [bp + 2], CODE16
        jne .ibad
        mov cx, 0x4242
        iret
.ibad:
        mov cx, 0
        iret
        bits 32

back32:
        mov ax, DATA32
        mov ss, ax
        mov esp, 0x7fff0
        mov ax, cs
        CHECK 1, ax, CODE32
        ; NMI: the harness raises one when port 0x80 is written; a second one waits for IRET
        mov eax, nmi_handler
        mov ebx, 2
        mov edx, 0x8e00
        call set_gate
        out 0x80, al
        nop
        CHECK 2, dword [nmi_count], 1
        out 0x80, al
        nop
        CHECK 3, dword [nmi_count], 2
        jmp pass

nmi_handler:
        inc dword [nmi_count]
        iret

        align 4
nmi_count: dd 0
