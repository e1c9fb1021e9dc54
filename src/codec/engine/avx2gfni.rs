//! AVX2 + GFNI engine: `vgf2p8affineqb` on 256-bit registers, for CPUs
//! that have GFNI but no AVX-512 (Intel's E-core Xeons such as Sierra
//! Forest, client cores since Alder Lake). One 8x8 bit matrix per
//! coefficient is applied to 32 bytes at a time: one instruction where the
//! nibble method of the AVX2 engine takes two table loads, two shuffles and
//! an XOR.
//!
//! Per step every input vector is loaded once and folded into up to eight
//! output accumulators held in registers (16 ymm registers: eight
//! accumulators, the input and the broadcast matrix); with up to four
//! outputs a step takes two vectors (64 bytes). The tail of fewer than
//! 32 bytes goes through the scalar engine, as in the AVX2 engine (AVX2 has
//! no byte-masked loads).

#![allow(unsafe_code, reason = "SIMD intrinsics and raw-pointer vector loads")]

use std::arch::x86_64::*;

use super::{Engine, MatrixTables, check_shapes, dispatch_group, scalar};
use crate::codec::EngineKind;

/// The AVX2 + GFNI engine. Only [`Avx2Gfni::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2Gfni {
    _cpu_checked: (),
}

impl Avx2Gfni {
    /// The engine, if this CPU has AVX2 and GFNI.
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("gfni"))
            .then_some(Avx2Gfni { _cpu_checked: () })
    }
}

impl Engine for Avx2Gfni {
    fn kind(&self) -> EngineKind {
        EngineKind::Avx2Gfni
    }

    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let len = check_shapes(tables, inputs, outputs);
        let vector_len = len & !31;
        // Why this is sound: `self` exists only if `detect` saw avx2 and gfni on
        // this CPU; `check_shapes` proved every column is `len >= vector_len`
        // bytes and the counts match the tables.
        // SAFETY: the conditions above hold.
        unsafe { mul_matrix(tables, inputs, outputs, vector_len) }
        scalar::mul_matrix_from(tables, inputs, outputs, vector_len);
    }
}

/// Computes bytes `0..vector_len` (a multiple of 32).
///
/// # Safety
/// The CPU has avx2 and gfni; every slice is at least `vector_len` bytes;
/// counts match `tables`.
#[target_feature(enable = "avx2,gfni")]
unsafe fn mul_matrix(
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    vector_len: usize,
) {
    for (row_start, group_rows) in tables.groups() {
        let matrices = tables.affine_group(row_start, group_rows);
        let group_outputs = &mut outputs[row_start..row_start + group_rows];
        // Why this is sound: forwarded from this function's contract; `matrices` has
        // `group_rows` entries per input, `group_outputs` has `group_rows`
        // slices of at least `vector_len` bytes.
        // SAFETY: the conditions above hold.
        unsafe {
            dispatch_group!(
                group_rows,
                group(matrices, inputs, group_outputs, vector_len)
            )
        }
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
    vector_len: usize,
) {
    let (matrices, _) = matrices.as_chunks::<G>();
    let outputs: &mut [&mut [u8]; G] = outputs.try_into().expect("G outputs");
    let mut offset = 0;
    // Why this is sound: the caller guarantees avx2 and gfni; every pointer below is
    // `offset` bytes into a slice of at least `vector_len` bytes and reads or
    // writes 64 bytes with `offset + 64 <= vector_len` (pairs) or 32 with
    // `offset + 32 <= vector_len` (`vector_len` is a multiple of 32), so no
    // access leaves a slice.
    // SAFETY: the conditions above hold.
    unsafe {
        // With up to four outputs, two vectors per step share each
        // broadcast matrix (more outputs would not fit the 16 registers).
        // Unlike the AVX-512 engine's pairs, this pays at every column
        // length: RS(6,3) encode of 1 MiB columns went from 17.4 to 28-30
        // GB/s on the AMD EPYC machine (docs/PERFORMANCE.md).
        while G <= 4 && offset + 64 <= vector_len {
            let mut acc0 = [_mm256_setzero_si256(); G];
            let mut acc1 = [_mm256_setzero_si256(); G];
            for (input, matrix) in inputs.iter().zip(matrices) {
                let p = input.as_ptr().add(offset);
                let v0 = _mm256_loadu_si256(p.cast());
                let v1 = _mm256_loadu_si256(p.add(32).cast());
                for g in 0..G {
                    let a = _mm256_set1_epi64x(matrix[g] as i64);
                    acc0[g] = _mm256_xor_si256(acc0[g], _mm256_gf2p8affine_epi64_epi8::<0>(v0, a));
                    acc1[g] = _mm256_xor_si256(acc1[g], _mm256_gf2p8affine_epi64_epi8::<0>(v1, a));
                }
            }
            for g in 0..G {
                let p = outputs[g].as_mut_ptr().add(offset);
                _mm256_storeu_si256(p.cast(), acc0[g]);
                _mm256_storeu_si256(p.add(32).cast(), acc1[g]);
            }
            offset += 64;
        }
        while offset + 32 <= vector_len {
            let mut acc = [_mm256_setzero_si256(); G];
            for (input, matrix) in inputs.iter().zip(matrices) {
                let v = _mm256_loadu_si256(input.as_ptr().add(offset).cast());
                for g in 0..G {
                    let a = _mm256_set1_epi64x(matrix[g] as i64);
                    acc[g] = _mm256_xor_si256(acc[g], _mm256_gf2p8affine_epi64_epi8::<0>(v, a));
                }
            }
            for g in 0..G {
                _mm256_storeu_si256(outputs[g].as_mut_ptr().add(offset).cast(), acc[g]);
            }
            offset += 32;
        }
    }
}
