//! Systematic Reed-Solomon RS(k, m) over GF(2^8) with SIMD engines.
//!
//! A stripe has k data columns and m parity columns of equal length; any k of
//! the k + m columns rebuild all the others. The field (polynomial 0x11D) and
//! the coding matrix (a (k+m) x k Vandermonde matrix times the inverse of its
//! top k x k square) are those of `reed-solomon-erasure` 6.x
//! (`galois_8::ReedSolomon`), so parity is byte-identical to it.
//!
//! The arithmetic runs on one [`EngineKind`] picked once per [`Codec`]: the
//! best this CPU has (AVX-512 + GFNI, AVX2 + GFNI, AVX2, SSSE3, NEON,
//! scalar), or the one named by the `GEOSHARD_SIMD` environment variable.
//!
//! Range reconstruct: Reed-Solomon works byte position by byte position, so
//! bytes [a, b) of a missing column depend only on bytes [a, b) of the
//! present ones. Passing sub-slices `column[a..b]` to
//! [`Codec::reconstruct`] therefore *is* the range reconstruct a degraded read
//! of one small blob needs; it costs in proportion to b - a, not to the
//! column length.

mod cache;
mod column_set;
mod engine;
mod gf;
mod matrix;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Error, Result};

pub use column_set::ColumnSet;
pub use verify::{VERIFY_TILE_LEN, VerifyReport, VerifyScratch};

use cache::DecodeCache;
use engine::{Engine, MatrixTables};
use matrix::Matrix;

/// The most columns (k + m) a stripe can have: GF(2^8) has 256 elements.
pub const COLUMN_COUNT_MAX: usize = 256;

/// Codes with at most this many data columns, rebuilding at most this many
/// columns, take the small-array reconstruct path.
const SMALL_CODE_COLUMNS_MAX: usize = 32;

/// How many decode matrices (one per set of present + missing columns) a
/// [`Codec`] keeps. A degraded read pattern (one node or one site down)
/// touches a handful of sets, so a few dozen cover a whole outage.
pub const DECODE_CACHE_CAPACITY: usize = 32;

/// The environment variable that forces an engine (`scalar`, `ssse3`,
/// `avx2`, `avx2gfni`, `avx512gfni` or `neon`) for [`Codec::new`].
pub const SIMD_ENV_VAR: &str = "GEOSHARD_SIMD";

/// The instruction set a [`Codec`] computes with. More engines may come,
/// so a `match` on it needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EngineKind {
    /// Portable table lookups; always available.
    Scalar,
    /// x86-64 SSSE3 `pshufb` nibble tables, 16 bytes per step.
    Ssse3,
    /// x86-64 AVX2 `vpshufb` nibble tables, 32 bytes per step.
    Avx2,
    /// x86-64 AVX2 + GFNI `vgf2p8affineqb` bit matrices, 32 bytes per step:
    /// the best engine of CPUs with GFNI but no AVX-512 (available, not
    /// chosen, on CPUs that have both).
    Avx2Gfni,
    /// x86-64 AVX-512BW + GFNI `vgf2p8affineqb` bit matrices, 64 bytes per step.
    Avx512Gfni,
    /// aarch64 NEON `tbl` nibble tables, 16 bytes per step.
    Neon,
}

impl EngineKind {
    /// Every engine, slowest first.
    pub const ALL: [EngineKind; 6] = [
        EngineKind::Scalar,
        EngineKind::Ssse3,
        EngineKind::Avx2,
        EngineKind::Avx2Gfni,
        EngineKind::Avx512Gfni,
        EngineKind::Neon,
    ];

