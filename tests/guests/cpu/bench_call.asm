; Benchmark: a call-heavy loop (CALL/RET, PUSH/POP, a little arithmetic per call).
%include "boot.inc"
main:
        mov ecx, [iterations]
        xor eax, eax
.loop:
        push ecx
        call leaf
        call leaf
        pop ecx
        dec ecx
        jnz .loop
        jmp pass
leaf:
        push ebx
        mov ebx, eax
        add eax, 3
        xor ebx, eax
        pop ebx
        ret
        align 4
        db "ITER"                       ; the benchmark patches the dword after this marker
iterations: dd 3000000
