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
        ; an instruction across a page boundary ("mov eax, 0x44332211; ret" from 0x40FFE), run
        ; often, then its first byte of immediate (in the first page) patched
        mov dword [0x40ffc], 0x11b80000
        mov dword [0x41000], 0xc3443322
        mov ecx, 50
.cross: call 0x40ffe
        loop .cross
        CHECK 7, eax, 0x44332211
        mov byte [0x40fff], 0x66
        call 0x40ffe
        CHECK 8, eax, 0x44332266
        ; and a JMP rel32 from 0x50FFE across the boundary (to 0x52000: "mov eax, 1; ret"),
        ; patched in the second page, where nothing else was decoded (to 0x52100: "mov eax, 2")
        mov dword [0x50ffc], 0xfde90000
        mov dword [0x51000], 0x0000000f
        mov dword [0x52000], 0x000001b8
        mov dword [0x52004], 0xc300
        mov dword [0x52100], 0x000002b8
        mov dword [0x52104], 0xc300
        mov ecx, 50
.crossj: call 0x50ffe
        loop .crossj
        CHECK 9, eax, 1
        mov byte [0x51000], 0x10
        call 0x50ffe
        CHECK 10, eax, 2
        ; the same above 1 MiB, where compiled blocks store to RAM without the TLB while paging
        ; is off: a store to a page holding decoded code must still drop that code
        mov esi, blob
        mov edi, 0x300000
        mov ecx, blob_end - blob
        rep movsb
        mov ecx, 50
.high:  call 0x300000
        loop .high
        CHECK 11, eax, 0x31337
        mov dword [0x300001], 0x4343
        call 0x300000
        CHECK 12, eax, 0x4343
        mov word [0x300001], 0x4444
        call 0x300000
        CHECK 13, eax, 0x4444
        mov byte [0x300001], 0x45
        call 0x300000
        CHECK 14, eax, 0x4445
        mov dword [0x300000], 0x004446b8 ; an aligned store: "mov eax, 0x4446"
        call 0x300000
        CHECK 15, eax, 0x4446
        jmp pass

patchme:
        mov eax, 7
        ret
blob:
        mov eax, 0x31337
        ret
blob_end:
