; EFLAGS.RF, I/O breakpoints and the order of simultaneous debug events:
; - a fault pushes EFLAGS with RF set; INT n pushes it clear; an instruction-breakpoint #DB pushes
;   it clear (the handler sets it to resume), and RF lasts one instruction after IRET
; - a code breakpoint is reported before the #UD of the same instruction (priority 7 before 9)
; - a single-step trap of the previous instruction comes before the next instruction's code
;   breakpoint (priority 4 before 7); single step and a data breakpoint of one instruction are
;   one #DB (BS and B1)
; - a REP string resumed in chunks reports its code breakpoint once (RF set between iterations)
; - I/O breakpoints (CR4.DE, R/W 10b): IN/OUT on a watched port range trap after the instruction
;   with the B bit; without CR4.DE they do nothing; with it DR4/DR5 are #UD; CPUID reports DE
; - DR6/DR7 reserved bits; any #DB entry clears DR7.GD; INT1 (ICEBP) skips the gate DPL check
%include "boot.inc"

RF      equ 0x10000
TF      equ 0x100
TSS     equ 0x30000

main:
        mov eax, db_handler
        mov ebx, 1
        mov edx, 0x8e00
        call set_gate
        mov eax, ud_handler
        mov ebx, 6
        call set_gate
        mov eax, int40_handler
        mov ebx, 0x40
        call set_gate

        ; --- 1. a fault pushes RF set; the INT n right after the IRET pushes it clear
        mov dword [nlog], 0
.u1:    ud2
        int 0x40
        CHECK 1, dword [nlog], 2
        CHECK 2, dword [logbuf + 0], 6
        CHECK 3, dword [logbuf + 4], .u1
        mov eax, [logbuf + 8]
        and eax, RF
        CHECK 4, eax, RF
        CHECK 5, dword [logbuf + 16], 0x40
        mov eax, [logbuf + 24]
        and eax, RF
        CHECK 6, eax, 0

        ; --- 2. the RF a fault's IRET restores lasts one instruction: a breakpoint armed later fires
        mov dword [nlog], 0
        ud2
        nop
        mov eax, .x2
        mov dr0, eax
        mov eax, 1
        mov dr7, eax
.x2:    inc ecx
        xor eax, eax
        mov dr7, eax
        CHECK 10, dword [nlog], 2
        CHECK 11, dword [logbuf + 16], 1
        CHECK 12, dword [logbuf + 20], .x2

        ; --- 3. code breakpoint on an invalid opcode: #DB (RF clear in the image) before #UD
        mov dword [nlog], 0
        mov eax, .u3
        mov dr0, eax
        mov eax, 1
        mov dr7, eax
.u3:    ud2
        xor eax, eax
        mov dr7, eax
        CHECK 20, dword [nlog], 2
        CHECK 21, dword [logbuf], 1
        CHECK 22, dword [logbuf + 4], .u3
        mov eax, [logbuf + 8]
        and eax, RF
        CHECK 23, eax, 0
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 24, eax, 1                ; B0
        CHECK 25, dword [logbuf + 16], 6
        CHECK 26, dword [logbuf + 20], .u3
        mov eax, [logbuf + 24]
        and eax, RF
        CHECK 27, eax, RF

        ; --- 4. single-step trap after .a4, then the code breakpoint of .b4: two #DBs in order
        mov dword [nlog], 0
        mov eax, .b4
        mov dr0, eax
        mov eax, 1
        mov dr7, eax
        pushfd
        or dword [esp], TF
        popfd
.a4:    nop
.b4:    inc ecx
        xor eax, eax
        mov dr7, eax
        CHECK 30, dword [nlog], 2
        CHECK 31, dword [logbuf], 1
        CHECK 32, dword [logbuf + 4], .b4
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 33, eax, 0x4000           ; BS alone
        mov eax, [logbuf + 8]
        and eax, RF
        CHECK 34, eax, 0                ; a trap pushes RF as it was
        CHECK 35, dword [logbuf + 16], 1
        CHECK 36, dword [logbuf + 20], .b4
        mov eax, [logbuf + 28]
        and eax, 0x400f
        CHECK 37, eax, 1                ; B0 alone

        ; --- 5. single step and a data write breakpoint on one instruction: one #DB, BS and B1
        mov dword [nlog], 0
        mov eax, watch
        mov dr1, eax
        mov eax, (1 << 2) | (01b << 20) | (11b << 22)
        mov dr7, eax
        pushfd
        or dword [esp], TF
        popfd
        mov dword [watch], 5
.a5:    xor eax, eax
        mov dr7, eax
        CHECK 40, dword [nlog], 1
        CHECK 41, dword [logbuf + 4], .a5
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 42, eax, 0x4002

        ; --- 6. a code breakpoint on a REP string that runs in several chunks: one #DB
        mov dword [nlog], 0
        mov eax, .r6
        mov dr0, eax
        mov eax, 1
        mov dr7, eax
        mov edi, 0x100000
        mov ecx, 200000                 ; beyond one visit of the fast path (64 Ki)
        xor eax, eax
        cld
