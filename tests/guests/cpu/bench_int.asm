; Benchmark: an integer loop (5 instructions per iteration) in 32-bit protected mode.
%include "boot.inc"
main:
        mov ecx, [iterations]
        xor eax, eax
        mov ebx, 1
.loop:
        add eax, ebx
        xor edx, eax
        inc ebx
        dec ecx
        jnz .loop
        mov [result], eax
        jmp pass
        align 4
        db "ITER"                       ; the benchmark patches the dword after this marker
iterations: dd 20000000
result: dd 0
