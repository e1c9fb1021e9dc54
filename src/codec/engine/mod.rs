//! The SIMD engines: one module per instruction set behind the [`Engine`]
//! trait, plus the portable scalar fallback.
//!
//! Every engine does one thing: multiply a small coefficient matrix by a set
//! of input columns, `outputs[r] = XOR over c of coefficient(r, c) * inputs[c]`,
//! byte by byte. Encode is that with the parity rows of the coding matrix;
//! reconstruct is that with the rows of a decode matrix.
//!
//! An ISA engine value can only be made by its `detect()` constructor, which
//! checks the CPU; holding one is the proof that its `#[target_feature]`
//! kernels may run. That is why the safe `mul_matrix` method may call them.

use std::fmt;

use super::EngineKind;
use super::gf;
use super::matrix::Matrix;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2gfni;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512gfni;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod ssse3;

/// Output rows are computed in groups of at most this many, each group's
/// accumulators living in registers while every input vector is read once.
/// 8 fits the 16 vector registers of SSSE3/AVX2 with the nibble method
/// (8 accumulators + mask + 2 index vectors + 2 table vectors + temporaries).
pub(crate) const GROUP_ROWS_MAX: usize = 8;

/// When a matrix has more than one group of output rows, each group reads
/// every input again. The stripe is then walked in tiles of about this many
/// bytes (inputs + outputs of one tile) so the second group finds the inputs
/// still in L2 (1.25 MiB on the target machine).
pub(crate) const TILE_BYTES: usize = 512 * 1024;

/// Smallest tile column length: below it the per-tile overhead shows.
const TILE_COLUMN_LEN_MIN: usize = 1024;

/// One coding engine.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// Which instruction set this engine uses.
    fn kind(&self) -> EngineKind;

    /// `outputs[r] = XOR over c of tables.coefficient(r, c) * inputs[c]`.
    ///
    /// # Panics
    /// If `inputs.len() != tables.column_count()`, `outputs.len() !=
    /// tables.row_count()` or the slices differ in length: callers validate
    /// user input first, so this is a bug (and the SIMD kernels rely on it).
    fn mul_matrix(&self, tables: &MatrixTables, inputs: &[&[u8]], outputs: &mut [&mut [u8]]);
}

/// Checks what [`Engine::mul_matrix`] requires; returns the common length.
pub(crate) fn check_shapes(
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &[&mut [u8]],
) -> usize {
    assert_eq!(
        inputs.len(),
        tables.column_count(),
        "input count != matrix columns"
    );
    assert_eq!(
        outputs.len(),
        tables.row_count(),
        "output count != matrix rows"
    );
    let len = inputs.first().map_or(0, |s| s.len());
    assert!(
        inputs.iter().all(|s| s.len() == len) && outputs.iter().all(|s| s.len() == len),
        "columns differ in length"
    );
    len
}

/// Builds the engine of `kind`, if this CPU can run it.
pub(crate) fn build(kind: EngineKind) -> Option<Box<dyn Engine>> {
    match kind {
        EngineKind::Scalar => Some(Box::new(scalar::Scalar)),
        #[cfg(target_arch = "x86_64")]
        EngineKind::Ssse3 => ssse3::Ssse3::detect().map(|e| Box::new(e) as Box<dyn Engine>),
        #[cfg(target_arch = "x86_64")]
        EngineKind::Avx2 => avx2::Avx2::detect().map(|e| Box::new(e) as Box<dyn Engine>),
        #[cfg(target_arch = "x86_64")]
        EngineKind::Avx2Gfni => {
            avx2gfni::Avx2Gfni::detect().map(|e| Box::new(e) as Box<dyn Engine>)
        }
        #[cfg(target_arch = "x86_64")]
        EngineKind::Avx512Gfni => {
            avx512gfni::Avx512Gfni::detect().map(|e| Box::new(e) as Box<dyn Engine>)
        }
        #[cfg(target_arch = "aarch64")]
        EngineKind::Neon => neon::Neon::detect().map(|e| Box::new(e) as Box<dyn Engine>),
        #[allow(
            unreachable_patterns,
            reason = "which ISAs exist depends on the target"
        )]
        _ => None,
    }
}

/// Multiplies `tables` by `inputs` with `engine`, tile by tile when the
/// matrix has more output rows than one register group (see [`TILE_BYTES`]).
pub(crate) fn apply(
    engine: &dyn Engine,
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
) {
    let len = check_shapes(tables, inputs, outputs);
    let slice_count = tables.column_count() + tables.row_count();
    let tile_len = (TILE_BYTES / slice_count).max(TILE_COLUMN_LEN_MIN) & !63;
    if tables.row_count() <= GROUP_ROWS_MAX || len <= tile_len {
        engine.mul_matrix(tables, inputs, outputs);
        return;
    }
    // At most 256 columns per stripe, so these stack arrays hold any matrix
    // without allocating.
    let mut input_tiles: [&[u8]; 256] = [&[]; 256];
    let mut start = 0;
    while start < len {
        let end = (start + tile_len).min(len);
        for (tile, input) in input_tiles.iter_mut().zip(inputs) {
            *tile = &input[start..end];
        }
        let mut output_tiles: [&mut [u8]; 256] = std::array::from_fn(|_| &mut [][..]);
        for (tile, output) in output_tiles.iter_mut().zip(outputs.iter_mut()) {
            *tile = &mut output[start..end];
        }
        engine.mul_matrix(
            tables,
            &input_tiles[..inputs.len()],
            &mut output_tiles[..tables.row_count()],
        );
        start = end;
    }
}

