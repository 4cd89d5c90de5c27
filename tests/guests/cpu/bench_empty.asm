; Benchmark baseline: no work (start-up cost of the peer's firmware and loader).
%include "boot.inc"
main:
        mov ecx, [iterations]
        jmp pass
        align 4
        db "ITER"
iterations: dd 0
