//! NEON engine (aarch64): the nibble method with `tbl`, 16 bytes per step.
//! Same structure as the x86 nibble engines.

#![allow(unsafe_code, reason = "SIMD intrinsics and raw-pointer vector loads")]

use std::arch::aarch64::*;

use super::{Engine, MatrixTables, check_shapes, dispatch_group, scalar};
use crate::codec::EngineKind;

/// The NEON engine. Only [`Neon::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Neon {
    _cpu_checked: (),
}

impl Neon {
    /// The engine, if this CPU has NEON (every aarch64 Linux CPU does, but
    /// the check keeps the constructor honest).
    pub(crate) fn detect() -> Option<Self> {
        std::arch::is_aarch64_feature_detected!("neon").then_some(Neon { _cpu_checked: () })
    }
}

impl Engine for Neon {
    fn kind(&self) -> EngineKind {
        EngineKind::Neon
    }

    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let len = check_shapes(tables, inputs, outputs);
        let vector_len = len & !15;
        // Why this is sound: `self` exists only if `detect` saw neon on this CPU;
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
/// The CPU has neon; every slice is at least `vector_len` bytes; counts
/// match `tables`.
#[target_feature(enable = "neon")]
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
    // Why this is sound: the caller guarantees neon; every pointer is `offset` bytes
    // into a slice of at least `vector_len` bytes with
    // `offset + 16 <= vector_len`; table pointers cover their 32-byte arrays.
    // SAFETY: the conditions above hold.
    unsafe {
        let low_mask = vdupq_n_u8(0x0f);
        let mut offset = 0;
        while offset < vector_len {
            let mut acc = [vdupq_n_u8(0); G];
            for (input, tables) in inputs.iter().zip(nibbles) {
                let v = vld1q_u8(input.as_ptr().add(offset));
                let low = vandq_u8(v, low_mask);
                let high = vshrq_n_u8::<4>(v);
                for g in 0..G {
                    let table = tables[g].as_ptr();
                    let low_table = vld1q_u8(table);
                    let high_table = vld1q_u8(table.add(16));
                    let product =
                        veorq_u8(vqtbl1q_u8(low_table, low), vqtbl1q_u8(high_table, high));
                    acc[g] = veorq_u8(acc[g], product);
                }
            }
            for g in 0..G {
                vst1q_u8(outputs[g].as_mut_ptr().add(offset), acc[g]);
            }
            offset += 16;
        }
    }
}
