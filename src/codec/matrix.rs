//! Small dense matrices over GF(2^8): the coding matrix and the decode
//! matrices of erasure patterns.

use super::gf;

/// A row-major matrix of field elements.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Matrix {
    row_count: usize,
    column_count: usize,
    elements: Vec<u8>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Matrix {}x{} ", self.row_count, self.column_count)?;
        f.debug_list()
            .entries(self.elements.chunks(self.column_count.max(1)))
            .finish()
    }
}

impl Matrix {
    pub(crate) fn zero(row_count: usize, column_count: usize) -> Matrix {
        Matrix {
            row_count,
            column_count,
            elements: vec![0; row_count * column_count],
        }
    }

    pub(crate) fn identity(size: usize) -> Matrix {
        let mut m = Matrix::zero(size, size);
        for i in 0..size {
            m.set(i, i, 1);
        }
        m
    }

    /// Row r is (r^0, r^1, ..., r^(c-1)), the Vandermonde matrix
    /// `reed-solomon-erasure` starts from. Distinct r make any `column_count`
    /// rows linearly independent.
    pub(crate) fn vandermonde(row_count: usize, column_count: usize) -> Matrix {
        let mut m = Matrix::zero(row_count, column_count);
        for r in 0..row_count {
            for c in 0..column_count {
                // row_count <= 256, so r fits a field element.
                m.set(r, c, gf::exp(r as u8, c));
            }
        }
        m
    }

    /// The systematic coding matrix of RS(k, m): the (k+m) x k Vandermonde
    /// matrix times the inverse of its top k x k square. The top k rows are
    /// the identity and any k rows are invertible. Byte-identical to
    /// `reed-solomon-erasure` 6.x `galois_8::ReedSolomon` (the inverse of a
    /// matrix is unique, so the elimination order does not matter).
    pub(crate) fn coding(data_count: usize, parity_count: usize) -> Matrix {
        let vandermonde = Matrix::vandermonde(data_count + parity_count, data_count);
        let top = vandermonde.select_rows((0..data_count).map(Some));
        let top_inverse = top
            .inverse()
            .expect("a square Vandermonde matrix with distinct rows is invertible");
        vandermonde.multiply(&top_inverse)
    }

    pub(crate) fn row_count(&self) -> usize {
        self.row_count
    }

    pub(crate) fn column_count(&self) -> usize {
        self.column_count
    }

    pub(crate) fn get(&self, r: usize, c: usize) -> u8 {
        self.elements[r * self.column_count + c]
    }

    pub(crate) fn set(&mut self, r: usize, c: usize, value: u8) {
        self.elements[r * self.column_count + c] = value;
    }

    pub(crate) fn row(&self, r: usize) -> &[u8] {
        &self.elements[r * self.column_count..(r + 1) * self.column_count]
    }

    /// Row-major elements.
    pub(crate) fn elements(&self) -> &[u8] {
        &self.elements
    }

    /// A matrix made of the given rows of `self`, in that order. `None`
    /// items are skipped (lets callers pass a filtered iterator cheaply).
    pub(crate) fn select_rows(&self, rows: impl Iterator<Item = Option<usize>>) -> Matrix {
        let mut elements = Vec::new();
        let mut row_count = 0;
        for r in rows.flatten() {
            elements.extend_from_slice(self.row(r));
            row_count += 1;
        }
        Matrix {
            row_count,
            column_count: self.column_count,
            elements,
        }
    }

    pub(crate) fn multiply(&self, rhs: &Matrix) -> Matrix {
        assert_eq!(
            self.column_count, rhs.row_count,
            "matrix shapes do not chain"
        );
        let mut out = Matrix::zero(self.row_count, rhs.column_count);
        for r in 0..self.row_count {
            for i in 0..self.column_count {
                let a = self.get(r, i);
                if a == 0 {
                    continue;
                }
                let mul_row = &gf::MUL[a as usize];
                let rhs_row = rhs.row(i);
                let out_row = &mut out.elements[r * rhs.column_count..(r + 1) * rhs.column_count];
                for (o, &b) in out_row.iter_mut().zip(rhs_row) {
                    *o ^= mul_row[b as usize];
                }
            }
        }
        out
    }

    /// Gauss-Jordan inverse; `None` when the matrix is singular.
    pub(crate) fn inverse(&self) -> Option<Matrix> {
        assert_eq!(
            self.row_count, self.column_count,
            "only square matrices invert"
        );
        let n = self.row_count;
        let mut work = self.clone();
        let mut inverse = Matrix::identity(n);
        for col in 0..n {
            let pivot_row = (col..n).find(|&r| work.get(r, col) != 0)?;
            if pivot_row != col {
                work.swap_rows(pivot_row, col);
                inverse.swap_rows(pivot_row, col);
            }
            let scale = gf::inverse(work.get(col, col));
            work.scale_row(col, scale);
            inverse.scale_row(col, scale);
            for r in 0..n {
                let factor = work.get(r, col);
                if r != col && factor != 0 {
                    work.add_scaled_row(col, r, factor);
                    inverse.add_scaled_row(col, r, factor);
                }
            }
        }
        Some(inverse)
    }

    fn swap_rows(&mut self, a: usize, b: usize) {
        for c in 0..self.column_count {
            self.elements
                .swap(a * self.column_count + c, b * self.column_count + c);
        }
    }

    fn scale_row(&mut self, r: usize, factor: u8) {
        let mul_row = &gf::MUL[factor as usize];
        for e in &mut self.elements[r * self.column_count..(r + 1) * self.column_count] {
            *e = mul_row[*e as usize];
        }
    }

    /// row[dst] ^= factor * row[src]
    fn add_scaled_row(&mut self, src: usize, dst: usize, factor: u8) {
        let mul_row = &gf::MUL[factor as usize];
        for c in 0..self.column_count {
            let v = mul_row[self.get(src, c) as usize];
            self.elements[dst * self.column_count + c] ^= v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_matrix_is_systematic_and_any_k_rows_invert() {
        for (k, m) in [(1, 1), (4, 2), (6, 3), (10, 4), (3, 5)] {
            let coding = Matrix::coding(k, m);
            assert_eq!(coding.select_rows((0..k).map(Some)), Matrix::identity(k));
            // every k-subset of rows (small codes only)
            let n = k + m;
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize == k {
                    let sub = coding.select_rows((0..n).map(|r| (mask >> r & 1 == 1).then_some(r)));
                    let inv = sub.inverse().expect("invertible");
                    assert_eq!(sub.multiply(&inv), Matrix::identity(k));
                }
            }
        }
    }

    #[test]
    fn singular_matrix_has_no_inverse() {
        let mut m = Matrix::zero(2, 2);
        m.set(0, 0, 3);
        m.set(0, 1, 5);
        m.set(1, 0, 3);
        m.set(1, 1, 5);
        assert!(m.inverse().is_none());
    }
}
