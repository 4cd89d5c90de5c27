; Boot sector for running a benchmark program on a real PC emulator (the peer): loads 64
; sectors from LBA 1 to 0000:8000 with INT 13h AH=42h and enters it as boot.inc expects.
bits 16
org 0x7c00
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        mov si, dap
        mov ah, 0x42
        mov dl, 0x80
        int 0x13
        jc .fail
        jmp 0:0x8000
.fail:  mov eax, 0xdead
        out 0xf4, eax
        hlt
dap:    db 0x10, 0
        dw 64                           ; sectors
        dw 0x8000, 0                    ; offset, segment
        dq 1                            ; first LBA
times 510-($-$$) db 0
dw 0xaa55
