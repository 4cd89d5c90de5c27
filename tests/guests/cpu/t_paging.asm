; Paging: 4 KiB and 4 MiB pages, accessed/dirty bits, #PF error codes and CR2, CR0.WP,
; INVLPG, user/supervisor; then PAE with NX.
%include "boot.inc"
PD      equ 0x100000
PT0     equ 0x101000                    ; identity map of 0..4 MiB
PTC     equ 0x102000                    ; linear 0xC0000000..
main:
        ; page directory: [0] -> PT0, [1] 4 MiB page -> phys 8 MiB, [2] 4 MiB identity at 8 MiB,
        ; [768] -> PTC
        mov edi, PD
        xor eax, eax
        mov ecx, 1024 * 3
        rep stosd
        mov dword [PD + 0 * 4], PT0 | 3
        mov dword [PD + 1 * 4], 0x800000 | 0x83
        mov dword [PD + 2 * 4], 0x800000 | 0x83
        mov dword [PD + 3 * 4], 0xC00000 | 0x83
        mov dword [PD + 768 * 4], PTC | 3
        mov edi, PT0
        mov eax, 3
        mov ecx, 1024
.fill:  stosd
        add eax, 0x1000
        loop .fill
        ; a routine run with paging off reads RAM above 1 MiB (compiled code reads it without
        ; the TLB then); run again with paging on it must read through the page tables
        ; (the routine sits alone in its page, so that no store near it drops its decoded block)
        mov dword [0x60000], 0x400100a1 ; mov eax, [0x400100]; ret
        mov word [0x60004], 0xc300
        mov dword [0x400100], 0x1111
        mov dword [0x800100], 0x2222
        mov ecx, 50
.direct: call 0x60000
        loop .direct
        mov ebx, eax
        mov dword [PTC + 0 * 4], 0x200000 | 3   ; C0000000 -> 2 MiB, writable
        mov dword [PTC + 1 * 4], 0x201000 | 1   ; C0001000 -> 2 MiB + 4K, read-only
        mov dword [PTC + 2 * 4], 0              ; C0002000 not present
        mov dword [PTC + 3 * 4], 0x203000 | 7   ; C0003000 user page
        mov eax, PD
        mov cr3, eax
        mov eax, cr4
        or eax, 0x10                    ; PSE
        mov cr4, eax
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        CHECK 54, ebx, 0x1111
        call 0x60000                    ; linear 4 MiB + 0x100 -> physical 8 MiB + 0x100
        CHECK 55, eax, 0x2222
        ; a write through the high mapping lands at physical 2 MiB (identity-mapped low)
        mov dword [0xC0000010], 0x12345678
        CHECK 1, dword [0x200010], 0x12345678
        ; accessed and dirty bits
        mov eax, [PTC]
        and eax, 0x60
        CHECK 2, eax, 0x60
        mov eax, [0xC0001000]           ; read only: accessed, not dirty
        mov eax, [PTC + 4]
        and eax, 0x60
        CHECK 3, eax, 0x20
        ; 4 MiB page: linear 4 MiB + x -> physical 8 MiB + x (seen through the identity 4 MiB page)
        mov dword [0x400020], 0xcafe
        CHECK 4, dword [0x800020], 0xcafe
        mov eax, [PD + 4]
        and eax, 0x60
        CHECK 5, eax, 0x60
        ; INVLPG of any address inside a 4 MiB page drops the whole large translation
        mov dword [0xC00020], 0xabab
        mov eax, [0x400020]             ; cached: 4 MiB -> 8 MiB
        mov dword [PD + 1 * 4], 0xC00000 | 0x83
        invlpg [0x7ff000]               ; another 4 KiB piece of the same large page
        CHECK 40, dword [0x400020], 0xabab
        mov dword [PD + 1 * 4], 0x800000 | 0x83
        invlpg [0x400000]
        CHECK 41, dword [0x400020], 0xcafe
        ; #PF on a not-present page: the handler maps it and the access is retried
        mov eax, pf_handler
        mov ebx, 14
        mov edx, 0x8e00
        call set_gate
        mov dword [0xC0002004], 0xbeef  ; faults once
        CHECK 6, dword [pf_count], 1
        CHECK 7, dword [pf_cr2], 0xC0002004
        CHECK 8, dword [pf_code], 2     ; write, not present, supervisor
        CHECK 9, dword [0x202004], 0xbeef
        ; CR0.WP=0: supervisor writes to read-only pages succeed; WP=1: #PF with code 3
        mov dword [0xC0001008], 1
        CHECK 10, dword [pf_count], 1
        mov eax, cr0
        or eax, 0x10000
        mov cr0, eax
        mov dword [pf_fix], 1           ; the handler makes the page writable
        mov dword [0xC000100c], 2
        CHECK 11, dword [pf_count], 2
        CHECK 12, dword [pf_code], 3
        CHECK 13, dword [0x20100c], 2
        ; INVLPG: remap C0000000 to 2 MiB + 20K; the new mapping is seen after INVLPG
        mov dword [0x205010], 0x5555
        mov eax, [0xC0000010]           ; cached translation
        mov dword [PTC], 0x205000 | 3
        invlpg [0xC0000000]
        CHECK 14, dword [0xC0000010], 0x5555
        ; a CR3 reload flushes too
        mov dword [PTC], 0x200000 | 3
        mov eax, cr3
        mov cr3, eax
        CHECK 15, dword [0xC0000010], 0x12345678
        ; code through a remapped page: copy a routine to 2 MiB + 12K, run it at C0003000
        mov esi, routine
        mov edi, 0x203000
        mov ecx, routine_end - routine
        rep movsb
        call 0xC0003000
        CHECK 16, eax, 0x4242
        ; self-modifying through an alias: patch the routine via its physical identity mapping
        mov byte [0x203001], 0x43       ; mov eax, 0x4243
        call 0xC0003000
        CHECK 17, eax, 0x4243
        ; an instruction that crosses into the next page ("mov eax, 0x44332211; ret" from
        ; C0004FFE): run often, then the second page is mapped elsewhere (the cached decode
        ; must not be run again), then written to through its identity mapping
        mov dword [PTC + 4 * 4], 0x204000 | 3
        mov dword [PTC + 5 * 4], 0x205000 | 3
        mov dword [0x204ffc], 0x11b80000
        mov dword [0x205000], 0xc3443322
        mov dword [0x206000], 0xc3887766    ; the other page: "mov eax, 0x88776611; ret"
        mov ecx, 50
