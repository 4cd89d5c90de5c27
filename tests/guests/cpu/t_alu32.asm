; 32-bit integer instructions with known answers (protected mode, flat segments).
%include "boot.inc"
main:
        ; add/adc/sub/sbb with carries across 32 bits
        mov eax, 0xffffffff
        add eax, 1
        FAILIF nc, 1
        CHECK 50, eax, 0
        mov eax, 0x7fffffff
        add eax, 1
        FAILIF no, 2
        FAILIF ns, 51
        mov eax, 5
        stc
        adc eax, 0xfffffffb
        CHECK 3, eax, 1
        mov eax, 0
        stc
        sbb eax, 0
        CHECK 4, eax, 0xffffffff
        ; mul / imul / div / idiv, 64-bit results
        mov eax, 0x89abcdef
        mov ebx, 0x12345678
        mul ebx
        CHECK 5, edx, 0x09CA39E0
        CHECK 6, eax, 0xE242D208
        mov eax, -7
        mov ebx, 3
        imul ebx
        CHECK 7, eax, -21
        CHECK 8, edx, -1
        mov eax, 0x12345678
        imul eax, eax, -3
        CHECK 9, eax, 0xC962FC98
        mov edx, 0x00000001
        mov eax, 0x00000000
        mov ebx, 3
        div ebx
        CHECK 10, eax, 0x55555555
        CHECK 11, edx, 1
        mov edx, -1
        mov eax, -100
        mov ebx, 7
        idiv ebx
        CHECK 12, eax, -14
        CHECK 13, edx, -2
        mov edx, 0xfedcba98
        mov eax, 0x76543210
        mov ebx, 0xffffffff
        div ebx
        CHECK 14, eax, 0xFEDCBA99
        CHECK 15, edx, 0x7530ECA9
        ; shifts and rotates
        mov eax, 0x80000001
        rol eax, 1
        FAILIF nc, 52
        CHECK 16, eax, 3
        mov eax, 0x80000000
        sar eax, 31
        CHECK 17, eax, -1
        mov eax, 0x12345678
        mov edx, 0x9abcdef0
        shld eax, edx, 8
        CHECK 18, eax, 0x3456789a
        shrd eax, edx, 12
        CHECK 19, eax, 0xef034567
        mov eax, 1
        mov cl, 33                      ; counts are masked to 5 bits
        shl eax, cl
        CHECK 20, eax, 2
        ; bit instructions
        mov eax, 0x00010000
        bsf edx, eax
        CHECK 21, edx, 16
        bsr ebx, eax
        CHECK 22, ebx, 16
        mov eax, 0x12345678
        bswap eax
        CHECK 23, eax, 0x78563412
        mov dword [scratch], 0
        mov ecx, 37
        bts [scratch], ecx              ; bit offset beyond the dword: addresses scratch+4
        CHECK 24, dword [scratch + 4], 0x20
        bt dword [scratch + 4], 5
        FAILIF nc, 25
        ; movzx/movsx, cmov, setcc, xadd, cmpxchg, cmpxchg8b
        mov eax, 0xffffff80
        movsx ebx, al
        CHECK 26, ebx, 0xffffff80
        movzx ebx, al
        CHECK 27, ebx, 0x80
        mov eax, 1
        mov ebx, 2
        cmp eax, ebx
        cmovl eax, ebx
        CHECK 28, eax, 2
        setg bl
        CHECK 29, bl, 0
        mov eax, 10
        mov ebx, 32
        xadd eax, ebx
        CHECK 30, eax, 42
        CHECK 31, ebx, 10
        mov dword [scratch], 5
        mov eax, 5
        mov ebx, 9
        cmpxchg [scratch], ebx
        CHECK 32, dword [scratch], 9
        mov eax, 1
        cmpxchg [scratch], ebx
        CHECK 33, eax, 9
        mov dword [scratch], 1
        mov dword [scratch + 4], 2
        mov eax, 1
        mov edx, 2
        mov ebx, 0x33
        mov ecx, 0x44
        cmpxchg8b [scratch]
        FAILIF nz, 34
        CHECK 35, dword [scratch + 4], 0x44
        ; string instructions with REP, 32-bit addressing
        mov esi, src
        mov edi, dst
        mov ecx, 5
        cld
        rep movsd
        CHECK 36, dword [dst + 16], 0x55555555
        CHECK 37, edi, dst + 20
        mov edi, dst
        mov eax, 0x33333333
        mov ecx, 5
        repne scasd
        CHECK 38, ecx, 2
        std
        mov edi, dst + 19
        mov al, 0xaa
        mov ecx, 4
        rep stosb
        cld
        CHECK 39, dword [dst + 16], 0xaaaaaaaa
        ; overlapping forward REP MOVSB replicates the first byte (element by element semantics)
        mov esi, pattern
        lea edi, [pattern + 1]
        mov ecx, 7
        rep movsb
        CHECK 53, dword [pattern], 0x41414141
        CHECK 54, dword [pattern + 4], 0x41414141
        ; REP STOSD across a page boundary, then REP MOVSD of 3 pages
        mov edi, 0x50ff8
        mov eax, 0x12345678
        mov ecx, 4
        rep stosd
        CHECK 55, dword [0x51004], 0x12345678
        CHECK 56, edi, 0x51008
        mov esi, 0x50000
        mov edi, 0x60000
        mov ecx, 3 * 1024
        rep movsd
        CHECK 57, dword [0x61004], 0x12345678
        CHECK 58, esi, 0x53000
        ; enter/leave, push/pop, pushad/popad
        mov ebp, 0x1234
        mov esp, 0x7ff00
        enter 16, 0
        CHECK 40, esp, 0x7ff00 - 4 - 16
        CHECK 41, ebp, 0x7ff00 - 4
        leave
        CHECK 42, ebp, 0x1234
        mov eax, 1
        mov ecx, 2
        pushad
        xor eax, eax
        xor ecx, ecx
        popad
        CHECK 43, ecx, 2
        CHECK 44, esp, 0x7ff00
        ; CPUID says what is there: CX8, CMOV, TSC, no FPU
        mov eax, 1
        cpuid
        test edx, 1 << 8
        FAILIF z, 45
        rdtsc
        mov ebx, eax
        rdtsc
        sub eax, ebx
        FAILIF be, 46                   ; the counter moves forward
        ; aam/aad/daa in 32-bit code
        mov eax, 0x0909
        aad
        CHECK 47, eax, 99
        mov al, 0x19
        add al, 0x28
        daa
        CHECK 48, al, 0x47
        ; 16-bit operand size in 32-bit code
        mov eax, 0x12340000
        mov ax, 0xffff
        inc ax
        CHECK 49, eax, 0x12340000
        jmp pass

        align 4
scratch: dd 0, 0, 0, 0
pattern: db "ABCDEFGH"
src:    dd 0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x55555555
dst:    dd 0, 0, 0, 0, 0
