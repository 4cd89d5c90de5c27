; Self-modifying code: a store that patches the next instruction of the same block, a patch of
; an already-run loop body, and code copied with REP MOVSB then run.
%include "boot.inc"
main:
        ; patch the immediate of the very next instruction (same block)
        mov byte [.next + 1], 42
.next:  mov eax, 0
        CHECK 1, eax, 42
        ; run a routine, patch it, run it again
        mov ecx, 3
.loop:  call patchme
        loop .loop
        CHECK 2, eax, 7
        mov byte [patchme + 1], 9
        call patchme
        CHECK 3, eax, 9
        ; patch an instruction later in the running block via a 16-bit store
        mov word [.later], 0x07b0       ; "mov al, 7" over "nop; nop"
        xor eax, eax
.later: nop
        nop
        CHECK 4, eax, 7
        ; copy code with REP MOVSB and run it
        mov esi, blob
        mov edi, 0x40000
        mov ecx, blob_end - blob
        rep movsb
        call 0x40000
        CHECK 5, eax, 0x31337
        ; overwrite the copy and run again
        mov dword [0x40001], 0x4242
        call 0x40000
        CHECK 6, eax, 0x4242
        jmp pass

patchme:
        mov eax, 7
        ret
blob:
        mov eax, 0x31337
        ret
blob_end:
