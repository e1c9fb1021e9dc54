//! AVX2 engine: the nibble method with `vpshufb`, 32 bytes per step. Each
//! coefficient's two 16-entry tables are broadcast to both 128-bit lanes.
//! Every input vector is loaded and split into nibbles once, then folded into
//! up to eight output accumulators held in registers.

#![allow(unsafe_code, reason = "SIMD intrinsics and raw-pointer vector loads")]

use std::arch::x86_64::*;

use super::{Engine, MatrixTables, check_shapes, dispatch_group, scalar};
use crate::codec::EngineKind;

/// The AVX2 engine. Only [`Avx2::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2 {
    _cpu_checked: (),
}

impl Avx2 {
    /// The engine, if this CPU has AVX2.
    pub(crate) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Avx2 { _cpu_checked: () })
    }
}

impl Engine for Avx2 {
    fn kind(&self) -> EngineKind {
        EngineKind::Avx2
    }

    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let len = check_shapes(tables, inputs, outputs);
        let vector_len = len & !31;
        // Why this is sound: `self` exists only if `detect` saw avx2 on this CPU;
        // `check_shapes` proved every column is `len >= vector_len` bytes and
        // the counts match the tables.
        // SAFETY: the conditions above hold.
        unsafe { mul_matrix(tables, inputs, outputs, vector_len) }
        scalar::mul_matrix_from(tables, inputs, outputs, vector_len);
    }
}

/// Computes bytes `0..vector_len` (a multiple of 32).
///
/// # Safety
/// The CPU has avx2; every slice is at least `vector_len` bytes; counts match
/// `tables`.
#[target_feature(enable = "avx2")]
unsafe fn mul_matrix(
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    vector_len: usize,
) {
    for (row_start, group_rows) in tables.groups() {
        let nibbles = tables.nibble_group(row_start, group_rows);
        let group_outputs = &mut outputs[row_start..row_start + group_rows];
        // SAFETY: forwarded from this function's contract; `nibbles` has
        // `group_rows` entries per input.
        unsafe {
            dispatch_group!(
                group_rows,
                group(nibbles, inputs, group_outputs, vector_len)
            )
        }
    }
}

/// # Safety
/// As [`mul_matrix`], plus `outputs.len() == G` and
/// `nibbles.len() == G * inputs.len()`.
#[inline(always)]
unsafe fn group<const G: usize>(
    nibbles: &[[u8; 32]],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    vector_len: usize,
) {
    let (nibbles, _) = nibbles.as_chunks::<G>();
    let outputs: &mut [&mut [u8]; G] = outputs.try_into().expect("G outputs");
    // Why this is sound: the caller guarantees avx2; every pointer is `offset` bytes
    // into a slice of at least `vector_len` bytes and accesses 64 bytes with
    // `offset + 64 <= vector_len` or 32 with `offset + 32 <= vector_len`
    // (`vector_len` is a multiple of 32); table pointers cover their
    // 32-byte arrays.
    // SAFETY: the conditions above hold.
    unsafe {
        let low_mask = _mm256_set1_epi8(0x0f);
        let mut offset = 0;
        // With one or two outputs the table loads dominate: share them
        // between two vectors per step (more outputs would run out of the
        // 16 registers).
        while G <= 2 && offset + 64 <= vector_len {
            let mut acc0 = [_mm256_setzero_si256(); G];
            let mut acc1 = [_mm256_setzero_si256(); G];
            for (input, tables) in inputs.iter().zip(nibbles) {
                let p = input.as_ptr().add(offset);
                let v0 = _mm256_loadu_si256(p.cast());
                let v1 = _mm256_loadu_si256(p.add(32).cast());
                let low0 = _mm256_and_si256(v0, low_mask);
                let high0 = _mm256_and_si256(_mm256_srli_epi16::<4>(v0), low_mask);
                let low1 = _mm256_and_si256(v1, low_mask);
                let high1 = _mm256_and_si256(_mm256_srli_epi16::<4>(v1), low_mask);
                for g in 0..G {
                    let table = tables[g].as_ptr();
                    let low_table = _mm256_broadcastsi128_si256(_mm_loadu_si128(table.cast()));
                    let high_table =
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(table.add(16).cast()));
                    acc0[g] = _mm256_xor_si256(
                        acc0[g],
                        _mm256_xor_si256(
                            _mm256_shuffle_epi8(low_table, low0),
                            _mm256_shuffle_epi8(high_table, high0),
                        ),
                    );
                    acc1[g] = _mm256_xor_si256(
                        acc1[g],
                        _mm256_xor_si256(
                            _mm256_shuffle_epi8(low_table, low1),
                            _mm256_shuffle_epi8(high_table, high1),
                        ),
                    );
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
            for (input, tables) in inputs.iter().zip(nibbles) {
                let v = _mm256_loadu_si256(input.as_ptr().add(offset).cast());
                let low = _mm256_and_si256(v, low_mask);
                let high = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low_mask);
                for g in 0..G {
                    let table = tables[g].as_ptr();
                    let low_table = _mm256_broadcastsi128_si256(_mm_loadu_si128(table.cast()));
                    let high_table =
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(table.add(16).cast()));
                    let product = _mm256_xor_si256(
                        _mm256_shuffle_epi8(low_table, low),
                        _mm256_shuffle_epi8(high_table, high),
                    );
                    acc[g] = _mm256_xor_si256(acc[g], product);
                }
            }
            for g in 0..G {
                _mm256_storeu_si256(outputs[g].as_mut_ptr().add(offset).cast(), acc[g]);
            }
            offset += 32;
        }
    }
}