    /// The lowercase name used by `Display`, `FromStr` and `GEOSHARD_SIMD`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Scalar => "scalar",
            EngineKind::Ssse3 => "ssse3",
            EngineKind::Avx2 => "avx2",
            EngineKind::Avx2Gfni => "avx2gfni",
            EngineKind::Avx512Gfni => "avx512gfni",
            EngineKind::Neon => "neon",
        }
    }

    /// Whether this CPU can run the engine.
    pub fn is_available(self) -> bool {
        engine::build(self).is_some()
    }

    /// The engines this CPU can run, slowest first (scalar is always there).
    ///
    /// ```
    /// use geoshard::codec::EngineKind;
    /// assert!(EngineKind::available().contains(&EngineKind::Scalar));
    /// ```
    pub fn available() -> Vec<EngineKind> {
        EngineKind::ALL
            .into_iter()
            .filter(|kind| kind.is_available())
            .collect()
    }

    /// The fastest engine this CPU can run.
    pub fn best() -> EngineKind {
        EngineKind::ALL
            .into_iter()
            .rev()
            .find(|kind| kind.is_available())
            .unwrap_or(EngineKind::Scalar)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = Error;

    /// Parses a lowercase engine name (`scalar`, `ssse3`, `avx2`,
    /// `avx2gfni`, `avx512gfni`, `neon`).
    fn from_str(s: &str) -> Result<EngineKind> {
        EngineKind::ALL.into_iter().find(|kind| kind.name() == s).ok_or_else(|| {
            Error::invalid(format!(
                "unknown SIMD engine {s:?}; expected one of scalar, ssse3, avx2, avx2gfni, avx512gfni, neon"
            ))
        })
    }
}

/// A Reed-Solomon RS(k, m) coder bound to one SIMD engine.
///
/// Cheap to clone (the tables live behind an `Arc`) and shareable between
/// threads. Encode and reconstruct work on caller-provided slices and do not
/// allocate once warm (a reconstruct of a new erasure pattern builds and
/// caches its decode matrix once).
///
/// ```
/// use geoshard::codec::Codec;
///
/// let codec = Codec::new(6, 3)?;
/// let data: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1000]).collect();
/// let mut parity = vec![vec![0u8; 1000]; 3];
/// let data_refs: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
/// let mut parity_refs: Vec<&mut [u8]> = parity.iter_mut().map(|c| c.as_mut_slice()).collect();
/// codec.encode(&data_refs, &mut parity_refs)?;
///
/// // Lose data columns 0, 1 and 2 (one site); rebuild them from the other six.
/// let present: Vec<(usize, &[u8])> = (3..6)
///     .map(|i| (i, data[i].as_slice()))
///     .chain((0..3).map(|j| (6 + j, parity[j].as_slice())))
///     .collect();
/// let mut rebuilt = vec![vec![0u8; 1000]; 3];
/// let mut missing: Vec<(usize, &mut [u8])> =
///     rebuilt.iter_mut().enumerate().map(|(i, c)| (i, c.as_mut_slice())).collect();
/// codec.reconstruct(&present, &mut missing)?;
/// assert_eq!(rebuilt[..], data[..3]);
/// # Ok::<(), geoshard::Error>(())
/// ```
#[derive(Clone)]
pub struct Codec {
    inner: Arc<Inner>,
}

struct Inner {
    data_count: usize,
    parity_count: usize,
    engine: Box<dyn Engine>,
    /// The full (k + m) x k coding matrix.
    coding: Matrix,
    /// Its parity rows, expanded for the engine.
    encode_tables: MatrixTables,
    decode_cache: DecodeCache,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("data_count", &self.inner.data_count)
            .field("parity_count", &self.inner.parity_count)
            .field("engine", &self.engine())
            .finish()
    }
}

impl Codec {
    /// RS(`data_count`, `parity_count`) on the best engine for this CPU, or on
    /// the engine named by the `GEOSHARD_SIMD` environment variable
    /// (`scalar|ssse3|avx2|avx2gfni|avx512gfni|neon`) when it is set and not empty.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a count is 0, if `data_count +
    /// parity_count > 256`, if `GEOSHARD_SIMD` names no engine or one this
    /// CPU cannot run.
    pub fn new(data_count: usize, parity_count: usize) -> Result<Codec> {
        let kind = engine_from_env(std::env::var_os(SIMD_ENV_VAR))?;
        Codec::with_engine(data_count, parity_count, kind)
    }

