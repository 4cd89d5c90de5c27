; Benchmark: memcpy-style loops: REP MOVSD over 64 KiB, and a byte-copy loop, repeated.
%include "boot.inc"
main:
        mov ebp, [iterations]
.outer:
        mov esi, 0x100000
        mov edi, 0x200000
        mov ecx, 16384
        rep movsd
        mov esi, 0x100000
        mov edi, 0x300000
        mov ecx, 4096
.bytes:
        mov al, [esi]
        mov [edi], al
        inc esi
        inc edi
        dec ecx
        jnz .bytes
        dec ebp
        jnz .outer
        jmp pass
        align 4
        db "ITER"                       ; the benchmark patches the dword after this marker
iterations: dd 400
