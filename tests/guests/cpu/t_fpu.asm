; x87: loads/stores in every format (80-bit exact), arithmetic, compares (FCOM+FNSTSW+SAHF,
; FCOMI), integer and BCD conversions with rounding control, constants, transcendental basics,
; FXCH/FLD ST(i), FSAVE/FRSTOR and FXSAVE/FXRSTOR round trips, #NM with CR0.TS.
%include "boot.inc"
main:
        fninit
        fnstcw [cw]
        CHECK 1, word [cw], 0x37f
        ; 1 + 1 = 2, stored as an integer
        fld1
        fadd st0, st0
        fistp dword [i32]
        CHECK 2, dword [i32], 2
        ; pi as a double
        fldpi
        fstp qword [f64]
        CHECK 3, dword [f64], 0x54442D18
        CHECK 4, dword [f64 + 4], 0x400921FB
        ; an 80-bit value with all 64 mantissa bits survives FLD/FXCH/FST ST(i)/FSTP m80
        fld tword [ext_in]
        fld1
        fxch st1
        fst st2
        fstp st0
        fstp st0
        fstp tword [ext_out]
        CHECK 5, dword [ext_out], 0x2168C235
        CHECK 6, dword [ext_out + 4], 0xC90FDAA2
        CHECK 7, word [ext_out + 8], 0x4000
        ; sqrt(16) - |-5| = -1, int16 store
        fild dword [sixteen]
        fsqrt
        fild word [minus5]
        fabs
        fsubp st1, st0
        fistp word [i16]
        CHECK 8, word [i16], -1
        ; 10 / 4 = 2.5: rounding control for FIST (nearest even -> 2, up -> 3, chop -> 2, down -> 2)
        fild dword [ten]
        fidiv dword [four]
        fist dword [i32]
        CHECK 9, dword [i32], 2
        mov word [cw], 0x0b7f           ; round up
        fldcw [cw]
        fist dword [i32]
        CHECK 10, dword [i32], 3
        mov word [cw], 0x037f
        fldcw [cw]
        ; compare 2.5 with 4: C0 set -> CF after SAHF
        fild dword [four]
        fcomp st1
        fnstsw ax
        sahf
        FAILIF c, 11                    ; 4 < 2.5 is false
        FAILIF z, 12
        fild dword [four]
        fcomip st0, st1                 ; 4 > 2.5: CF=0 ZF=0
        FAILIF be, 13
        fstp st0
        ; BCD: 12345 -> packed BCD, and back
        fild dword [n12345]
        fbstp tword [bcd]
        CHECK 14, dword [bcd], 0x00012345
        CHECK 15, byte [bcd + 9], 0
        fbld tword [bcd]
        fistp dword [i32]
        CHECK 16, dword [i32], 12345
        ; int64 load/store
        fild qword [big]
        fistp qword [big_out]
        CHECK 17, dword [big_out], 0x89abcdef
        CHECK 18, dword [big_out + 4], 0x01234567
        ; float32
        fld dword [onehalf]
        fmul dword [onehalf]
        fstp dword [f32]
        CHECK 19, dword [f32], 0x3e800000       ; 0.25
        ; stack tags: after FNINIT all empty (tag word 0xffff)
        fninit
        fnstenv [env]
        CHECK 20, word [env + 8], 0xffff
        ; FSAVE/FRSTOR keep the exact 80-bit image
        fld tword [ext_in]
        fsave [save]
        fld1                            ; FSAVE re-initialised the FPU: stack is empty again
        fstp st0
        frstor [save]
        fstp tword [ext_out]
        CHECK 21, dword [ext_out], 0x2168C235
        CHECK 22, word [ext_out + 8], 0x4000
        ; FXSAVE/FXRSTOR (needs CR4.OSFXSR)
        mov eax, cr4
        or eax, 0x200
        mov cr4, eax
        fld tword [ext_in]
        fxsave [fxarea]
        fstp st0
        fxrstor [fxarea]
        fstp tword [ext_out]
        CHECK 23, dword [ext_out + 4], 0xC90FDAA2
        ; CR0.TS: ESC raises #NM
        mov eax, nm_handler
        mov ebx, 7
        mov edx, 0x8e00
        call set_gate
        mov eax, cr0
        or eax, 8
        mov cr0, eax
        fld1
        CHECK 24, dword [nm_count], 1
        ; sin(0) = 0, cos(0) = 1, atan2(1,1)*4 = pi
        fldz
        fsin
        fistp dword [i32]
        CHECK 25, dword [i32], 0
        fld1
        fld1
        fpatan
        fmul dword [four_f]
        fldpi                           ; 64-bit pi; FPATAN is computed in double precision
        fsubp
        fabs
        fcomp dword [pi_tol]
        fnstsw ax
        sahf
        FAILIF nc, 26                   ; |4 atan(1) - pi| < 1e-15
        ; an unmasked zero divide is reported as #MF by the next x87 instruction (CR0.NE)
        mov eax, mf_handler
        mov ebx, 16
        mov edx, 0x8e00
        call set_gate
        mov eax, cr0
        or eax, 0x20
        mov cr0, eax
        fninit
        mov word [cw], 0x37b            ; ZM clear
        fldcw [cw]
        fld1
        fldz
        fdivp st1, st0                  ; ZE now pending
        CHECK 27, dword [mf_count], 0
        fnstsw ax                       ; non-waiting: no #MF
        CHECK 30, dword [mf_count], 0
.mf_at: fld1                            ; #MF; the handler clears ZE and the FLD runs again
        CHECK 28, dword [mf_count], 1
        CHECK 29, dword [mf_eip], .mf_at
        fninit
        jmp pass

mf_handler:
        inc dword [mf_count]
        push eax
        mov eax, [esp + 4]
        mov [mf_eip], eax
        pop eax
        fnclex
        iret

nm_handler:
        inc dword [nm_count]
        clts
        iret

        align 16
fxarea: times 512 db 0
save:   times 108 db 0
env:    times 28 db 0
ext_in: dd 0x2168C235, 0xC90FDAA2
        dw 0x4000                       ; pi in extended precision
ext_out: times 10 db 0
        align 4
cw:     dw 0, 0
i16:    dw 0, 0
i32:    dd 0
f32:    dd 0
f64:    dq 0
sixteen: dd 16
minus5: dw -5, 0
ten:    dd 10
four:   dd 4
pi_tol: dd 1.0e-15
four_f: dd 4.0
onehalf: dd 0.5
n12345: dd 12345
bcd:    times 10 db 0
        align 8
big:    dq 0x0123456789abcdef
big_out: dq 0
nm_count: dd 0
mf_count: dd 0
mf_eip: dd 0