    /// RS(`data_count`, `parity_count`) on the given engine.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a count is 0, if `data_count +
    /// parity_count > 256`, or if this CPU cannot run `engine`.
    pub fn with_engine(
        data_count: usize,
        parity_count: usize,
        engine: EngineKind,
    ) -> Result<Codec> {
        if data_count == 0 || parity_count == 0 {
            return Err(Error::invalid(format!(
                "RS({data_count}, {parity_count}): data and parity counts must be at least 1"
            )));
        }
        if data_count + parity_count > COLUMN_COUNT_MAX {
            return Err(Error::invalid(format!(
                "RS({data_count}, {parity_count}): at most {COLUMN_COUNT_MAX} columns in GF(2^8)"
            )));
        }
        let engine = engine::build(engine).ok_or_else(|| {
            let available: Vec<&str> = EngineKind::available()
                .into_iter()
                .map(EngineKind::name)
                .collect();
            Error::invalid(format!(
                "this CPU cannot run the {engine} engine; available: {}",
                available.join(", ")
            ))
        })?;
        let coding = Matrix::coding(data_count, parity_count);
        let parity_rows = coding.select_rows((data_count..data_count + parity_count).map(Some));
        let encode_tables = MatrixTables::new(&parity_rows);
        Ok(Codec {
            inner: Arc::new(Inner {
                data_count,
                parity_count,
                engine,
                coding,
                encode_tables,
                decode_cache: DecodeCache::new(DECODE_CACHE_CAPACITY),
            }),
        })
    }

    /// k: how many data columns a stripe has.
    pub fn data_count(&self) -> usize {
        self.inner.data_count
    }

    /// m: how many parity columns a stripe has (and how many lost columns it
    /// survives).
    pub fn parity_count(&self) -> usize {
        self.inner.parity_count
    }

    /// k + m.
    pub fn column_count(&self) -> usize {
        self.inner.data_count + self.inner.parity_count
    }

    /// The engine this codec computes with.
    pub fn engine(&self) -> EngineKind {
        self.inner.engine.kind()
    }

    /// Computes the m parity columns of the k data columns.
    ///
    /// Columns may have any length (0 included) and any alignment. The
    /// parity columns all have the same length; a data column may be
    /// shorter, and is then taken as zero-padded to it (a stripe's short
    /// data columns: the padding is never stored, nor copied anywhere).
    /// Parity is overwritten, not XOR-ed into.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `data.len() != k`, `parity.len() != m`,
    /// the parity columns differ in length, or a data column is longer than
    /// they are.
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<()> {
        let (k, m) = (self.data_count(), self.parity_count());
        if data.len() != k || parity.len() != m {
            return Err(Error::invalid(format!(
                "RS({k}, {m}) encode needs {k} data and {m} parity columns, got {} and {}",
                data.len(),
                parity.len()
            )));
        }
        let column_len = parity[0].len();
        if data.iter().any(|c| c.len() > column_len) || parity.iter().any(|c| c.len() != column_len)
        {
            return Err(Error::invalid(
                "encode: parity columns differ in length, or a data column is longer than them",
            ));
        }
        if column_len > 0 {
            engine::apply_padded(&*self.inner.engine, &self.inner.encode_tables, data, parity);
        }
        Ok(())
    }

