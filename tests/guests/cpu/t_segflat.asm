; Segments flat when a block first ran (and, under cpu_jit_test.ts, was compiled for them) and
; not flat later: the same code must then use the new base, for DS accesses and for the stack
; of CALL/RET/PUSH/POP. The routines run from a page of their own (copied to 0x50000), so that
; no store of the checks drops their blocks in between.
%include "boot.inc"
%define SHIFTED 0x48                    ; data32, base 0x1000, limit 4G - 1
%define READIT 0x50000
%define WRITEIT 0x50010
%define POPPER 0x50020
%define SEGLOAD 0x50030
main:
        mov dword [gdt + SHIFTED], 0x1000ffff
        mov dword [gdt + SHIFTED + 4], 0x00cf9200
        mov esi, routines
        mov edi, READIT
        mov ecx, routines_end - routines
        rep movsb
        mov dword [0x60100], 0x11111111
        mov dword [0x61100], 0x22222222
        mov ebx, 0x60000
        mov edx, 0x77777777
        mov ecx, 3
.flat:  call READIT
        call WRITEIT
        loop .flat
        mov esi, eax
        CHECK 1, esi, 0x11111111
        CHECK 2, dword [0x60200], 0x77777777
        ; DS based at 0x1000: the same read sees 0x61100, the write lands 0x1000 higher
        mov ax, SHIFTED
        mov ds, ax
        call READIT
        mov esi, eax
        mov edx, 0x33333333
        call WRITEIT
        mov ax, DATA32
        mov ds, ax
        CHECK 3, esi, 0x22222222
        CHECK 4, dword [0x61200], 0x33333333
        ; the stack based at 0x1000: CALL, PUSH, POP and RET go through SS's base
        mov ebp, esp
        mov dword [0x1000 + 0x6ff0], 0x44444444
        mov dword [0x6ff0], 0x12345678
        mov ecx, 3
.flat2: mov esp, 0x6ff0
        call POPPER
        loop .flat2
        mov esp, ebp
        CHECK 5, edx, 0x12345678
        mov ax, SHIFTED
        mov ss, ax
        mov esp, 0x6ff0
        call POPPER
        mov ax, DATA32
        mov ss, ax
        mov esp, ebp
        CHECK 6, edx, 0x44444444
        CHECK 7, dword [0x1000 + 0x6fe8], 0x55555555
        ; a segment load inside a block compiled for a flat DS, before a DS access of the same
        ; block: the access after it must use the new base (compiled code after a handler call
        ; keeps the flatness it was compiled for only until the load ends the block)
        mov ecx, 3
.flat3: mov ax, DATA32
        call SEGLOAD
        loop .flat3
        CHECK 8, esi, 0x11111111
        mov ax, SHIFTED
        call SEGLOAD
        CHECK 9, esi, 0x22222222
        jmp pass

routines:
        mov eax, [ebx + 0x100]          ; READIT
        ret
        times READIT + 0x10 - ($ - routines + READIT) db 0x90
        mov [ebx + 0x200], edx          ; WRITEIT
        ret
        times READIT + 0x20 - ($ - routines + READIT) db 0x90
        mov edx, [esp + 4]              ; POPPER: with ESP = 0x6fec, reads SS:0x6ff0
        push dword 0x55555555
        pop edi
        ret
        times READIT + 0x30 - ($ - routines + READIT) db 0x90
        mov ds, ax                      ; SEGLOAD: AX = the selector to load
        mov esi, [ebx + 0x100]
        mov dx, DATA32
        mov ds, dx
        ret
routines_end:
