; Task switches: CALL to a TSS (back link, NT, busy bits, CR0.TS) and IRET back;
; a double fault through an IDT task gate into its own task (error code on its stack).
%include "boot.inc"
TSS_A   equ 0x30000
TSS_B   equ 0x31000
TSS_C   equ 0x32000
SEL_B   equ 0x48
SEL_C   equ 0x50
GATE_B  equ 0x58

; TSSDESC base -> writes a 32-bit available TSS descriptor (limit 0x67) at [edi]
%macro TSSDESC 1
        mov dword [edi], ((%1 & 0xffff) << 16) | 0x67
        mov dword [edi + 4], ((%1 >> 16) & 0xff) | 0x8900 | (%1 & 0xff000000)
%endmacro

; INITTSS base, eip, esp
%macro INITTSS 3
        mov edi, %1
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov dword [%1 + 0x20], %2       ; EIP
        mov dword [%1 + 0x24], 2        ; EFLAGS
        mov dword [%1 + 0x38], %3       ; ESP
        mov dword [%1 + 0x48], DATA32   ; ES
        mov dword [%1 + 0x4c], CODE32   ; CS
        mov dword [%1 + 0x50], DATA32   ; SS
        mov dword [%1 + 0x54], DATA32   ; DS
        mov dword [%1 + 0x58], DATA32   ; FS
        mov dword [%1 + 0x5c], DATA32   ; GS
        mov word [%1 + 0x66], 0x68
%endmacro

main:
        INITTSS TSS_A, 0, 0
        INITTSS TSS_B, task_b, 0x68000
        INITTSS TSS_C, task_c, 0x6c000
        mov edi, tss_desc
        TSSDESC TSS_A
        mov edi, gdt + SEL_B
        TSSDESC TSS_B
        mov edi, gdt + SEL_C
        TSSDESC TSS_C
        ; task gate to TSS_B in the GDT
        mov dword [gdt + GATE_B], SEL_B << 16
        mov dword [gdt + GATE_B + 4], 0x8500
        mov ax, TSS_SEL
        ltr ax
        ; CALL to task B; B returns with IRET
        mov eax, 0x1111
        mov esi, 0x2222
        call SEL_B:0
        CHECK 1, eax, 0x1111            ; restored from TSS A
        CHECK 2, esi, 0x2222
        CHECK 3, dword [b_ran], 1
        CHECK 4, dword [b_link], TSS_SEL
        CHECK 5, dword [b_nt], 0x4000
        mov al, [gdt + SEL_B + 5]
        CHECK 6, al, 0x89               ; B no longer busy after its IRET
        mov al, [tss_desc + 5]
        CHECK 7, al, 0x8b               ; A busy
        pushfd
        pop eax
        test eax, 0x4000
        FAILIF nz, 8                    ; NT clear in A
        mov eax, cr0
        test eax, 8
        FAILIF z, 9                     ; TS set by the switch
        clts
        ; #DF through a task gate: IDT[8] -> TSS C; #NP's gate is not present
        mov dword [IDT + 8 * 8], SEL_C << 16
        mov dword [IDT + 8 * 8 + 4], 0x8500
        and byte [IDT + 11 * 8 + 5], 0x7f
        mov dword [gdt + 0x60], 0x0000ffff      ; a not-present data segment
        mov dword [gdt + 0x64], 0x00cf1200
        mov ax, 0x60
        mov ds, ax                      ; #NP -> #NP on delivery -> #DF -> task C
        jmp near exit                   ; not reached (eax = selector: fails)

task_b:
        mov dword [b_ran], 1
        mov ax, [TSS_B]
        movzx eax, ax
        mov [b_link], eax
        pushfd
        pop eax
        and eax, 0x4000
        mov [b_nt], eax
        mov eax, 0x9999                 ; clobbered registers stay in B's TSS
        mov esi, 0
        iret

task_c:
        pop eax                         ; the #DF error code
        CHECK 20, eax, 0
        movzx eax, word [TSS_C]
        CHECK 21, eax, TSS_SEL          ; back link to the task that faulted
        mov al, [gdt + SEL_C + 5]
        CHECK 22, al, 0x8b
        jmp pass

        align 4
b_ran:  dd 0
b_link: dd 0
b_nt:   dd 0