    /// Rebuilds the `missing` columns from the `present` ones.
    ///
    /// Column indices run over `0..k + m`: data columns are `0..k`, parity
    /// columns `k..k + m`. Each `present` entry is `(column_index, bytes)`,
    /// each `missing` entry `(column_index, buffer to fill)`. The buffers to
    /// fill have the same length; a present column may be shorter, and is
    /// then taken as zero-padded to it (a short data column of a stripe,
    /// whose padding is never stored). At least k columns must be present; the k with the
    /// lowest indices are used. The decode matrix of each (used present set,
    /// missing set) is cached, so a repeated erasure pattern does not invert
    /// a matrix again.
    ///
    /// Range reconstruct: pass `column[a..b]` for every column to rebuild
    /// only bytes [a, b); the result equals bytes [a, b) of a full rebuild.
    ///
    /// # Errors
    /// - [`Error::NotEnoughColumns`] `{ needed: k, available: present.len() }`
    ///   if fewer than k columns are present (e.g. more than m are missing).
    /// - [`Error::InvalidArgument`] if an index is `>= k + m`, an index
    ///   repeats (within or across the two lists), the buffers to fill
    ///   differ in length, or a present column is longer than they are.
    pub fn reconstruct(
        &self,
        present: &[(usize, &[u8])],
        missing: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        let (k, n) = (self.data_count(), self.column_count());
        let column_len = missing
            .first()
            .map(|(_, c)| c.len())
            .or_else(|| present.iter().map(|(_, c)| c.len()).max())
            .unwrap_or(0);
        let mut present_set = ColumnSet::new();
        for &(column_index, bytes) in present {
            check_index(column_index, n)?;
            if !present_set.insert(column_index) {
                return Err(Error::invalid(format!(
                    "column {column_index} is present twice"
                )));
            }
            if bytes.len() > column_len {
                return Err(Error::invalid(
                    "reconstruct: a present column is longer than the missing ones",
                ));
            }
        }
        let mut missing_set = ColumnSet::new();
        for (column_index, bytes) in missing.iter() {
            let column_index = *column_index;
            check_index(column_index, n)?;
            if present_set.contains(column_index) {
                return Err(Error::invalid(format!(
                    "column {column_index} is both present and missing"
                )));
            }
            if !missing_set.insert(column_index) {
                return Err(Error::invalid(format!(
                    "column {column_index} is missing twice"
                )));
            }
            if bytes.len() != column_len {
                return Err(Error::invalid(
                    "reconstruct: the buffers to fill differ in length",
                ));
            }
        }
        if present.len() < k {
            return Err(Error::NotEnoughColumns {
                needed: k,
                available: present.len(),
            });
        }
        if missing.is_empty() || column_len == 0 {
            return Ok(());
        }

        let used: ColumnSet = present_set.iter().take(k).collect();
        let tables = self
            .inner
            .decode_cache
            .get_or_insert_with(used, missing_set, || self.decode_tables(used, missing_set));

        // Small codes (the common case) use small stack arrays: filling 256
        // slice slots would cost more than rebuilding a 4 KiB range.
        if k <= SMALL_CODE_COLUMNS_MAX && missing.len() <= SMALL_CODE_COLUMNS_MAX {
            self.run_decode::<SMALL_CODE_COLUMNS_MAX>(&tables, used, missing_set, present, missing);
        } else {
            self.run_decode::<COLUMN_COUNT_MAX>(&tables, used, missing_set, present, missing);
        }
        Ok(())
    }

    /// Multiplies the decode matrix by the used present columns into the
    /// missing ones, both ordered by column index as the matrix expects.
    /// `N` bounds k and the missing count (checked by the caller); the slice
    /// lists live on the stack, so nothing is allocated.
    fn run_decode<const N: usize>(
        &self,
        tables: &MatrixTables,
        used: ColumnSet,
        missing_set: ColumnSet,
        present: &[(usize, &[u8])],
        missing: &mut [(usize, &mut [u8])],
    ) {
        let mut inputs: [&[u8]; N] = [&[]; N];
        for &(column_index, bytes) in present {
            if used.contains(column_index) {
                inputs[used.rank(column_index)] = bytes;
            }
        }
        let mut outputs: [&mut [u8]; N] = std::array::from_fn(|_| &mut [][..]);
        for (column_index, bytes) in missing.iter_mut() {
            outputs[missing_set.rank(*column_index)] = &mut **bytes;
        }
        let missing_count = missing_set.len();
        engine::apply_padded(
            &*self.inner.engine,
            tables,
            &inputs[..self.data_count()],
            &mut outputs[..missing_count],
        );
    }

