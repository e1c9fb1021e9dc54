//! Arithmetic in GF(2^8) with the generating polynomial x^8 + x^4 + x^3 + x^2 + 1
//! (0x11D), the field `reed-solomon-erasure`'s `galois_8` uses.
//!
//! Every table is computed at compile time, so there is no start-up cost and no
//! lazy initialisation on the hot path.

/// The generating polynomial, with the x^8 term.
pub(crate) const POLYNOMIAL: u16 = 0x11D;

/// `EXP[i]` = 2^i; doubled to 510 entries so `EXP[LOG[a] + LOG[b]]` needs no
/// reduction modulo 255.
pub(crate) static EXP: [u8; 510] = build_exp();

/// `LOG[a]` = log_2(a) for a != 0; `LOG[0]` is unused (0).
pub(crate) static LOG: [u8; 256] = build_log();

/// `MUL[a][b]` = a * b. 64 KiB; the scalar engine's inner loop indexes one row.
pub(crate) static MUL: [[u8; 256]; 256] = build_mul();

const fn build_exp() -> [u8; 510] {
    let mut exp = [0u8; 510];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLYNOMIAL;
        }
        i += 1;
    }
    exp
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

/// Carry-less "shift and add" multiply: independent of the tables, so the
/// tables can be tested against it.
pub(crate) const fn mul_slow(a: u8, b: u8) -> u8 {
    let mut a = a as u16;
    let mut b = b;
    let mut product: u16 = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= POLYNOMIAL;
        }
        b >>= 1;
    }
    product as u8
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut table = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            table[a][b] = mul_slow(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    table
}

/// a * b.
#[inline]
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    MUL[a as usize][b as usize]
}

/// The multiplicative inverse of a non-zero element.
///
/// # Panics
/// If `a` is 0 (a bug: callers only invert pivots they checked).
pub(crate) fn inverse(a: u8) -> u8 {
    assert!(a != 0, "0 has no inverse in GF(2^8)");
    EXP[255 - LOG[a as usize] as usize]
}

/// a^n, with 0^0 = 1, exactly as `reed-solomon-erasure`'s `galois_8::exp`.
pub(crate) fn exp(a: u8, n: usize) -> u8 {
    if n == 0 {
        1
    } else if a == 0 {
        0
    } else {
        EXP[(LOG[a as usize] as usize * n) % 255]
    }
}

/// The 16-entry products of `c` with every low nibble, then with every high
/// nibble: `c * x == low[x & 15] ^ high[x >> 4]` (the `pshufb`/`tbl` method).
pub(crate) fn nibble_tables(c: u8) -> [u8; 32] {
    let mut tables = [0u8; 32];
    for n in 0..16u8 {
        tables[n as usize] = mul(c, n);
        tables[16 + n as usize] = mul(c, n << 4);
    }
    tables
}

/// The 8x8 bit matrix of "multiply by `c`" in the operand layout of GFNI's
/// `gf2p8affineqb`: result bit i is the parity of (byte 7 - i of the matrix)
/// AND x. Row i therefore has bit j set when bit i of c * 2^j is set.
pub(crate) fn affine_matrix(c: u8) -> u64 {
    let mut matrix = 0u64;
    for i in 0..8 {
        let mut row = 0u8;
        for j in 0..8 {
            if (mul(c, 1 << j) >> i) & 1 != 0 {
                row |= 1 << j;
            }
        }
        matrix |= u64::from(row) << (8 * (7 - i));
    }
    matrix
}

/// What `gf2p8affineqb` does to one byte (with a zero constant), in portable
/// code: the reference the bit-order test checks `affine_matrix` against.
#[cfg(test)]
pub(crate) fn affine_apply(matrix: u64, x: u8) -> u8 {
    let mut result = 0u8;
    for i in 0..8 {
        let row = (matrix >> (8 * (7 - i))) as u8;
        result |= (((row & x).count_ones() & 1) as u8) << i;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_agree_with_shift_and_add() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let expected = mul_slow(a, b);
                assert_eq!(mul(a, b), expected, "{a} * {b}");
                if a != 0 && b != 0 {
                    let via_log = EXP[LOG[a as usize] as usize + LOG[b as usize] as usize];
                    assert_eq!(via_log, expected);
                }
            }
        }
    }

    #[test]
    fn inverse_and_exp() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1);
            let mut power = 1u8;
            for n in 0..300 {
                assert_eq!(exp(a, n), power);
                power = mul(power, a);
            }
        }
        assert_eq!(exp(0, 0), 1);
        assert_eq!(exp(0, 5), 0);
    }

    #[test]
    fn matches_oracle_field() {
        use reed_solomon_erasure::galois_8 as oracle;
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), oracle::mul(a, b));
            }
            assert_eq!(exp(a, 7), oracle::exp(a, 7));
        }
    }

    #[test]
    fn nibble_tables_multiply() {
        for c in 0..=255u8 {
            let t = nibble_tables(c);
            for x in 0..=255u8 {
                assert_eq!(t[(x & 15) as usize] ^ t[16 + (x >> 4) as usize], mul(c, x));
            }
        }
    }

    #[test]
    fn affine_matrix_bit_order_all_constants_all_bytes() {
        for c in 0..=255u8 {
            let m = affine_matrix(c);
            for x in 0..=255u8 {
                assert_eq!(affine_apply(m, x), mul(c, x), "c={c} x={x}");
            }
        }
    }
}