/// Zeros standing in for the part of an input past its end.
const ZEROS_LEN: usize = 16 << 10;
static ZEROS: [u8; ZEROS_LEN] = [0; ZEROS_LEN];

/// [`apply`] with inputs that may be shorter than the outputs: each input is
/// taken as zero-padded to the outputs' length (the padding a stripe never
/// stores), without being copied anywhere. The range is cut at every
/// input's end; past it a shared block of zeros stands in for the input,
/// at most [`ZEROS_LEN`] bytes at a time. Equal lengths go straight to
/// [`apply`].
///
/// # Panics
/// As [`apply`], or if an input is longer than the outputs.
pub(crate) fn apply_padded(
    engine: &dyn Engine,
    tables: &MatrixTables,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
) {
    let len = outputs.first().map_or(0, |o| o.len());
    let output_count = outputs.len();
    assert!(
        inputs.iter().all(|c| c.len() <= len),
        "an input is longer than the outputs"
    );
    if inputs.iter().all(|c| c.len() == len) {
        apply(engine, tables, inputs, outputs);
        return;
    }
    let mut input_parts: [&[u8]; 256] = [&[]; 256];
    let mut start = 0;
    while start < len {
        // Up to the next input's end, and no further than the zeros reach
        // where an input has ended.
        let mut end = len;
        let mut ended = false;
        for input in inputs {
            if input.len() > start {
                end = end.min(input.len());
            } else {
                ended = true;
            }
        }
        if ended {
            end = end.min(start + ZEROS_LEN);
        }
        for (part, input) in input_parts.iter_mut().zip(inputs) {
            *part = if input.len() >= end {
                &input[start..end]
            } else {
                &ZEROS[..end - start]
            };
        }
        let mut output_parts: [&mut [u8]; 256] = std::array::from_fn(|_| &mut [][..]);
        for (part, output) in output_parts.iter_mut().zip(outputs.iter_mut()) {
            *part = &mut output[start..end];
        }
        apply(
            engine,
            tables,
            &input_parts[..inputs.len()],
            &mut output_parts[..output_count],
        );
        start = end;
    }
}

/// A coefficient matrix expanded into the lookup forms the engines use.
///
/// Row groups: rows are split into groups of [`GROUP_ROWS_MAX`] (the last one
/// may be shorter). The per-coefficient tables are stored group after group,
/// and inside a group column-major (`[column][row in group]`), so a kernel
/// walks one group's tables front to back while it walks the inputs.
#[derive(Debug)]
pub(crate) struct MatrixTables {
    row_count: usize,
    column_count: usize,
    /// Row-major coefficients (scalar engine and SIMD tails).
    coefficients: Vec<u8>,
    /// Grouped `[low nibble products; 16] ++ [high nibble products; 16]`.
    nibbles: Vec<[u8; 32]>,
    /// Grouped GFNI bit matrices.
    affine: Vec<u64>,
}

impl MatrixTables {
    pub(crate) fn new(matrix: &Matrix) -> MatrixTables {
        let row_count = matrix.row_count();
        let column_count = matrix.column_count();
        let mut nibbles = Vec::with_capacity(row_count * column_count);
        let mut affine = Vec::with_capacity(row_count * column_count);
        for (row_start, group_rows) in groups(row_count) {
            for c in 0..column_count {
                for r in row_start..row_start + group_rows {
                    let coefficient = matrix.get(r, c);
                    nibbles.push(gf::nibble_tables(coefficient));
                    affine.push(gf::affine_matrix(coefficient));
                }
            }
        }
        MatrixTables {
            row_count,
            column_count,
            coefficients: matrix.elements().to_vec(),
            nibbles,
            affine,
        }
    }

    pub(crate) fn row_count(&self) -> usize {
        self.row_count
    }

    pub(crate) fn column_count(&self) -> usize {
        self.column_count
    }

    /// Coefficients of output row `r`, one per input column.
    pub(crate) fn coefficient_row(&self, r: usize) -> &[u8] {
        &self.coefficients[r * self.column_count..(r + 1) * self.column_count]
    }

    /// (first row, row count) of every row group.
    pub(crate) fn groups(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        groups(self.row_count)
    }

    /// The nibble tables of the group starting at `row_start`:
    /// `column_count * group_rows` entries, `[column][row in group]`.
    pub(crate) fn nibble_group(&self, row_start: usize, group_rows: usize) -> &[[u8; 32]] {
        let start = row_start * self.column_count;
        &self.nibbles[start..start + group_rows * self.column_count]
    }

    /// The GFNI matrices of the group starting at `row_start`, laid out like
    /// [`MatrixTables::nibble_group`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn affine_group(&self, row_start: usize, group_rows: usize) -> &[u64] {
        let start = row_start * self.column_count;
        &self.affine[start..start + group_rows * self.column_count]
    }
}

fn groups(row_count: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..row_count)
        .step_by(GROUP_ROWS_MAX)
        .map(move |start| (start, GROUP_ROWS_MAX.min(row_count - start)))
}

/// Calls `$kernel::<G>($group_rows, ...)` with `G` the constant equal to the
/// runtime group size (1..=8), so each kernel keeps its accumulators in a
/// fixed-size array the compiler maps to registers.
macro_rules! dispatch_group {
    ($group_rows:expr, $kernel:ident ( $($arg:expr),* $(,)? )) => {
        match $group_rows {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            8 => $kernel::<8>($($arg),*),
            other => unreachable!("row group of {other} rows"),
        }
    };
}
#[allow(unused_imports, reason = "unused on targets with no SIMD engine")]
pub(crate) use dispatch_group;
