; Privilege levels: ring 3 via IRET, INT to a DPL3 gate with a stack switch through the TSS,
; #GP for privileged instructions, IOPL and the I/O permission bitmap, a call gate, segment
; privilege checks, software INT to a DPL0 gate.
%include "boot.inc"
TSS     equ 0x30000
main:
        ; TSS: ESP0/SS0, I/O bitmap at +0x68 allowing only port 0x80
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
        and byte [TSS + 0x68 + 0x80 / 8], ~1
        and byte [TSS + 0x68 + 0xf4 / 8], 0x0f     ; the exit port (dword: f4..f7) in ring 3
        mov dword [tss_desc], 0x00002068
        mov dword [tss_desc + 4], 0x00008903
        mov ax, TSS_SEL
        ltr ax
        ; the TSS is now busy
        mov al, [tss_desc + 5]
        CHECK 1, al, 0x8b
        ; call gate (DPL3) to gate_target
        mov eax, gate_target
        mov [callgate_desc], ax
        mov word [callgate_desc + 2], CODE32
        mov word [callgate_desc + 4], 0xec00
        shr eax, 16
        mov [callgate_desc + 6], ax
        ; gates
        mov eax, int80
        mov ebx, 0x80
        mov edx, 0xee00
        call set_gate
        mov eax, int81
        mov ebx, 0x81
        call set_gate
        mov eax, int80
        mov ebx, 0x82
        mov edx, 0x8e00                 ; DPL0: INT 0x82 from ring 3 is #GP
        call set_gate
        mov eax, gp_handler
        mov ebx, 13
        call set_gate
        ; SYSENTER/SYSEXIT: CS from SYSENTER_CS (0x18) and +8 (SS); SYSEXIT to +16|3 and +24|3
        xor edx, edx
        mov ecx, 0x174
        mov eax, 0x18
        wrmsr
        mov ecx, 0x175
        mov eax, 0x64000
        wrmsr
        mov ecx, 0x176
        mov eax, sysenter_target
        wrmsr
        ; to ring 3
        push dword DATA32_R3
        push dword 0x50000
        push dword 0x002
        push dword CODE32_R3
        push dword user
        iret

user:
        mov ax, DATA32_R3
        mov ds, ax
        mov es, ax
        mov ax, cs
        and eax, 3
        CHECK 2, eax, 3
        ; INT to a DPL3 gate: ring 0 on the TSS stack
        mov eax, 0
        int 0x80
        CHECK 3, eax, 0x1234
        CHECK 4, dword [seen_cs], CODE32_R3
        CHECK 5, dword [seen_ss], DATA32_R3
        CHECK 6, dword [seen_esp], 0x60000 - 20
        CHECK 7, dword [seen_uesp], 0x50000
        CHECK 8, esp, 0x50000
        ; CLI with IOPL 0 in ring 3: #GP(0)
        mov dword [gp_resume], .after_cli
        cli
        CHECK 9, dword [gp_count], 0    ; not reached
.after_cli:
        CHECK 10, dword [gp_count], 1
        CHECK 11, dword [gp_code], 0
        ; I/O bitmap: port 0x80 allowed, 0x81 not
        mov dword [gp_resume], .after_in80
        in al, 0x80
.after_in80:
        CHECK 12, dword [gp_count], 1
        mov dword [gp_resume], .after_in81
        in al, 0x81
.after_in81:
        CHECK 13, dword [gp_count], 2
        ; privileged: MOV from CR0, HLT
        mov dword [gp_resume], .after_cr0
        mov eax, cr0
.after_cr0:
        CHECK 14, dword [gp_count], 3
        mov dword [gp_resume], .after_hlt
        hlt
.after_hlt:
        CHECK 15, dword [gp_count], 4
        ; loading a DPL0 data segment: #GP(selector)
        mov dword [gp_resume], .after_ds
        mov ax, DATA32
        mov ds, ax
.after_ds:
        CHECK 16, dword [gp_count], 5
        CHECK 17, dword [gp_code], DATA32
        ; INT to a DPL0 gate: #GP(vector * 8 + 2)
        mov dword [gp_resume], .after_int82
        int 0x82
.after_int82:
        CHECK 18, dword [gp_count], 6
        CHECK 19, dword [gp_code], 0x82 * 8 + 2
        ; call gate to ring 0 and back with RETF
        call CALLGATE:0
        CHECK 20, eax, 0x5678
        CHECK 21, dword [seen_cs], CODE32_R3
        mov ax, cs
        and eax, 3
        CHECK 22, eax, 3
        ; SYSENTER to ring 0 and SYSEXIT back
        mov ecx, esp
        mov edx, .after_sysexit
        sysenter
.after_sysexit:
        CHECK 23, eax, 0x777
        mov ax, cs
        CHECK 24, ax, CODE32_R3
        mov ax, ss
        CHECK 25, ax, DATA32_R3
        CHECK 26, esp, 0x50000
        ; done: INT 0x81 ends the test in ring 0
        int 0x81

int80:
        mov eax, [esp + 4]
        mov [seen_cs], eax
        mov eax, [esp + 16]
        mov [seen_ss], eax
        mov eax, [esp + 12]
        mov [seen_uesp], eax
        mov [seen_esp], esp
        mov eax, 0x1234
        iret

int81:
        mov ax, cs
        CHECK 30, ax, CODE32
        jmp pass

gate_target:
        mov eax, [esp + 4]
        mov [seen_cs], eax
        mov ax, cs
        CHECK 31, ax, CODE32
        mov eax, 0x5678
        retf

sysenter_target:
        mov ax, cs
        CHECK 32, ax, 0x18
        mov ax, ss
        CHECK 33, ax, 0x20
        CHECK 34, esp, 0x64000
        mov eax, 0x777
        sysexit

gp_handler:
        inc dword [gp_count]
        pop dword [gp_code]
        push eax
        mov eax, [gp_resume]
        mov [esp + 4], eax
        pop eax
        iret

        align 4
seen_cs: dd 0
seen_ss: dd 0
seen_esp: dd 0
seen_uesp: dd 0
gp_count: dd 0
gp_code: dd 0
gp_resume: dd 0
