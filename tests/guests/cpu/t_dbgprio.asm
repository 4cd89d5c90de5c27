; Priority among simultaneous debug events, NMI and faults (SDM "Priority Among Simultaneous
; Exceptions and Interrupts"), and MOV SS's hold on debug traps:
; - MOV SS / MOV SS from memory hold their single-step and data-breakpoint traps until after the
;   next instruction (one #DB there); if that instruction faults, the held #DB comes right after
;   the fault's delivery, before its handler's first instruction
; - a single-step trap (priority 4) is delivered before a pending NMI (5): the NMI then comes
;   before the #DB handler's first instruction
; - an NMI (5) comes before the next instruction's code breakpoint (7)
; - a code breakpoint (7) comes before the fetch page fault of the same instruction (8)
; - a REP string traps after each iteration (single step, data breakpoint) with EIP at the REP
;   instruction and RF set in the pushed EFLAGS until the last iteration
; The harness raises an NMI on a write to port 0x80.
%include "boot.inc"

TF      equ 0x100
RF      equ 0x10000
PD      equ 0x30000

main:
        mov eax, db_handler
        mov ebx, 1
        mov edx, 0x8e00
        call set_gate
        mov eax, nmi_handler
        mov ebx, 2
        call set_gate
        mov eax, ud_handler
        mov ebx, 6
        call set_gate
        mov eax, pf_handler
        mov ebx, 14
        call set_gate

        ; --- 1. single step over MOV SS: one #DB, after the instruction that follows it
        mov dword [nlog], 0
        mov ax, ss
        pushfd
        or dword [esp], TF
        popfd
        mov ss, ax
        mov ecx, ecx
.m2:    CHECK 1, dword [nlog], 1
        CHECK 2, dword [logbuf + 4], .m2
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 3, eax, 0x4000

        ; --- 2. a data breakpoint on MOV SS's memory operand: reported after the next instruction
        mov dword [nlog], 0
        mov ax, ss
        mov [ssval], ax
        mov eax, ssval
        mov dr1, eax
        mov eax, (1 << 2) | (11b << 20) | (01b << 22) ; L1, read/write, 2 bytes
        mov dr7, eax
        mov ss, [ssval]
        nop
.p2:    xor eax, eax
        mov dr7, eax
        CHECK 10, dword [nlog], 1
        CHECK 11, dword [logbuf + 4], .p2
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 12, eax, 2                ; B1

        ; --- 3. single step over MOV SS followed by a fault: #UD first, the held #DB at the
        ; start of its handler (so the #DB handler runs first, interrupting the #UD handler)
        mov dword [nlog], 0
        mov ax, ss
        pushfd
        or dword [esp], TF
        popfd
        mov ss, ax
.u3:    ud2
        CHECK 20, dword [nlog], 2
        CHECK 21, dword [logbuf], 1
        CHECK 22, dword [logbuf + 4], ud_handler
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 23, eax, 0x4000
        CHECK 24, dword [logbuf + 16], 6
        CHECK 25, dword [logbuf + 20], .u3

        ; --- 4. a single-step trap and an NMI at the same boundary: #DB delivered first, the
        ; NMI before the #DB handler's first instruction
        mov dword [nlog], 0
        pushfd
        or dword [esp], TF
        popfd
        out 0x80, al                    ; raises the NMI
.n1:    CHECK 30, dword [nlog], 2
        CHECK 31, dword [logbuf], 2
        CHECK 32, dword [logbuf + 4], db_handler
        CHECK 33, dword [logbuf + 16], 1
        CHECK 34, dword [logbuf + 20], .n1

        ; --- 5. an NMI and the next instruction's code breakpoint: the NMI first
        mov dword [nlog], 0
        mov eax, .b5
        mov dr0, eax
        mov eax, 1
        mov dr7, eax
        out 0x80, al
.b5:    nop
        xor eax, eax
        mov dr7, eax
        CHECK 40, dword [nlog], 2
        CHECK 41, dword [logbuf], 2
        CHECK 42, dword [logbuf + 4], .b5
        CHECK 43, dword [logbuf + 16], 1
        CHECK 44, dword [logbuf + 20], .b5
        mov eax, [logbuf + 28]
        and eax, 0x400f
        CHECK 45, eax, 1

        ; --- 6. a code breakpoint on an instruction in a not-present page: #DB, then #PF
        mov edi, PD
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov dword [PD], 0x00000083      ; 0-4 MiB identity, 4 MiB page
        mov eax, cr4
        or eax, 0x10                    ; PSE
        mov cr4, eax
        mov eax, PD
        mov cr3, eax
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        mov dword [nlog], 0
        mov eax, 0x800000
        mov dr0, eax
        mov eax, 1
        mov dr7, eax
        mov ebx, 0x800000
        jmp ebx                         ; not present
.recover:
        xor eax, eax
        mov dr7, eax
        mov eax, cr0
        and eax, 0x7fffffff
        mov cr0, eax
        CHECK 50, dword [nlog], 2
        CHECK 51, dword [logbuf], 1
        CHECK 52, dword [logbuf + 4], 0x800000
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 53, eax, 1
        CHECK 54, dword [logbuf + 16], 14
        CHECK 55, dword [logbuf + 20], 0x800000
        CHECK 56, dword [logbuf + 28], 0x800000 ; CR2

        ; --- 7. single-stepping a REP string: a trap after each iteration, with EIP at the REP
        ; instruction and RF set in the image until the last iteration
        mov dword [nlog], 0
        mov dword [keep_tf], 2
        mov esi, src
        mov edi, dst
        mov ecx, 3
        cld
        pushfd
        or dword [esp], TF
        popfd
.r7:    rep movsb
.r7e:   CHECK 60, dword [nlog], 3
        CHECK 61, dword [logbuf + 4], .r7
        CHECK 62, dword [logbuf + 20], .r7
        CHECK 63, dword [logbuf + 36], .r7e
        mov eax, [logbuf + 8]
        and eax, RF
        CHECK 64, eax, RF
        mov eax, [logbuf + 40]
        and eax, RF
        CHECK 65, eax, 0
        CHECK 66, dword [dst], 0x00636261

        ; --- 8. a data breakpoint hit by the second iteration traps before the third
        mov dword [nlog], 0
        mov eax, dst + 1
        mov dr1, eax
        mov eax, (1 << 2) | (01b << 20) ; L1, write, 1 byte
        mov dr7, eax
        mov esi, src
        mov edi, dst
        mov ecx, 3
.r8:    rep movsb
        xor eax, eax
        mov dr7, eax
        CHECK 70, dword [nlog], 1
        CHECK 71, dword [logbuf + 4], .r8
        mov eax, [logbuf + 12]
        and eax, 0x400f
        CHECK 72, eax, 2
        CHECK 73, ecx, 0
        jmp pass

%include "event_log.inc"

; #DB: log, clear DR6, TF off in the image; RF on after an instruction breakpoint
db_handler:
        pushad
        mov eax, 1
        mov ebx, [esp + 32]
        mov ecx, [esp + 40]
        mov edx, dr6
        call log_event
        xor eax, eax
        mov dr6, eax
        cmp dword [keep_tf], 0
        je .clear
        dec dword [keep_tf]
        jmp .kept
.clear: and dword [esp + 40], ~TF
.kept:  test edx, 0xf
        jz .n
        or dword [esp + 40], RF
.n:     popad
        iret

nmi_handler:
        pushad
        mov eax, 2
        mov ebx, [esp + 32]
        mov ecx, [esp + 40]
        xor edx, edx
        call log_event
        popad
        iret

; #UD: log, skip ud2, TF off in the image
ud_handler:
        pushad
        mov eax, 6
        mov ebx, [esp + 32]
        mov ecx, [esp + 40]
        xor edx, edx
        call log_event
        add dword [esp + 32], 2
        and dword [esp + 40], ~TF
        popad
        iret

; #PF: log (with CR2), resume at main.recover
pf_handler:
        pushad
        mov eax, 14
        mov ebx, [esp + 36]
        mov ecx, [esp + 44]
        mov edx, cr2
        call log_event
        mov dword [esp + 36], main.recover
        popad
        add esp, 4
        iret

        align 4
nlog:   dd 0
ssval:  dd 0
keep_tf: dd 0
src:    db "abc", 0
dst:    dd 0
logbuf: times 64 dd 0
