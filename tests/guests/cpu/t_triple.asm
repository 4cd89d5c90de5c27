; Triple fault: with an empty IDT, #UD cannot be delivered (#GP), nor can the #GP (#DF), nor
; the #DF: the CPU shuts down (the harness sees bus.shutdown("triple fault")).
%include "boot.inc"
main:
        lidt [empty_idt]
        ud2
        jmp pass                        ; not reached
empty_idt:
        dw 0
        dd 0