.cross: call 0xC0004ffe
        loop .cross
        CHECK 42, eax, 0x44332211
        mov dword [PTC + 5 * 4], 0x206000 | 3
        invlpg [0xC0005000]
        call 0xC0004ffe
        CHECK 43, eax, 0x88776611
        mov byte [0x206001], 0x55
        call 0xC0004ffe
        CHECK 44, eax, 0x88556611
        ; a call into a code page that is then remapped: the calling block is linked to the
        ; routine's block, and INVLPG of a page code was fetched through must drop that link
        ; (C0006000 -> 0x207000 "mov eax, 0x1111; ret", then -> 0x208000 "mov eax, 0x2222; ret")
        mov dword [PTC + 6 * 4], 0x207000 | 3
        mov dword [0x207000], 0x001111b8
        mov word [0x207004], 0xc300
        mov dword [0x208000], 0x002222b8
        mov word [0x208004], 0xc300
        mov ecx, 50
.link1: call call_c6
        loop .link1
        CHECK 45, eax, 0x1111
        mov dword [PTC + 6 * 4], 0x208000 | 3
        invlpg [0xC0006000]
        mov ecx, 50
.link2: call call_c6
        loop .link2
        CHECK 46, eax, 0x2222
        ; global pages (CR4.PGE): a CR3 write may keep them, but INVLPG and clearing PGE drop
        ; them; pages without G still go with the CR3 write
        mov eax, cr4
        or eax, 0x80                    ; PGE
        mov cr4, eax
        mov dword [0x209000], 0x9001
        mov dword [0x20a000], 0xa001
        mov dword [0x20b000], 0xb001
        mov dword [PTC + 7 * 4], 0x209000 | 0x103     ; C0007000, global
        mov dword [PTC + 8 * 4], 0x20a000 | 3         ; C0008000, not global
        CHECK 47, dword [0xC0007000], 0x9001
        CHECK 48, dword [0xC0008000], 0xa001
        mov dword [PTC + 8 * 4], 0x20b000 | 3
        mov eax, cr3
        mov cr3, eax
        CHECK 49, dword [0xC0008000], 0xb001
        mov dword [PTC + 7 * 4], 0x20a000 | 0x103
        invlpg [0xC0007000]
        CHECK 50, dword [0xC0007000], 0xa001
        mov dword [PTC + 7 * 4], 0x20b000 | 0x103
        call pge_toggle
        CHECK 51, dword [0xC0007000], 0xb001
        ; code in a global page, run through a linked call, then the page remapped and PGE
        ; toggled: the new code runs
        mov dword [PTC + 6 * 4], 0x207000 | 0x103
        call pge_toggle
        mov ecx, 50