    /// Checks whether the parity columns match the data columns and, given
    /// the expected crc32 (`crc32fast`) of every column, which columns are
    /// damaged.
    ///
    /// `columns` are all k + m columns in index order; the parity columns
    /// have equal length, a data column may be shorter (taken as
    /// zero-padded).
    /// Parity is recomputed tile by tile into `scratch` (at most
    /// m x [`VERIFY_TILE_LEN`] bytes, allocated on first use and
    /// reused afterwards), so a warm verify does not allocate.
    ///
    /// ```
    /// use geoshard::codec::{Codec, VerifyScratch};
    ///
    /// let codec = Codec::new(4, 2)?;
    /// let mut columns = vec![vec![7u8; 100]; 6];
    /// {
    ///     let (data, parity) = columns.split_at_mut(4);
    ///     let data: Vec<&[u8]> = data.iter().map(|c| c.as_slice()).collect();
    ///     let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|c| c.as_mut_slice()).collect();
    ///     codec.encode(&data, &mut parity)?;
    /// }
    /// let checksums: Vec<u32> = columns.iter().map(|c| crc32fast::hash(c)).collect();
    /// columns[2][50] ^= 1; // bit rot in data column 2
    /// let refs: Vec<&[u8]> = columns.iter().map(|c| c.as_slice()).collect();
    /// let mut scratch = VerifyScratch::new();
    /// let report = codec.verify(&refs, Some(&checksums), &mut scratch)?;
    /// assert!(!report.is_consistent());
    /// assert_eq!(report.inconsistent_columns().iter().collect::<Vec<_>>(), [2]);
    /// # Ok::<(), geoshard::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `columns.len() != k + m`, the parity
    /// columns differ in length or a data column is longer than they are,
    /// or `checksums` is given with a length other than k + m.
    pub fn verify(
        &self,
        columns: &[&[u8]],
        checksums: Option<&[u32]>,
        scratch: &mut VerifyScratch,
    ) -> Result<VerifyReport> {
        verify::verify(self, columns, checksums, scratch)
    }

    /// The decode matrix rebuilding `missing` (rows in ascending column
    /// order) from the k columns in `used` (ascending order).
    fn decode_tables(&self, used: ColumnSet, missing: ColumnSet) -> MatrixTables {
        let coding = &self.inner.coding;
        let used_rows = coding.select_rows(used.iter().map(Some));
        let inverse = used_rows
            .inverse()
            .expect("any k rows of the coding matrix are invertible");
        // Row j of the coding matrix times the inverse maps the used columns
        // to column j (for a data column, row j is the unit vector).
        let rows = coding
            .select_rows(missing.iter().map(Some))
            .multiply(&inverse);
        MatrixTables::new(&rows)
    }

    fn engine_impl(&self) -> &dyn Engine {
        &*self.inner.engine
    }

    fn encode_tables(&self) -> &MatrixTables {
        &self.inner.encode_tables
    }

    #[cfg(test)]
    fn decode_cache(&self) -> &DecodeCache {
        &self.inner.decode_cache
    }
}

/// The engine `GEOSHARD_SIMD` asks for, or the best one when it is unset
/// or empty.
fn engine_from_env(value: Option<std::ffi::OsString>) -> Result<EngineKind> {
    match value {
        None => Ok(EngineKind::best()),
        Some(value) => match value.to_str().map(str::trim) {
            Some("") => Ok(EngineKind::best()),
            Some(name) => name.parse(),
            None => Err(Error::invalid(format!("{SIMD_ENV_VAR} is not valid UTF-8"))),
        },
    }
}

fn check_index(column_index: usize, column_count: usize) -> Result<()> {
    if column_index >= column_count {
        return Err(Error::invalid(format!(
            "column index {column_index} out of range 0..{column_count}"
        )));
    }
    Ok(())
}
