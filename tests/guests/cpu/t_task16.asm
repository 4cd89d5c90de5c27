; Task switches with a 16-bit (286) TSS and into a virtual-8086 task:
; CALL to a 16-bit TSS (its 16-bit register image loaded, back link, NT, busy bits) and IRET
; back (the outgoing 16-bit state saved in 16-bit fields); CALL to a 32-bit TSS whose EFLAGS
; has VM set (the task starts in v86 mode with real-mode segments), INT n from it to a ring-0
; handler on the TSS's ring-0 stack (the v86 frame), and a task return (IRET with NT) from there;
; a 32-bit TSS with its debug trap bit (T): #DB (DR6.BT) before the new task's first instruction.
%include "boot.inc"
TSS_A   equ 0x30000
TSS_B   equ 0x31000                     ; 16-bit
TSS_C   equ 0x32000                     ; v86
SEL_B   equ 0x48
SEL_C   equ 0x50
TSS_D   equ 0x33000                     ; T bit
SEL_D   equ 0x58

main:
        ; task A: the current 32-bit task
        mov edi, TSS_A
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov word [TSS_A + 0x66], 0x68
        mov dword [tss_desc], ((TSS_A & 0xffff) << 16) | 0x67
        mov dword [tss_desc + 4], ((TSS_A >> 16) & 0xff) | 0x8900
        ; task B: a 16-bit TSS (type 1), limit 0x2b
        mov edi, TSS_B
        xor eax, eax
        mov ecx, 0x2c / 2
        rep stosw
        mov word [TSS_B + 0x0e], task_b         ; IP
        mov word [TSS_B + 0x10], 0x0002         ; FLAGS
        mov word [TSS_B + 0x12], 0x1234         ; AX
        mov word [TSS_B + 0x14], 0x2345         ; CX
        mov word [TSS_B + 0x18], 0x5678         ; BX
        mov word [TSS_B + 0x1a], 0x6000         ; SP
        mov word [TSS_B + 0x1c], 0x7777         ; BP
        mov word [TSS_B + 0x22], DATA32         ; ES
        mov word [TSS_B + 0x24], CODE32         ; CS
        mov word [TSS_B + 0x26], DATA32         ; SS
        mov word [TSS_B + 0x28], DATA32         ; DS
        mov dword [gdt + SEL_B], ((TSS_B & 0xffff) << 16) | 0x2b
        mov dword [gdt + SEL_B + 4], ((TSS_B >> 16) & 0xff) | 0x8100
        ; task C: 32-bit TSS entering v86 mode at 0800:(v86code - 0x8000), IOPL 3
        mov edi, TSS_C
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov dword [TSS_C + 0x04], 0x6c000       ; ESP0
        mov dword [TSS_C + 0x08], DATA32        ; SS0
        mov dword [TSS_C + 0x20], v86code - 0x8000
        mov dword [TSS_C + 0x24], 0x23002       ; VM, IOPL 3
        mov dword [TSS_C + 0x38], 0x1000        ; SP: 0700:1000 = linear 0x8000, below the code
        mov dword [TSS_C + 0x28], 0xaaaa        ; EAX
        mov dword [TSS_C + 0x48], 0x0900        ; ES
        mov dword [TSS_C + 0x4c], 0x0800        ; CS
        mov dword [TSS_C + 0x50], 0x0700        ; SS
        mov dword [TSS_C + 0x54], 0x0800        ; DS
        mov dword [TSS_C + 0x58], 0x0a00        ; FS
        mov dword [TSS_C + 0x5c], 0x0b00        ; GS
        mov word [TSS_C + 0x66], 0x68
        mov dword [gdt + SEL_C], ((TSS_C & 0xffff) << 16) | 0x67
        mov dword [gdt + SEL_C + 4], ((TSS_C >> 16) & 0xff) | 0x8900
        ; INT 0x40 from v86: a DPL3 interrupt gate to ring 0
        mov eax, v86_int
        mov ebx, 0x40
        mov edx, 0xee00
        call set_gate
        mov ax, TSS_SEL
        ltr ax

        ; --- to the 16-bit task and back
        mov eax, 0xdead0001
        mov ebp, 0xdead0002
        call SEL_B:0
        CHECK 1, eax, 0xdead0001        ; A's registers from its 32-bit TSS
        CHECK 2, ebp, 0xdead0002
        CHECK 3, dword [b_ax], 0x1234   ; B started with its TSS image
        CHECK 4, dword [b_bx], 0x5678
        CHECK 5, dword [b_sp], 0x6000
        CHECK 6, dword [b_link], TSS_SEL
        CHECK 7, dword [b_nt], 0x4000
        CHECK 8, dword [b_busy], 0x83   ; a busy 286 TSS
        mov al, [gdt + SEL_B + 5]
        CHECK 9, al, 0x81               ; available again after its IRET
        ; B's outgoing state in the 16-bit fields
        CHECK 10, word [TSS_B + 0x12], 0x4321   ; AX
        CHECK 11, word [TSS_B + 0x1a], 0x6000   ; SP
        CHECK 12, word [TSS_B + 0x0e], task_b.after_iret ; IP after its IRET
        mov eax, cr0
        test eax, 8
        FAILIF z, 13
        clts

        ; --- to the v86 task: INT 0x40 there, task return from the handler
        mov eax, 0xdead0003
        call SEL_C:0
        CHECK 20, eax, 0xdead0003
        CHECK 21, dword [v86_ran], 0xaaaa       ; v86 code saw EAX from the TSS
        CHECK 22, dword [v86_cs], 0x0800        ; the v86 frame on the ring-0 stack
        CHECK 23, dword [v86_ip], v86code.after_int - 0x8000
        mov eax, [v86_fl]
        and eax, 0x20000
        CHECK 24, eax, 0x20000                  ; VM in the pushed EFLAGS
        CHECK 25, dword [v86_ds], 0x0800
        CHECK 26, dword [v86_es], 0x0900
        CHECK 27, dword [v86_gs], 0x0b00
        CHECK 28, dword [v86_ss], 0x0700
        CHECK 29, dword [v86_mark], 0x5aa5      ; written through DS = 0800 (real-mode base)
        CHECK 30, dword [v86_handler_esp], 0x6c000 - 9 * 4 ; ESP0 minus the v86 frame
        mov al, [gdt + SEL_C + 5]
        CHECK 31, al, 0x89
        mov al, [tss_desc + 5]
        CHECK 32, al, 0x8b

        ; --- a TSS with the T bit: #DB trap at the new task's first instruction
        mov edi, TSS_D
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov dword [TSS_D + 0x20], task_d
        mov dword [TSS_D + 0x24], 2
        mov dword [TSS_D + 0x38], 0x6a000
        mov dword [TSS_D + 0x48], DATA32
        mov dword [TSS_D + 0x4c], CODE32
        mov dword [TSS_D + 0x50], DATA32
        mov dword [TSS_D + 0x54], DATA32
        mov dword [TSS_D + 0x58], DATA32
        mov dword [TSS_D + 0x5c], DATA32
        mov word [TSS_D + 0x64], 1              ; T
        mov word [TSS_D + 0x66], 0x68
        mov dword [gdt + SEL_D], ((TSS_D & 0xffff) << 16) | 0x67
        mov dword [gdt + SEL_D + 4], ((TSS_D >> 16) & 0xff) | 0x8900
        mov eax, db_handler
        mov ebx, 1
        mov edx, 0x8e00
        call set_gate
        xor eax, eax
        mov dr6, eax
        call SEL_D:0
        CHECK 40, dword [db_count], 1
        CHECK 41, dword [db_eip], task_d        ; before its first instruction
        mov eax, [db_dr6]
        and eax, 0x8000
        CHECK 42, eax, 0x8000                   ; BT
        CHECK 43, dword [d_ran], 1

        ; --- single step over the CALL into a T-bit task: one #DB (BT and BS together) before the
        ; new task's first instruction; back in this task (its TF restored) one more after an
        ; instruction
        mov dword [TSS_D + 0x20], task_d
        mov dword [TSS_D + 0x24], 2
        mov dword [TSS_D + 0x38], 0x6a000
        mov dword [db_count], 0
        mov dword [db_dr6_first], 0
        pushfd
        or dword [esp], 0x100
        popfd
        call SEL_D:0
        nop
        CHECK 44, dword [d_count], 1            ; one #DB before task D ran
        mov eax, [db_dr6_first]
        and eax, 0xc000
        CHECK 45, eax, 0xc000                   ; BT and BS
        CHECK 46, dword [db_count], 2
        jmp pass

