/**
 * EFLAGS bits and the lazy evaluation of the six arithmetic flags.
 *
 * Arithmetic instructions record what they did (operation kind, operands, result, size) in the
 * {@link LazyFlags} fields instead of computing CF/PF/AF/ZF/SF/OF; the flags are computed only
 * when something reads them (Jcc, PUSHF, ADC, ...). Most results are never read.
 * @module
 */

export const CF = 0x1;
export const PF = 0x4;
export const AF = 0x10;
export const ZF = 0x40;
export const SF = 0x80;
export const TF = 0x100;
export const IF = 0x200;
export const DF = 0x400;
export const OF = 0x800;
export const IOPL = 0x3000;
export const NT = 0x4000;
export const RF = 0x10000;
export const VM = 0x20000;
export const AC = 0x40000;
export const VIF = 0x80000;
export const VIP = 0x100000;
export const ID = 0x200000;
/** The six flags that arithmetic computes. */
export const ARITH = CF | PF | AF | ZF | SF | OF;

/** What the last flag-setting instruction was. */
export const LOP_EAGER = 0; // all six flags are in eflags
export const LOP_ADD = 1;
export const LOP_ADC = 2; // lcin = carry in
export const LOP_SUB = 3;
export const LOP_SBB = 4; // lcin = borrow in
export const LOP_LOGIC = 5; // CF=OF=AF=0
export const LOP_INC = 6; // lcin = CF before
export const LOP_DEC = 7; // lcin = CF before
/** ZF/SF/PF from the result; CF, AF and OF given as bits in lcin (shifts, multiplies). */
export const LOP_RESULT = 8;

/** Operand size codes used everywhere in the CPU: 0 = byte, 1 = word, 2 = dword. */
export const MASK = [0xff, 0xffff, 0xffffffff];
export const SIGN = [0x80, 0x8000, 0x80000000];
export const BITS = [8, 16, 32];

/** PARITY[b] = PF for the low byte b. */
export const PARITY = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  let n = 0;
  for (let x = b; x; x >>= 1) n += x & 1;
  PARITY[b] = n & 1 ? 0 : PF;
}

/** The lazy-flag record; the Cpu extends this. */
export class LazyFlags {
  /** EFLAGS; its arithmetic bits are valid only when lop == LOP_EAGER. */
  eflags = 2;
  lop = LOP_EAGER;
  /** First operand (destination before the operation), masked to lsz. */
  la = 0;
  /** Second operand, masked to lsz. */
  lb = 0;
  /** Result (unmasked: masking happens on evaluation). */
  lr = 0;
  /** Operand size code of the operation. */
  lsz = 0;
  /** Carry in (ADC/SBB), old CF (INC/DEC), or CF|AF|OF bits (RESULT). */
  lcin = 0;

  /** CF as 0/1. */
  cf(): number {
    const sz = this.lsz;
    switch (this.lop) {
      case LOP_EAGER:
        return this.eflags & 1;
      case LOP_ADD:
        return (this.lr & MASK[sz]) >>> 0 < this.la >>> 0 ? 1 : 0;
      case LOP_ADC:
        return this.lcin
          ? ((this.lr & MASK[sz]) >>> 0 <= this.la >>> 0 ? 1 : 0)
          : ((this.lr & MASK[sz]) >>> 0 < this.la >>> 0 ? 1 : 0);
      case LOP_SUB:
        return this.la >>> 0 < this.lb >>> 0 ? 1 : 0;
      case LOP_SBB:
        return this.lcin
          ? (this.la >>> 0 <= this.lb >>> 0 ? 1 : 0)
          : (this.la >>> 0 < this.lb >>> 0 ? 1 : 0);
      case LOP_LOGIC:
        return 0;
      default:
        return this.lcin & 1;
    }
  }

  /** ZF as 0/1. */
  zf(): number {
    if (this.lop === LOP_EAGER) return (this.eflags >> 6) & 1;
    return (this.lr & MASK[this.lsz]) === 0 ? 1 : 0;
  }

  /** SF as 0/1. */
  sf(): number {
    if (this.lop === LOP_EAGER) return (this.eflags >> 7) & 1;
    return (this.lr >>> (BITS[this.lsz] - 1)) & 1;
  }

  /** OF as 0/1. */
  of(): number {
    const sz = this.lsz;
    switch (this.lop) {
      case LOP_EAGER:
        return (this.eflags >> 11) & 1;
      case LOP_ADD:
      case LOP_ADC:
        return ((this.la ^ this.lr) & (this.lb ^ this.lr) & SIGN[sz]) !== 0 ? 1 : 0;
      case LOP_SUB:
      case LOP_SBB:
        return ((this.la ^ this.lb) & (this.la ^ this.lr) & SIGN[sz]) !== 0 ? 1 : 0;
      case LOP_LOGIC:
        return 0;
      case LOP_INC:
        return (this.lr & MASK[sz]) >>> 0 === SIGN[sz] ? 1 : 0;
      case LOP_DEC:
        return (this.lr & MASK[sz]) >>> 0 === SIGN[sz] - 1 ? 1 : 0;
      default:
        return (this.lcin >> 11) & 1;
    }
  }

  /** PF as 0/1. */
  pf(): number {
    if (this.lop === LOP_EAGER) return (this.eflags >> 2) & 1;
    return PARITY[this.lr & 0xff] >> 2;
  }

  /** AF as the bit value AF (0 or 0x10). */
  af(): number {
    switch (this.lop) {
      case LOP_EAGER:
        return this.eflags & AF;
      case LOP_ADD:
      case LOP_ADC:
      case LOP_SUB:
      case LOP_SBB:
        return (this.la ^ this.lb ^ this.lr) & AF;
      case LOP_LOGIC:
        return 0;
      case LOP_INC:
        return (this.lr & 0xf) === 0 ? AF : 0;
      case LOP_DEC:
        return (this.lr & 0xf) === 0xf ? AF : 0;
      default:
        return this.lcin & AF;
    }
  }

  /** The whole EFLAGS with the arithmetic bits evaluated. */
  getFlags(): number {
    if (this.lop === LOP_EAGER) return this.eflags;
    return (this.eflags & ~ARITH) | this.cf() | (this.pf() << 2) | this.af() | (this.zf() << 6) |
      (this.sf() << 7) | (this.of() << 11);
  }

  /** Makes the arithmetic flags eager (before an instruction changes only some of them). */
  materialize(): void {
    if (this.lop !== LOP_EAGER) {
      this.eflags = this.getFlags();
      this.lop = LOP_EAGER;
    }
  }

  /** Condition code cc (0..15, the low nibble of Jcc/SETcc/CMOVcc) holds. */
  cond(cc: number): boolean {
    let r: number;
    switch (cc >> 1) {
      case 0:
        r = this.of();
        break;
      case 1:
        r = this.cf();
        break;
      case 2:
        r = this.zf();
        break;
      case 3:
        r = this.cf() | this.zf();
        break;
      case 4:
        r = this.sf();
        break;
      case 5:
        r = this.pf();
        break;
      case 6:
        r = this.sf() ^ this.of();
        break;
      default:
        r = (this.sf() ^ this.of()) | this.zf();
    }
    return (r ^ (cc & 1)) !== 0;
  }
}
