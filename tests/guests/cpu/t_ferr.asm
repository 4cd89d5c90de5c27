; x87 error reporting with CR0.NE clear (the PC's MS-DOS-compatible way): an unmasked exception
; asserts FERR# at the next waiting x87 instruction instead of raising #MF; the harness latches it
; into an interrupt (vector 0x75, IRQ 13 behind the slave PIC on a PC) that a write to port 0xF0
; clears. FERR# stays active until FNCLEX; with IF clear the interrupt waits for STI. With
; CR0.NE set the same error is #MF (vector 16) and FERR# stays inactive.
%include "boot.inc"

main:
        mov eax, irq13_handler
        mov ebx, 0x75
        mov edx, 0x8e00
        call set_gate
        mov eax, mf_handler
        mov ebx, 16
        call set_gate
        mov eax, cr0
        and eax, ~0x20                  ; NE clear
        mov cr0, eax

        ; --- 1. 1/0 with ZE unmasked: nothing until the next waiting instruction
        sti
        fninit
        fldcw [cw_ze]
        fld1
        fldz
        fdivp st1, st0                  ; ZE pending (ES set)
        nop
        CHECK 1, dword [irq13_count], 0
        fwait                           ; FERR#: the interrupt follows this instruction
        CHECK 2, dword [irq13_count], 1
        fnstsw ax
        test ax, 0x80                   ; the handler's FNCLEX cleared ES
        FAILIF nz, 3
        fwait                           ; nothing pending any more
        CHECK 4, dword [irq13_count], 1

        ; --- 2. with IF clear the latched request waits for STI
        cli
        fld1
        fldz
        fdivp st1, st0
        fld1                            ; a waiting x87 instruction: FERR#
        nop
        CHECK 10, dword [irq13_count], 1
        sti
        nop
        CHECK 11, dword [irq13_count], 2
        fstp st0
        fstp st0

        ; --- 3. a handler that clears the latch (port 0xF0) but not the error: FERR# stays active,
        ; so later waiting instructions raise no new request until FNCLEX
        mov dword [skip_fnclex], 1
        fld1
        fldz
        fdivp st1, st0
        fwait
        CHECK 20, dword [irq13_count], 3
        fwait
        fwait
        CHECK 21, dword [irq13_count], 3
        fnclex
        mov dword [skip_fnclex], 0
        fld1
        fldz
        fdivp st1, st0
        fwait                           ; a new error: a new request
        CHECK 22, dword [irq13_count], 4
        fstp st0

        ; --- 4. CR0.NE set: #MF instead, no interrupt
        mov eax, cr0
        or eax, 0x20
        mov cr0, eax
        fld1
        fldz
        fdivp st1, st0
.mf:    fwait
        CHECK 30, dword [mf_count], 1
        CHECK 31, dword [mf_eip], .mf
        CHECK 32, dword [irq13_count], 4
        cli
        jmp pass

irq13_handler:
        push eax
        inc dword [irq13_count]
        mov al, 0
        out 0xf0, al                    ; clear the FERR# latch
        cmp dword [skip_fnclex], 0
        jne .keep
        fnclex
.keep:  pop eax
        iret

mf_handler:
        push eax
        inc dword [mf_count]
        mov eax, [esp + 4]
        mov [mf_eip], eax
        fnclex
        pop eax
        iret

        align 4
irq13_count: dd 0
mf_count: dd 0
mf_eip: dd 0
skip_fnclex: dd 0
cw_ze:  dw 0x037b                       ; all masked but ZE
