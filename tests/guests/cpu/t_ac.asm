; Alignment check: with CR0.AM and EFLAGS.AC a misaligned word/dword data access at CPL 3 is
; #AC(0), a fault (EIP of the access); not at CPL 0, not with AC or AM clear, never for bytes;
; POPF in ring 3 turns AC on and off; a push through a misaligned ESP faults too.
%include "boot.inc"
TSS     equ 0x30000
main:
        ; TSS: ESP0/SS0 and an I/O bitmap allowing the exit port in ring 3
        mov edi, TSS
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov dword [TSS + 4], 0x60000
        mov dword [TSS + 8], DATA32
        mov word [TSS + 0x66], 0x68
        mov edi, TSS + 0x68
        mov al, 0xff
        mov ecx, 8192 + 1
        rep stosb
        and byte [TSS + 0x68 + 0xf4 / 8], 0x0f
        mov dword [tss_desc], 0x00002068
        mov dword [tss_desc + 4], 0x00008903
        mov ax, TSS_SEL
        ltr ax
        mov eax, ac_handler
        mov ebx, 17
        mov edx, 0x8e00
        call set_gate
        mov eax, back_to_ring0
        mov ebx, 0x80
        mov edx, 0xee00
        call set_gate
        ; CR0.AM on; AC on; ring 0 is never checked
        mov eax, cr0
        or eax, 0x40000
        mov cr0, eax
        pushfd
        or dword [esp], 0x40000
        popfd
        mov eax, [buf + 1]
        mov [buf + 5], ax
        CHECK 1, dword [ac_count], 0
        ; to ring 3 with AC set
        push dword DATA32_R3
        push dword 0x50000
        push dword 0x40002
        push dword CODE32_R3
        push dword user
        iret

user:
        mov ax, DATA32_R3
        mov ds, ax
        mov es, ax
        mov eax, [buf]                  ; aligned: fine
        mov ax, [buf + 2]
        mov al, [buf + 3]               ; bytes: never
        CHECK 2, dword [ac_count], 0
        mov dword [resume], .a1
.m1:    mov eax, [buf + 1]
        jmp fail_r3
.a1:    CHECK 3, dword [ac_count], 1
        CHECK 4, dword [eip_seen], .m1
        CHECK 5, dword [err], 0
        mov dword [resume], .a2
.m2:    mov [buf + 3], ax               ; a misaligned word write
        jmp fail_r3
.a2:    CHECK 6, dword [ac_count], 2
        CHECK 7, dword [eip_seen], .m2
        ; a push through a misaligned ESP: faults, ESP unchanged
        mov ebx, esp
        sub esp, 2
        mov ecx, esp
        mov dword [resume], .a3
.m3:    push eax
        jmp fail_r3
.a3:    CHECK 8, dword [ac_count], 3
        CHECK 9, dword [eip_seen], .m3
        CHECK 10, esp, ecx
        mov esp, ebx
        ; POPF clears AC: no more checks
        pushfd
        and dword [esp], ~0x40000
        popfd
        mov eax, [buf + 1]
        CHECK 11, dword [ac_count], 3
        ; and sets it again
        pushfd
        or dword [esp], 0x40000
        popfd
        mov dword [resume], .a4
.m4:    mov eax, [buf + 7]
        jmp fail_r3
.a4:    CHECK 12, dword [ac_count], 4
        CHECK 13, dword [eip_seen], .m4
        int 0x80

fail_r3:
        mov dword [check_no], 99
        jmp fail

back_to_ring0:
        ; ring 0 again (AC still set in EFLAGS? the interrupt gate cleared it: no check anyway)
        mov eax, [buf + 1]
        CHECK 20, dword [ac_count], 4
        ; ring 3 with AC but CR0.AM clear: nothing
        mov eax, cr0
        and eax, ~0x40000
        mov cr0, eax
        push dword DATA32_R3
        push dword 0x50000
        push dword 0x40002
        push dword CODE32_R3
        push dword user2
        iret
user2:
        mov eax, [buf + 1]
        mov [buf + 3], eax
        CHECK 21, dword [ac_count], 4
        jmp pass

ac_handler:
        pop dword [err]
        push eax
        mov eax, [esp + 4]
        mov [eip_seen], eax
        mov eax, [resume]
        mov [esp + 4], eax
        inc dword [ac_count]
        pop eax
        iret

        align 4
ac_count: dd 0
err:    dd -1
eip_seen: dd 0
resume: dd 0
buf:    dd 0x11223344, 0x55667788, 0