task_d:
        mov dword [d_ran], 1
        push dword [db_count]
        pop dword [d_count]
        iret

db_handler:
        push eax
        inc dword [db_count]
        mov eax, [esp + 4]
        mov [db_eip], eax
        mov eax, dr6
        mov [db_dr6], eax
        cmp dword [db_count], 1
        jne .later
        mov [db_dr6_first], eax
.later: and dword [esp + 12], ~0x100            ; TF off in the image
        xor eax, eax
        mov dr6, eax
        pop eax
        iret

task_b:
        mov [b_ax], eax
        and dword [b_ax], 0xffff
        mov [b_bx], ebx
        and dword [b_bx], 0xffff
        mov [b_sp], esp
        and dword [b_sp], 0xffff
        movzx eax, word [TSS_B]
        mov [b_link], eax
        pushfd
        pop eax
        and eax, 0x4000
        mov [b_nt], eax
        movzx eax, byte [gdt + SEL_B + 5]
        mov [b_busy], eax
        mov ax, 0x4321
        iret
.after_iret:
        jmp near exit

        bits 16
v86code:
        mov [v86_ran - 0x8000], eax     ; DS = 0800
        mov word [v86_mark - 0x8000], 0x5aa5
        int 0x40
.after_int:
        jmp $
        bits 32

v86_int:
        mov ax, DATA32                  ; the data segments are null after a v86 interrupt
        mov ds, ax
        mov es, ax
        mov [v86_handler_esp], esp
        mov eax, [esp]
        mov [v86_ip], eax
        mov eax, [esp + 4]
        mov [v86_cs], eax
        mov eax, [esp + 8]
        mov [v86_fl], eax
        mov eax, [esp + 16]
        mov [v86_ss], eax
        mov eax, [esp + 20]
        mov [v86_es], eax
        mov eax, [esp + 24]
        mov [v86_ds], eax
        mov eax, [esp + 32]
        mov [v86_gs], eax
        pushfd                          ; a task return: IRET with NT
        or dword [esp], 0x4000
        popfd
        iret

        align 4
b_ax:   dd 0
b_bx:   dd 0
b_sp:   dd 0
b_link: dd 0
b_nt:   dd 0
b_busy: dd 0
v86_ran: dd 0
v86_mark: dd 0
v86_ip: dd 0
v86_cs: dd 0
v86_fl: dd 0
v86_ss: dd 0
v86_es: dd 0
v86_ds: dd 0
v86_gs: dd 0
v86_handler_esp: dd 0
db_count: dd 0
db_eip: dd 0
db_dr6: dd 0
d_ran:  dd 0
d_count: dd 0
db_dr6_first: dd 0
