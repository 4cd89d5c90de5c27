; An interrupt between iterations of a REP string pushes EIP = the REP instruction and EFLAGS
; with RF set (SDM: "for any interrupt arriving after any iteration of a repeated string
; instruction but the last iteration, the value pushed for RF is 1"); the string then resumes
; where it stopped and completes. The harness's timer interrupts (vector 0x20) every 1000
; instructions; a long REP SCASB runs across several of them.
%include "boot.inc"

RF      equ 0x10000

main:
        mov eax, irq_handler
        mov ebx, 0x20
        mov edx, 0x8e00
        call set_gate
        mov edi, 0x100000
        mov ecx, 12 << 20               ; 12 MiB of zeros: no byte matches AL
        mov al, 0x55
        cld
        sti
.r:     repne scasb
        cli
        CHECK 1, ecx, 0
        CHECK 2, edi, 0x100000 + (12 << 20)
        cmp dword [mid], 0
        FAILIF e, 3                     ; at least one interrupt came in the middle
        CHECK 4, dword [mid_no_rf], 0
        jmp pass

irq_handler:
        push eax
        mov eax, [esp + 4]
        cmp eax, main.r
        jne .done
        inc dword [mid]
        test dword [esp + 12], RF
        jnz .done
        inc dword [mid_no_rf]
.done:  pop eax
        iret

        align 4
mid:    dd 0
mid_no_rf: dd 0
