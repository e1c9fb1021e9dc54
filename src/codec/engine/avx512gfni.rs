//! AVX-512 + GFNI engine: `vgf2p8affineqb` applies one 8x8 bit matrix per
//! coefficient to 64 bytes at a time. (`vgf2p8mulb` would be one instruction
//! too, but it multiplies in the AES field 0x11B, not ours.)
//!
//! Per 64-byte step every input vector is loaded once and folded into up to
//! eight output accumulators held in registers; the tail of fewer than 64
//! bytes uses masked loads and stores, so there is no scalar tail.

#![allow(unsafe_code, reason = "SIMD intrinsics and raw-pointer vector loads")]

use std::arch::x86_64::*;

use super::{Engine, MatrixTables, check_shapes, dispatch_group};
use crate::codec::EngineKind;

/// Columns up to this length are processed two vectors per step.
const UNROLL_COLUMN_LEN_MAX: usize = 256 * 1024;

/// The AVX-512 (F + BW) + GFNI engine. Only [`Avx512Gfni::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512Gfni {
    _cpu_checked: (),
}

impl Avx512Gfni {
    /// The engine, if this CPU has AVX-512F, AVX-512BW and GFNI.
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("gfni"))
        .then_some(Avx512Gfni { _cpu_checked: () })
    }
}

impl Engine for Avx512Gfni {
    fn kind(&self) -> EngineKind {
        EngineKind::Avx512Gfni
    }

    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let len = check_shapes(tables, inputs, outputs);
        // Why this is sound: `self` exists only if `detect` saw avx512f, avx512bw and
        // gfni on this CPU; `check_shapes` proved the slice shapes the kernel
        // relies on (every column `len` bytes, counts match the tables).
        // SAFETY: the conditions above hold.
        unsafe { mul_matrix(tables, inputs, outputs, len) }
    }
}

/// # Safety
/// The CPU has avx512f, avx512bw and gfni; every input and output slice is
/// `len` bytes long; counts match `tables`.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn mul_matrix(
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    len: usize,
) {
    for (row_start, group_rows) in tables.groups() {
        let matrices = tables.affine_group(row_start, group_rows);
        let group_outputs = &mut outputs[row_start..row_start + group_rows];
        // Why this is sound: forwarded from this function's contract; `matrices` has
        // `group_rows` entries per input, `group_outputs` has `group_rows`
        // slices of `len` bytes.
        // SAFETY: the conditions above hold.
        unsafe { dispatch_group!(group_rows, group(matrices, inputs, group_outputs, len)) }
    }
}

/// # Safety
/// As [`mul_matrix`], plus `outputs.len() == G` and
/// `matrices.len() == G * inputs.len()`.
#[inline(always)]
unsafe fn group<const G: usize>(
    matrices: &[u64],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    len: usize,
) {
    let (matrices, _) = matrices.as_chunks::<G>();
    let outputs: &mut [&mut [u8]; G] = outputs.try_into().expect("G outputs");
    let mut offset = 0;
    // Why this is sound: the caller guarantees the CPU features; every pointer below
    // is `offset` bytes into a slice of `len` bytes and reads or writes
    // 128 bytes with `offset + 128 <= len` (pairs), 64 with
    // `offset + 64 <= len` (single vectors), or `len - offset < 64` bytes
    // through a mask (the tail), so no access leaves a slice.
    // SAFETY: the conditions above hold.
    unsafe {
        // Two vectors per step share each broadcast matrix and halve the
        // loop overhead: ~+8% when the stripe sits in L2, but ~-10% when
        // it streams from L3 (measured at 64 KiB vs 1 MiB columns), so only
        // for short columns (and tiles).
        while len <= UNROLL_COLUMN_LEN_MAX && offset + 128 <= len {
            let mut acc0 = [_mm512_setzero_si512(); G];
            let mut acc1 = [_mm512_setzero_si512(); G];
            for (input, matrix) in inputs.iter().zip(matrices) {
                let p = input.as_ptr().add(offset);
                let v0 = _mm512_loadu_si512(p.cast());
                let v1 = _mm512_loadu_si512(p.add(64).cast());
                for g in 0..G {
                    let a = _mm512_set1_epi64(matrix[g] as i64);
                    acc0[g] = _mm512_xor_si512(acc0[g], _mm512_gf2p8affine_epi64_epi8::<0>(v0, a));
                    acc1[g] = _mm512_xor_si512(acc1[g], _mm512_gf2p8affine_epi64_epi8::<0>(v1, a));
                }
            }
            for g in 0..G {
                let p = outputs[g].as_mut_ptr().add(offset);
                _mm512_storeu_si512(p.cast(), acc0[g]);
                _mm512_storeu_si512(p.add(64).cast(), acc1[g]);
            }
            offset += 128;
        }
        while offset + 64 <= len {
            let mut acc = [_mm512_setzero_si512(); G];
            for (input, matrix) in inputs.iter().zip(matrices) {
                let v = _mm512_loadu_si512(input.as_ptr().add(offset).cast());
                for g in 0..G {
                    let a = _mm512_set1_epi64(matrix[g] as i64);
                    acc[g] = _mm512_xor_si512(acc[g], _mm512_gf2p8affine_epi64_epi8::<0>(v, a));
                }
            }
            for g in 0..G {
                _mm512_storeu_si512(outputs[g].as_mut_ptr().add(offset).cast(), acc[g]);
            }
            offset += 64;
        }
        if offset < len {
            let mask: __mmask64 = (1u64 << (len - offset)) - 1;
            let mut acc = [_mm512_setzero_si512(); G];
            for (input, matrix) in inputs.iter().zip(matrices) {
                let v = _mm512_maskz_loadu_epi8(mask, input.as_ptr().add(offset).cast());
                for g in 0..G {
                    let a = _mm512_set1_epi64(matrix[g] as i64);
                    acc[g] = _mm512_xor_si512(acc[g], _mm512_gf2p8affine_epi64_epi8::<0>(v, a));
                }
            }
            for g in 0..G {
                _mm512_mask_storeu_epi8(outputs[g].as_mut_ptr().add(offset).cast(), mask, acc[g]);
            }
        }
    }
}