.r6:    rep stosb
        mov dr7, eax
        CHECK 50, dword [nlog], 1
        CHECK 51, ecx, 0
        CHECK 52, edi, 0x100000 + 200000

        ; --- 7. I/O breakpoints
        mov eax, 1
        cpuid
        test edx, 4
        FAILIF z, 60                    ; CPUID.1:EDX.DE
        mov eax, cr4
        or eax, 8                       ; DE
        mov cr4, eax
        mov dword [nlog], 0
        mov eax, 0x80
        mov dr2, eax
        mov eax, (1 << 4) | (10b << 24) | (01b << 26) ; L2, I/O, 2 ports: 0x80..0x81
        mov dr7, eax
        xor eax, eax
        out 0x82, al                    ; not watched
        CHECK 61, dword [nlog], 0
        out 0x81, al
.i1:    CHECK 62, dword [nlog], 1
        CHECK 63, dword [logbuf + 4], .i1
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 64, eax, 4                ; B2
        mov dx, 0x7f
        in eax, dx                      ; ports 0x7f..0x82 overlap the range
.i2:    CHECK 65, dword [nlog], 2
        CHECK 66, dword [logbuf + 20], .i2
        ; a string output hits too
        mov esi, watch
        mov dx, 0x80
        outsb
.i3:    CHECK 67, dword [nlog], 3
        CHECK 68, dword [logbuf + 36], .i3
        ; without CR4.DE, R/W 10b watches no port
        mov eax, cr4
        and eax, ~8
        mov cr4, eax
        out 0x80, al
        CHECK 69, dword [nlog], 3
        ; DR4/DR5: #UD with CR4.DE, aliases of DR6/DR7 without
        mov dword [ud_skip], 3
        mov eax, dr4                    ; DE clear: DR6
        CHECK 70, dword [nlog], 3
        mov eax, cr4
        or eax, 8
        mov cr4, eax
.d4:    mov eax, dr4
        CHECK 71, dword [nlog], 4
        CHECK 72, dword [logbuf + 48], 6
        CHECK 73, dword [logbuf + 52], .d4
.d5:    mov dr5, eax
        CHECK 74, dword [nlog], 5
        CHECK 75, dword [logbuf + 68], .d5
        mov eax, cr4
        and eax, ~8
        mov cr4, eax
        xor eax, eax
        mov dr7, eax

        ; --- 8. DR6 and DR7 reserved bits read as fixed values
        mov eax, 0xffffffff
        mov dr6, eax
        mov eax, dr6
        CHECK 80, eax, 0xffffefff       ; bit 12 reads 0
        xor eax, eax
        mov dr6, eax
        mov eax, dr6
        CHECK 81, eax, 0xffff0ff0
        mov eax, 0xd800                 ; bits 11, 12, 14, 15 read 0, bit 10 reads 1
        mov dr7, eax
        mov eax, dr7
        CHECK 82, eax, 0x400

        ; --- 9. entering the #DB handler clears DR7.GD (its MOV from DR6 does not fault)
        mov dword [nlog], 0
        mov eax, 0x2000
        mov dr7, eax
        pushfd
        or dword [esp], TF
        popfd
        nop
        CHECK 85, dword [nlog], 1
        mov eax, dr7
        and eax, 0x2000
        CHECK 86, eax, 0

        ; --- 10. INT1 (ICEBP) from ring 3 through the DPL0 #DB gate: no privilege check
        mov edi, TSS
        xor eax, eax
        mov ecx, 0x68 / 4
        rep stosd
        mov dword [TSS + 4], 0x60000
        mov dword [TSS + 8], DATA32
        mov word [TSS + 0x66], 0x68
        mov dword [tss_desc], 0x00000068 | (TSS << 16)
        mov dword [tss_desc + 4], 0x00008900 | (TSS >> 16)
        mov ax, TSS_SEL
        ltr ax
        mov eax, back_to_ring0
        mov ebx, 0x41
        mov edx, 0xee00
        call set_gate
        mov dword [nlog], 0
        push dword DATA32_R3
        push dword 0x50000
        push dword 0x002
        push dword CODE32_R3
        push dword .user
        iret
.user:  mov ax, DATA32_R3                ; (the handlers use DS)
        mov ds, ax
        mov es, ax
        db 0xf1                         ; INT1
.after: int 0x41
.ring0: mov ax, DATA32
        mov ds, ax
        mov es, ax
        CHECK 90, dword [nlog], 1
        CHECK 91, dword [logbuf], 1
        CHECK 92, dword [logbuf + 4], .after
        jmp pass

back_to_ring0:
        mov esp, 0x7fff0
        jmp main.ring0

%include "event_log.inc"

; #DB: log, clear DR6, TF off in the image; RF on for an instruction breakpoint (B0)
db_handler:
        pushad
        mov eax, 1
        mov ebx, [esp + 32]
        mov ecx, [esp + 40]
        mov edx, dr6
        call log_event
        xor eax, eax
        mov dr6, eax
        and dword [esp + 40], ~TF
        test edx, 1
        jz .n
        or dword [esp + 40], RF
.n:     popad
        iret

; #UD: log, skip the instruction (ud_skip bytes)
ud_handler:
        pushad
        mov eax, 6
        mov ebx, [esp + 32]
        mov ecx, [esp + 40]
        xor edx, edx
        call log_event
        mov eax, [ud_skip]
        add [esp + 32], eax
        popad
        iret

int40_handler:
        pushad
        mov eax, 0x40
        mov ebx, [esp + 32]
        mov ecx, [esp + 40]
        xor edx, edx
        call log_event
        popad
        iret

        align 4
nlog:   dd 0
ud_skip: dd 2
watch:  dd 0
        dd 0
logbuf: times 64 dd 0
