; Benchmark: the integer loop and memory traffic with paging on (4 KiB pages, identity map).
%include "boot.inc"
PD      equ 0x100000
PT      equ 0x101000
main:
        mov edi, PD
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov edi, PT
        mov eax, 3
        mov ecx, 1024 * 4               ; 16 MiB identity map
.fill:  stosd
        add eax, 0x1000
        loop .fill
        mov dword [PD], PT | 3
        mov dword [PD + 4], (PT + 0x1000) | 3
        mov dword [PD + 8], (PT + 0x2000) | 3
        mov dword [PD + 12], (PT + 0x3000) | 3
        mov eax, PD
        mov cr3, eax
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        mov ecx, [iterations]
        xor eax, eax
        mov ebx, 1
        mov esi, 0x400000
.loop:
        add eax, ebx
        mov [esi], eax
        add esi, 4
        and esi, 0x7fffff
        or esi, 0x400000
        dec ecx
        jnz .loop
        jmp pass
        align 4
        db "ITER"                       ; the benchmark patches the dword after this marker
iterations: dd 10000000
