; External interrupts: HLT waits for the next one; STI's one-instruction shadow; IF=0 holds
; them off; the handler sees the return address after the HLT.
%include "boot.inc"
main:
        mov eax, tick
        mov ebx, 0x20
        mov edx, 0x8e00
        call set_gate
        ; with IF=0 a pending interrupt is not taken
        mov ecx, 1000
.spin:  loop .spin
        CHECK 1, dword [ticks], 0
        sti
        nop                             ; the shadow: taken at the earliest after this
.wait:  hlt
.after_hlt:
        cmp dword [ticks], 5
        jb .wait
        cli
        CHECK 2, dword [last_eip], .after_hlt
        jmp pass

tick:
        inc dword [ticks]
        mov eax, [esp]
        mov [last_eip], eax
        iret

        align 4
ticks:  dd 0
last_eip: dd 0
