; Exceptions: vector, error code and saved EIP (fault vs trap) for #DE, #UD, #BR, INTO, INT3,
; #GP(selector), #NP, #SS, segment limits, single-step #DB, and a #DF from a fault during
; exception delivery.
%include "boot.inc"

%macro HANDLER 2                        ; vector, has error code
h_%1:
        mov dword [vec], %1
%if %2
        pop dword [err]
%else
        mov dword [err], -1
%endif
        jmp exc_common
%endmacro

main:
%macro GATE 1
        mov eax, h_%1
        mov ebx, %1
        mov edx, 0x8e00
        call set_gate
%endmacro
        GATE 0
        GATE 1
        GATE 3
        GATE 4
        GATE 5
        GATE 6
        GATE 8
        GATE 11
        GATE 12
        GATE 13
        ; extra descriptors: 0x48 data not present, 0x50 data not present, 0x58 data limit 0xfff
        mov dword [gdt + 0x48], 0x0000ffff
        mov dword [gdt + 0x4c], 0x00cf1200
        mov dword [gdt + 0x50], 0x0000ffff
        mov dword [gdt + 0x54], 0x00cf1200
        mov dword [gdt + 0x58], 0x00000fff
        mov dword [gdt + 0x5c], 0x00409200

        ; #DE: a fault, EIP of the DIV
        mov dword [resume], .a1
        xor ebx, ebx
.de:    div ebx
.a1:    CHECK 1, dword [vec], 0
        CHECK 2, dword [eip_seen], .de
        CHECK 3, dword [err], -1
        ; #UD
        mov dword [resume], .a2
.ud:    ud2
.a2:    CHECK 4, dword [vec], 6
        CHECK 5, dword [eip_seen], .ud
        ; #BR
        mov dword [resume], .a3
        mov eax, 10
.br:    bound eax, [bounds]
.a3:    CHECK 6, dword [vec], 5
        CHECK 7, dword [eip_seen], .br
        ; INTO with OF: a trap, EIP after it
        mov dword [resume], .a4
        mov al, 0x7f
        add al, 1
        into
.into_next:
        jmp .a4
.a4:    CHECK 8, dword [vec], 4
        CHECK 9, dword [eip_seen], .into_next
        ; INT3: a trap
        mov dword [resume], .a5
        int3
.int3_next:
        nop
.a5:    CHECK 10, dword [vec], 3
        CHECK 11, dword [eip_seen], .int3_next
        ; #GP(selector) for a selector beyond the GDT limit
        mov dword [resume], .a6
        mov ax, 0x1233                  ; GDT index 0x246 (beyond the limit), RPL 3
.gp:    mov ds, ax
.a6:    CHECK 12, dword [vec], 13
        CHECK 13, dword [err], 0x1230
        CHECK 14, dword [eip_seen], .gp
        ; #NP(selector)
        mov dword [resume], .a7
        mov ax, 0x48
        mov ds, ax
.a7:    CHECK 15, dword [vec], 11
        CHECK 16, dword [err], 0x48
        ; #SS(selector) for a not-present stack segment
        mov dword [resume], .a8
        mov ax, 0x50
        mov ss, ax
.a8:    CHECK 17, dword [vec], 12
        CHECK 18, dword [err], 0x50
        ; segment limit: ES limit 0xfff, a dword at 0xffe overruns it: #GP(0)
        mov ax, 0x58
        mov es, ax
        mov eax, [es:0xffc]             ; fits
        mov dword [resume], .a9
        mov eax, [es:0xffe]
.a9:    CHECK 19, dword [vec], 13
        CHECK 20, dword [err], 0
        mov ax, DATA32
        mov es, ax
        ; single step: TF traps after the next instruction
        mov dword [vec], -1
        mov dword [resume], .a10
        pushfd
        or dword [esp], 0x100
        popfd
        mov ebx, 1                      ; #DB after this one
.tf_next:
        mov ebx, 2
.a10:   CHECK 21, dword [vec], 1
        CHECK 22, dword [eip_seen], .tf_next
        CHECK 23, ebx, 1
        pushfd
        pop eax
        test eax, 0x100
        FAILIF nz, 24                   ; the handler's IRET restored TF clear (see exc_common)
        ; segment types: writing read-only data, or through a code segment, is #GP(0)
        mov dword [gdt + 0x70], 0x0000ffff
        mov dword [gdt + 0x74], 0x00cf9000      ; data, read-only
        mov ax, 0x70
        mov es, ax
        mov eax, [es:scratch]           ; reads are fine
        mov dword [resume], .a13
        mov dword [vec], -1
        mov [es:scratch], eax
.a13:   CHECK 30, dword [vec], 13
        CHECK 31, dword [err], 0
        mov ax, DATA32
        mov es, ax
        mov dword [resume], .a14
        mov dword [vec], -1
        mov eax, [cs:scratch]           ; readable code: fine
        mov [cs:scratch], eax
.a14:   CHECK 32, dword [vec], 13
        ; CS limit: a code segment ending two bytes into `runoff` faults fetching the third
        mov eax, runoff + 1
        mov [gdt + 0x68], ax            ; limit 15:0 (byte granular)
        mov word [gdt + 0x6a], 0        ; base 0
        mov dword [gdt + 0x6c], 0x00409a00      ; 32-bit code, limit 19:16 = 0
        mov dword [resume], .a12
        jmp 0x68:runoff
.a12:   CHECK 27, dword [vec], 13
        CHECK 28, dword [eip_seen], runoff + 2
        CHECK 29, dword [err], 0
        ; instruction length: 15 bytes run, 16 raise #GP(0)
        mov dword [vec], -1
        times 14 db 0x3e
        nop
        CHECK 33, dword [vec], -1
        mov dword [resume], .a15
.long:  times 15 db 0x3e
        nop
.a15:   CHECK 34, dword [vec], 13
        CHECK 35, dword [eip_seen], .long
        ; #DF: #NP's gate is not present, so #NP during delivery of #NP -> double fault
        and byte [IDT + 11 * 8 + 5], 0x7f
        mov dword [resume], .a11
        mov ax, 0x48
        mov ds, ax
.a11:   CHECK 25, dword [vec], 8
        CHECK 26, dword [err], 0
        jmp pass

runoff:
        nop
        nop
        nop                             ; beyond the limit: #GP(0)
        jmp near exit

        HANDLER 0, 0
        HANDLER 1, 0
        HANDLER 3, 0
        HANDLER 4, 0
        HANDLER 5, 0
        HANDLER 6, 0
        HANDLER 8, 1
        HANDLER 11, 1
        HANDLER 12, 1
        HANDLER 13, 1
exc_common:
        mov eax, [esp]
        mov [eip_seen], eax
        mov eax, [resume]
        mov [esp], eax
        mov dword [esp + 4], CODE32     ; resume in the flat code segment
        and dword [esp + 8], ~0x100     ; TF off in the restored EFLAGS
        iret

        align 4
vec:    dd 0
err:    dd 0
eip_seen: dd 0
resume: dd 0
bounds: dd 0, 5
scratch: dd 0