.glob1: call call_c6
        loop .glob1
        CHECK 52, eax, 0x1111
        mov dword [PTC + 6 * 4], 0x208000 | 0x103
        mov eax, cr3
        mov cr3, eax
        call pge_toggle
        mov ecx, 50
.glob2: call call_c6
        loop .glob2
        CHECK 53, eax, 0x2222
        ; paging off again: linear = physical
        mov eax, cr0
        and eax, 0x7fffffff
        mov cr0, eax
        CHECK 18, dword [0x200010], 0x12345678
        ; PAE: 3 levels, 2 MiB pages and NX
        call pae_test
        jmp pass

routine:
        mov eax, 0x4242
        ret
routine_end:

pge_toggle:                             ; CR4.PGE off and on: drops the global entries
        mov eax, cr4
        and eax, ~0x80
        mov cr4, eax
        or eax, 0x80
        mov cr4, eax
        ret

call_c6:                                ; one call site for both loops (its block gets linked)
        call 0xC0006000
        ret

pf_handler:
        push eax
        inc dword [pf_count]
        mov eax, cr2
        mov [pf_cr2], eax
        mov eax, [esp + 4]              ; error code
        mov [pf_code], eax
        cmp dword [pf_fix], 0
        jne .wp
        mov dword [PTC + 2 * 4], 0x202000 | 3
        jmp .done
.wp:    or dword [PTC + 1 * 4], 2
.done:  mov eax, cr2
        invlpg [eax]
        pop eax
        add esp, 4                      ; drop the error code
        iret

PDPT    equ 0x110000
PAE_PD  equ 0x111000
PAE_PT  equ 0x112000
pae_test:
        mov edi, PDPT
        xor eax, eax
        mov ecx, 3 * 1024
        rep stosd
        mov dword [PDPT], PAE_PD | 1
        mov dword [PAE_PD], PAE_PT | 3          ; 0..2 MiB via a page table
        mov dword [PAE_PD + 8], 0x200000 | 0x83 ; 2..4 MiB: one 2 MiB page
        mov dword [PAE_PD + 16], 0x600000 | 0x83 ; 4..6 MiB -> 6 MiB
        mov edi, PAE_PT
        mov eax, 3
        mov ecx, 512
.f:     mov [edi], eax
        mov dword [edi + 4], 0
        add edi, 8
        add eax, 0x1000
        loop .f
        ; one NX page: 0x1F000 holding a RET
        mov dword [PAE_PT + 0x1f * 8 + 4], 0x80000000
        mov byte [0x1f000], 0xc3
        mov ecx, 0xc0000080             ; EFER.NXE
        rdmsr
        or eax, 0x800
        wrmsr
        mov eax, cr4
        or eax, 0x20                    ; PAE
        mov cr4, eax
        mov eax, PDPT
        mov cr3, eax
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        mov dword [0x400030], 0x7777    ; 4 MiB + 0x30 -> 6 MiB + 0x30
        CHECK 30, dword [0x200010], 0x12345678         ; 2..4 MiB identity
        mov eax, cr0
        and eax, 0x7fffffff
        mov cr0, eax
        CHECK 31, dword [0x600030], 0x7777
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        ; executing the NX page faults with I/D set (code 0x11)
        mov dword [pf_count], 0
        mov eax, nx_handler
        mov ebx, 14
        mov edx, 0x8e00
        call set_gate
        call 0x1f000
        CHECK 32, dword [pf_count], 1
        CHECK 33, dword [pf_code], 0x11
        mov eax, cr0
        and eax, 0x7fffffff
        mov cr0, eax
        ret

nx_handler:
        inc dword [pf_count]
        pop dword [pf_code]
        mov dword [esp], nx_back        ; resume after the call (return address pushed)
        iret
nx_back:
        add esp, 4                      ; the call's return address
        jmp .ret
.ret:
        mov eax, cr0
        and eax, 0x7fffffff
        mov cr0, eax
        CHECK 32, dword [pf_count], 1
        CHECK 33, dword [pf_code], 0x11
        jmp pass

        align 4
pf_count: dd 0
pf_cr2: dd 0
pf_code: dd 0
pf_fix: dd 0
