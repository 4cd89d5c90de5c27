; Virtual-8086 mode: entered with IRET (VM=1), real-mode segment arithmetic, INT n to a
; protected-mode handler (IOPL 3) with the v86 frame (ES/DS/FS/GS pushed, data segments nulled),
; return with IRET, then IOPL 0: CLI and INT n raise #GP(0) to the monitor.
%include "boot.inc"
TSS     equ 0x30000
main:
        mov edi, TSS
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov dword [TSS + 4], 0x60000
        mov dword [TSS + 8], DATA32
        mov word [TSS + 0x66], 0x68     ; no bitmap (beyond the limit)
        mov dword [tss_desc], 0x00000067
        mov dword [tss_desc + 4], 0x00008903
        mov ax, TSS_SEL
        ltr ax
        mov eax, int30
        mov ebx, 0x30
        mov edx, 0xee00
        call set_gate
        mov eax, gp_handler
        mov ebx, 13
        mov edx, 0x8e00
        call set_gate
        ; enter v86 at v86_code with IOPL 3
        push dword 0                    ; GS
        push dword 0                    ; FS
        push dword 0x2000               ; DS
        push dword 0x2000               ; ES
        push dword 0x7000               ; SS
        push dword 0xfffe               ; ESP
        push dword 0x00023002           ; EFLAGS: VM, IOPL 3
        push dword (v86_code - $$ + 0x8000) >> 4        ; CS
        push dword 0                    ; EIP
        iret

int30:
        mov ax, DATA32
        mov ds, ax
        mov es, ax
        inc dword [int_count]
        CHECK 1, dword [esp + 4], (v86_code - $$ + 0x8000) >> 4     ; CS
        mov eax, [esp + 8]
        test eax, 0x20000
        FAILIF z, 2                                 ; VM in the pushed EFLAGS
        CHECK 3, dword [esp + 16], 0x7000           ; SS
        CHECK 4, dword [esp + 24], 0x1234           ; DS as the v86 code left it
        CHECK 5, dword [esp + 20], 0x2000           ; ES
        CHECK 6, dword [0x12340], 0xabcd            ; written by v86 code through DS=1234h
        ; back to v86 with IOPL 0
        and dword [esp + 8], ~0x3000
        iret

gp_handler:
        mov ax, DATA32
        mov ds, ax
        inc dword [gp_count]
        CHECK 10, dword [esp], 0                    ; error code 0
        mov eax, [esp + 12]
        test eax, 0x20000
        FAILIF z, 11
        cmp dword [gp_count], 2
        je .done
        add dword [esp + 4], 1                      ; skip the one-byte CLI
        add esp, 4
        iret
.done:
        CHECK 12, dword [int_count], 1
        CHECK 13, dword [v86_ax], 0x5a5a
        jmp pass

        align 16
        bits 16
v86_code:
        mov ax, 0x1234
        mov ds, ax
        mov word [0], 0xabcd
        mov ax, ss
        cmp ax, 0x7000
        jne .bad
        int 0x30                        ; IOPL 3: through the IDT to ring 0
        mov ax, 0x5a5a
        push ax
        xor ax, ax
        mov ds, ax                      ; DS = 0 in v86 is an ordinary segment
        pop ax
        mov [v86_ax], ax                ; linear = 0 + offset of v86_ax (< 64K)
        cli                             ; IOPL 0: #GP, the monitor skips it
        int 0x31                        ; IOPL 0: #GP, the monitor ends the test
.bad:
        jmp .bad
        bits 32

        align 4
int_count: dd 0
gp_count: dd 0
v86_ax: dd 0
