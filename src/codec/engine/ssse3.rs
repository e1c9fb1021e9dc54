//! SSSE3 engine: the nibble method with `pshufb`, 16 bytes per step, for
//! x86-64 CPUs without AVX2. Same structure as the AVX2 engine.

#![allow(unsafe_code, reason = "SIMD intrinsics and raw-pointer vector loads")]

use std::arch::x86_64::*;

use super::{Engine, MatrixTables, check_shapes, dispatch_group, scalar};
use crate::codec::EngineKind;

/// The SSSE3 engine. Only [`Ssse3::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ssse3 {
    _cpu_checked: (),
}

impl Ssse3 {
    /// The engine, if this CPU has SSSE3.
    pub(crate) fn detect() -> Option<Self> {
        is_x86_feature_detected!("ssse3").then_some(Ssse3 { _cpu_checked: () })
    }
}

impl Engine for Ssse3 {
    fn kind(&self) -> EngineKind {
        EngineKind::Ssse3
    }

    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let len = check_shapes(tables, inputs, outputs);
        let vector_len = len & !15;
        // Why this is sound: `self` exists only if `detect` saw ssse3 on this CPU;
        // `check_shapes` proved every column is `len >= vector_len` bytes and
        // the counts match the tables.
        // SAFETY: the conditions above hold.
        unsafe { mul_matrix(tables, inputs, outputs, vector_len) }
        scalar::mul_matrix_from(tables, inputs, outputs, vector_len);
    }
}

/// Computes bytes `0..vector_len` (a multiple of 16).
///
/// # Safety
/// The CPU has ssse3; every slice is at least `vector_len` bytes; counts
/// match `tables`.
#[target_feature(enable = "ssse3")]
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
    // Why this is sound: the caller guarantees ssse3; every pointer is `offset` bytes
    // into a slice of at least `vector_len` bytes with
    // `offset + 16 <= vector_len`; table pointers cover their 32-byte arrays.
    // SAFETY: the conditions above hold.
    unsafe {
        let low_mask = _mm_set1_epi8(0x0f);
        let mut offset = 0;
        while offset < vector_len {
            let mut acc = [_mm_setzero_si128(); G];
            for (input, tables) in inputs.iter().zip(nibbles) {
                let v = _mm_loadu_si128(input.as_ptr().add(offset).cast());
                let low = _mm_and_si128(v, low_mask);
                let high = _mm_and_si128(_mm_srli_epi16::<4>(v), low_mask);
                for g in 0..G {
                    let table = tables[g].as_ptr();
                    let low_table = _mm_loadu_si128(table.cast());
                    let high_table = _mm_loadu_si128(table.add(16).cast());
                    let product = _mm_xor_si128(
                        _mm_shuffle_epi8(low_table, low),
                        _mm_shuffle_epi8(high_table, high),
                    );
                    acc[g] = _mm_xor_si128(acc[g], product);
                }
            }
            for g in 0..G {
                _mm_storeu_si128(outputs[g].as_mut_ptr().add(offset).cast(), acc[g]);
            }
            offset += 16;
        }
    }
}
