; boot sector: print through the debug console, switch to protected mode, check a loop's sum,
; print the verdict, power off through ACPI PM1a_CNT (S5) at the base the firmware programmed
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
.off:   ; PIIX4 PM base from PCI 00:01.3 config register 40h (PMBA), then PM1a_CNT = base + 4
        mov eax, 0x80000b40
        mov dx, 0xcf8
        out dx, eax
        mov dx, 0xcfc
        in eax, dx
        and eax, 0xffc0
        lea edx, [eax + 4]
        mov ax, 0x2000                  ; SLP_EN, SLP_TYP 0 (S5)
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
