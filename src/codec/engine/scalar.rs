//! The portable engine: one 256-byte product table per coefficient. Always
//! available; also finishes the tails the SIMD kernels leave (fewer bytes
//! than one vector).

use super::{Engine, MatrixTables, check_shapes};
use crate::codec::{EngineKind, gf};

/// Table-lookup engine in plain Rust.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scalar;

impl Engine for Scalar {
    fn kind(&self) -> EngineKind {
        EngineKind::Scalar
    }

    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        check_shapes(tables, inputs, outputs);
        mul_matrix_from(tables, inputs, outputs, 0);
    }
}

/// `mul_matrix` restricted to bytes `start..` of every column. The caller
/// has checked the shapes.
pub(crate) fn mul_matrix_from(
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
) {
    for (r, output) in outputs.iter_mut().enumerate() {
        let output = &mut output[start..];
        let coefficients = tables.coefficient_row(r);
        for (c, (input, &coefficient)) in inputs.iter().zip(coefficients).enumerate() {
            let products = &gf::MUL[coefficient as usize];
            let input = &input[start..];
            if c == 0 {
                for (o, &i) in output.iter_mut().zip(input) {
                    *o = products[i as usize];
                }
            } else {
                for (o, &i) in output.iter_mut().zip(input) {
                    *o ^= products[i as usize];
                }
            }
        }
    }
}
