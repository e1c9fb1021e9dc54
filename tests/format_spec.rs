//! docs/FORMAT.md decodes on its own: with only what "The code" section
//! says (GF(2^8) over 0x11D, the Vandermonde-based coding matrix, zero-length
//! data columns as known zeros, a blob as its parts joined in part order),
//! this test rebuilds every blob of a store whose site 0 burned, from the
//! segment files of the other two sites. Its field arithmetic and matrix
//! inversion are written here from the page, not taken from the crate.

mod common;

use std::collections::{BTreeMap, HashMap};

use geoshard::format::{ColumnHeader, EntryFlags, decode_entry_table, scan_segment};

/// GF(2^8) with the reducing polynomial 0x11D and generator 2.
struct Field {
    exp: [u8; 512],
    log: [u8; 256],
}

impl Field {
    fn new() -> Field {
        let mut exp = [0u8; 512];
        let mut log = [0u8; 256];
        let mut x: u16 = 1;
        for (i, slot) in exp.iter_mut().enumerate().take(255) {
            *slot = x as u8;
            log[x as usize] = i as u8;
            x <<= 1;
            if x & 0x100 != 0 {
                x ^= 0x11D;
            }
        }
        for i in 255..512 {
            exp[i] = exp[i - 255];
        }
        Field { exp, log }
    }

    fn mul(&self, a: u8, b: u8) -> u8 {
        if a == 0 || b == 0 {
            return 0;
        }
        self.exp[self.log[a as usize] as usize + self.log[b as usize] as usize]
    }

    fn pow(&self, a: u8, n: usize) -> u8 {
        (0..n).fold(1, |acc, _| self.mul(acc, a))
    }

    fn inv(&self, a: u8) -> u8 {
        self.exp[255 - self.log[a as usize] as usize]
    }

    /// Gauss-Jordan inverse of a square matrix.
    fn invert(&self, mut m: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let n = m.len();
        let mut inv: Vec<Vec<u8>> = (0..n)
            .map(|r| (0..n).map(|c| u8::from(r == c)).collect())
            .collect();
        for col in 0..n {
            let pivot = (col..n).find(|&r| m[r][col] != 0).expect("invertible");
            m.swap(col, pivot);
            inv.swap(col, pivot);
            let scale = self.inv(m[col][col]);
            for c in 0..n {
                m[col][c] = self.mul(m[col][c], scale);
                inv[col][c] = self.mul(inv[col][c], scale);
            }
            for r in 0..n {
                if r != col && m[r][col] != 0 {
                    let f = m[r][col];
                    for c in 0..n {
                        m[r][c] ^= self.mul(f, m[col][c]);
                        inv[r][c] ^= self.mul(f, inv[col][c]);
                    }
                }
            }
        }
        inv
    }

    fn multiply(&self, a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<Vec<u8>> {
        a.iter()
            .map(|row| {
                (0..b[0].len())
                    .map(|c| {
                        row.iter()
                            .zip(b)
                            .fold(0, |acc, (&x, brow)| acc ^ self.mul(x, brow[c]))
                    })
                    .collect()
            })
            .collect()
    }

    /// The coding matrix of RS(k, m): the (k+m) x k Vandermonde matrix
    /// V[r][c] = r^c times the inverse of its top k x k square.
    fn coding(&self, k: usize, m: usize) -> Vec<Vec<u8>> {
        let v: Vec<Vec<u8>> = (0..k + m)
            .map(|r| (0..k).map(|c| self.pow(r as u8, c)).collect())
            .collect();
        let top_inverse = self.invert(v[..k].to_vec());
        self.multiply(&v, &top_inverse)
    }
}

#[test]
fn a_burned_site_decodes_from_the_format_page_alone() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for i in 0..40u64 {
        let len = match i % 10 {
            0 => 700_000, // spread over the data columns
            1 => 0,
            _ => 50 + (i as usize * 37) % 3000,
        };
        let value = common::value(i, len);
        store
            .put(format!("k{i}").as_bytes(), value.clone())
            .unwrap();
        model.insert(format!("k{i}").into_bytes(), value);
    }
    store.close().unwrap();
    drop(store);

    // Site 0 burned: every column record of sites 1 and 2, by stripe.
    let mut stripes: BTreeMap<u64, (ColumnHeader, BTreeMap<usize, Vec<u8>>)> = BTreeMap::new();
    for site in 1..3 {
        for file in common::files_under(&dir.path().join(format!("site{site}"))) {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".segment") else {
                continue;
            };
            let generation = u64::from_str_radix(stem, 16).unwrap();
            let bytes = std::fs::read(&file).unwrap();
            for record in scan_segment(&bytes, generation).records {
                let start = record.payload_offset as usize;
                let payload = bytes[start..start + record.payload_len as usize].to_vec();
                let column = usize::from(record.header.column_index);
                let entry = stripes
                    .entry(record.header.stripe_id)
                    .or_insert_with(|| (record.header.clone(), BTreeMap::new()));
                entry.1.insert(column, payload);
            }
        }
    }

    let field = Field::new();
    let (k, m) = (6, 3);
    let coding = field.coding(k, m);
    // Per key: its generation, and its parts by `part_index`.
    type Parts = (u64, BTreeMap<u32, Vec<u8>>);
    let mut parts: HashMap<Vec<u8>, Parts> = HashMap::new();
    for (header, found) in stripes.values() {
        let stripe_len = header.column_lens.iter().copied().max().unwrap_or(0) as usize;
        // Known columns, padded to the stripe length; zero-length data
        // columns are known zeros.
        let mut known: Vec<(usize, Vec<u8>)> = Vec::new();
        for c in 0..k + m {
            if c < k && header.column_lens[c] == 0 {
                known.push((c, vec![0; stripe_len]));
            } else if let Some(bytes) = found.get(&c) {
                let mut padded = bytes.clone();
                padded.resize(stripe_len, 0);
                known.push((c, padded));
            }
        }
        assert!(
            known.len() >= k,
            "stripe {} cannot be decoded",
            header.stripe_id
        );
        known.truncate(k);
        let rows: Vec<Vec<u8>> = known.iter().map(|(c, _)| coding[*c].clone()).collect();
        let decode = field.invert(rows);
        // data_j[x] = sum_i decode[j][i] * known_i[x]
        let data: Vec<Vec<u8>> = (0..k)
            .map(|j| {
                (0..stripe_len)
                    .map(|x| {
                        known.iter().enumerate().fold(0, |acc, (i, (_, col))| {
                            acc ^ field.mul(decode[j][i], col[x])
                        })
                    })
                    .collect()
            })
            .collect();
        for (c, column) in data.iter().enumerate() {
            let column = &column[..header.column_lens[c] as usize];
            let table_len = header.entry_table_lens[c] as usize;
            if table_len == 0 {
                continue;
            }
            for entry in decode_entry_table(&column[..table_len]).unwrap() {
                if entry.flags != EntryFlags::NONE {
                    continue;
                }
                let bytes = column[entry.offset as usize..][..entry.len as usize].to_vec();
                assert_eq!(crc32fast::hash(&bytes), entry.checksum);
                let blob = parts
                    .entry(entry.key.clone())
                    .or_insert_with(|| (entry.blob_len, BTreeMap::new()));
                blob.1.insert(entry.part_index, bytes);
            }
        }
    }
    assert_eq!(parts.len(), model.len());
    for (key, (len, blob_parts)) in parts {
        let joined: Vec<u8> = blob_parts.into_values().flatten().collect();
        assert_eq!(joined.len() as u64, len);
        assert!(
            joined == model[&key],
            "{} differs",
            String::from_utf8_lossy(&key)
        );
    }
}
