; Debug registers: an execution breakpoint (DR0, a fault before the instruction; RF lets it run
; on return), data write and read/write breakpoints (DR1, DR2: traps after the instruction, with
; the overlap of a larger access), DR6 B0-B3 bits, and DR7.GD (a MOV DR is a #DB fault, BD).
%include "boot.inc"

main:
        mov eax, db_handler
        mov ebx, 1
        mov edx, 0x8e00
        call set_gate

        ; --- execution breakpoint at .bp
        mov eax, .bp
        mov dr0, eax
        mov eax, 0x00000001             ; L0, R/W 00 (execute), LEN 00
        mov dr7, eax
        mov ecx, 5
.bp:    inc ecx                         ; #DB before it; after IRET (RF set) it runs once
        CHECK 1, dword [db_count], 1
        CHECK 2, dword [eip_seen], .bp
        mov eax, [dr6_seen]
        and eax, 0xf
        CHECK 3, eax, 1                 ; B0
        CHECK 4, ecx, 6
        ; a second pass through a breakpoint fires again (RF lasted one instruction)
        mov ecx, 5
        mov edx, 0x00000002             ; G0 this time
        call .bp_sub
        CHECK 5, dword [db_count], 2
        CHECK 6, ecx, 6
        ; DR0 set but not enabled in DR7: no #DB
        xor edx, edx
        call .bp_sub
        CHECK 7, dword [db_count], 2
        CHECK 8, ecx, 7

        ; --- data write breakpoint (DR1, LEN 4) on `watch`
        mov eax, watch
        mov dr1, eax
        mov eax, (1 << 2) | (01b << 20) | (11b << 22)
        mov dr7, eax
        mov eax, [watch]                ; a read: no #DB
        CHECK 10, dword [db_count], 2
        mov dword [watch], 7            ; a write: #DB after it
.w1:    CHECK 11, dword [db_count], 3
        CHECK 12, dword [eip_seen], .w1
        mov eax, [dr6_seen]
        and eax, 0xf
        CHECK 13, eax, 2                ; B1
        CHECK 14, dword [watch], 7      ; the write happened
        mov word [watch - 1], 0x1234    ; overlaps the watched dword's first byte
.w2:    CHECK 15, dword [db_count], 4
        CHECK 16, dword [eip_seen], .w2
        mov dword [watch + 4], 1        ; next to it: no #DB
        CHECK 17, dword [db_count], 4
        mov ebx, 9
        lea edi, [watch]
        mov eax, 3
        stosd                           ; a string store hits too
.w3:    CHECK 18, dword [db_count], 5
        CHECK 19, dword [eip_seen], .w3

        ; --- read/write breakpoint (DR2, LEN 2) on watch + 2
        mov eax, watch + 2
        mov dr2, eax
        mov eax, (1 << 4) | (11b << 24) | (01b << 26)
        mov dr7, eax
        mov eax, [watch]                ; a dword read covering watch+2
.r1:    CHECK 20, dword [db_count], 6
        CHECK 21, dword [eip_seen], .r1
        mov eax, [dr6_seen]
        and eax, 0xf
        CHECK 22, eax, 4                ; B2
        mov al, [watch + 1]             ; the byte before: no #DB
        CHECK 23, dword [db_count], 6
        add byte [watch + 3], 1         ; read-modify-write of the second watched byte: one #DB
.r2:    CHECK 24, dword [db_count], 7
        CHECK 25, dword [eip_seen], .r2

        ; --- general detect: a MOV DR with DR7.GD set is a #DB fault (DR6.BD), GD cleared
        mov eax, 0x2000
        mov dr7, eax
.gd:    mov eax, dr0                    ; faults once; GD is clear when it runs again
        CHECK 30, dword [db_count], 8
        CHECK 31, dword [eip_seen], .gd
        mov eax, [dr6_seen]
        test eax, 0x2000
        FAILIF z, 32
        mov eax, dr7
        test eax, 0x2000
        FAILIF nz, 33
        CHECK 34, dword [db_count], 8
        xor eax, eax
        mov dr7, eax
        jmp pass

.bp_sub:
        jmp .bp_call
.bp_call:
        mov eax, .bp2
        mov dr0, eax
        mov dr7, edx
.bp2:   inc ecx
        xor eax, eax
        mov dr7, eax
        ret

; #DB: record EIP and DR6, clear DR6, set RF in the saved EFLAGS, return to the saved EIP
db_handler:
        push eax
        mov eax, [esp + 4]
        mov [eip_seen], eax
        mov eax, dr6
        mov [dr6_seen], eax
        xor eax, eax
        mov dr6, eax
        inc dword [db_count]
        or dword [esp + 12], 0x10000    ; RF
        pop eax
        iret

        align 4
db_count: dd 0
eip_seen: dd 0
dr6_seen: dd 0
        dd 0
watch:  dd 0
        dd 0
