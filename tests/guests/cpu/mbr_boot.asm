; boot sector: print through the debug console, switch to protected mode with paging,
; compute a checksum, print it, power off through ACPI PM1a_CNT (S5)
bits 16
org 0x7c00
        cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7c00
        mov si, msg
        call print
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 8:pm
print:  lodsb
        test al, al
        jz .r
        mov dx, 0x402
        out dx, al
        jmp print
.r:     ret
bits 32
pm:     mov ax, 16
        mov ds, ax
        mov ss, ax
        mov es, ax
        mov esp, 0x90000
        ; sum 1..100000 with a loop
        xor eax, eax
        mov ecx, 100000
.l:     add eax, ecx
        loop .l
        cmp eax, 5000050000 & 0xffffffff
        jne .bad
        mov esi, okmsg
        jmp .p
.bad:   mov esi, badmsg
.p:     lodsb
        test al, al
        jz .off
        mov dx, 0x402
        out dx, al
        jmp .p
.off:   mov dx, 0xb004
        mov ax, 0x2000
        out dx, ax
        hlt
msg:    db "MBR: real mode ok", 10, 0
okmsg:  db "MBR: protected mode loop ok", 10, 0
badmsg: db "MBR: protected mode loop WRONG", 10, 0
align 8
gdt:    dq 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
gdtr:   dw 23
        dd gdt
times 510-($-$$) db 0
dw 0xaa55
