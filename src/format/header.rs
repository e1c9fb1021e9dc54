//! The column record header: the same in every column of a stripe except for
//! `column_index`; see `docs/FORMAT.md` for the byte table.

use super::wire::{
    MAGIC_LEN, Reader, U8_LEN, U16_LEN, U32_LEN, corrupt, put_u16, put_u32, put_u64,
};
use super::{
    COLUMN_COUNT_MAX, COLUMN_LEN_MAX, FORMAT_VERSION, HEADER_FIXED_LEN, HEADER_LEN_MAX,
    NODE_NAME_LEN_MAX, RECORD_MAGIC,
};
use crate::{Error, Result};

const WHAT: &str = "column record header";

/// Byte offset of the `header_len` field, which a scanner peeks at before it
/// knows whether the whole header is present.
pub(crate) const HEADER_LEN_OFFSET: usize = MAGIC_LEN + U16_LEN + U16_LEN;

/// The header of one column record.
///
/// It describes the whole stripe (so any column alone tells where the others
/// are and how long and which checksum they have) plus which column this
/// record holds. The payload that follows it on disk is
/// `column_lens[column_index]` bytes long with checksum
/// `column_checksums[column_index]`.
///
/// # Example
/// ```
/// use geoshard::format::{ColumnHeader, CommitStamp};
///
/// let header = ColumnHeader {
///     stripe_id: 7,
///     generation: 1,
///     data_count: 2,
///     parity_count: 1,
///     column_index: 0,
///     column_lens: vec![5, 3, 5],
///     column_checksums: vec![1, 2, 3],
///     placement: vec!["a1".into(), "b1".into(), "c1".into()],
///     entry_table_lens: vec![0, 0],
///     commit: CommitStamp::default(),
///     handoffs: Vec::new(),
/// };
/// let mut bytes = Vec::new();
/// header.encode_into(&mut bytes)?;
/// assert_eq!(bytes.len(), header.encoded_len());
/// let (decoded, used) = ColumnHeader::decode(&bytes)?;
/// assert_eq!((decoded, used), (header.clone(), bytes.len()));
/// assert_eq!(header.stripe_len(), 5);
/// assert_eq!(header.payload_len(), 5);
/// # Ok::<(), geoshard::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnHeader {
    /// The stripe this column belongs to.
    pub stripe_id: u64,
    /// The generation (segment) the stripe was written to.
    pub generation: u64,
    /// k: the number of data columns.
    pub data_count: u16,
    /// m: the number of parity columns.
    pub parity_count: u16,
    /// Which column of the stripe this record holds; `< data_count` is data.
    pub column_index: u16,
    /// Stored length of every column of the stripe (k + m). Data columns may
    /// be shorter than the stripe length (they are zero-padded logically);
    /// parity columns are exactly the stripe length.
    pub column_lens: Vec<u32>,
    /// `crc32fast` checksum of every column's stored bytes (k + m).
    pub column_checksums: Vec<u32>,
    /// Node name of every column of the stripe (k + m).
    pub placement: Vec<String>,
    /// Byte length of each data column's entry table (k), which starts its
    /// payload.
    pub entry_table_lens: Vec<u32>,
    /// Where the stripe sits in the store's commit sequence.
    pub commit: CommitStamp,
    /// Columns planned on a node other than their `placement` node (a
    /// handoff: the home node took no writes when the stripe was sealed),
    /// as (column index, node name), by increasing column index. Every
    /// column of a stripe is written to exactly its planned node: this one,
    /// or its placement node.
    pub handoffs: Vec<(u16, String)>,
}

/// Where a stripe sits in the store's sequence of group commits.
///
/// Every column header of a stripe carries it. The commit's first stripe id
/// groups the stripes one commit attempt wrote: a commit is acknowledged
/// whole or not at all, so on open a stripe of a commit that was never
/// acknowledged takes the whole commit with it (docs/DURABILITY.md,
/// "Evidence").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CommitStamp {
    /// First stripe id of the commit attempt this stripe belongs to.
    pub commit_first_stripe_id: u64,
}

impl ColumnHeader {
    /// The number of columns of the stripe, k + m.
    pub fn column_count(&self) -> usize {
        usize::from(self.data_count) + usize::from(self.parity_count)
    }

    /// True if this record holds a data column.
    pub fn is_data(&self) -> bool {
        self.column_index < self.data_count
    }

    /// The stripe length L: the longest column (0 for an empty stripe).
    pub fn stripe_len(&self) -> u32 {
        self.column_lens.iter().copied().max().unwrap_or(0)
    }

    /// The length of this record's payload, `column_lens[column_index]`
    /// (0 if the header is inconsistent; [`encode_into`](Self::encode_into)
    /// refuses such a header).
    pub fn payload_len(&self) -> u32 {
        self.column_lens
            .get(usize::from(self.column_index))
            .copied()
            .unwrap_or(0)
    }

    /// The checksum of this record's payload, `column_checksums[column_index]`
    /// (0 if the header is inconsistent).
    pub fn payload_checksum(&self) -> u32 {
        self.column_checksums
            .get(usize::from(self.column_index))
            .copied()
            .unwrap_or(0)
    }

    /// The name of the node column `column` was planned on: its handoff
    /// node if it has one, else its placement node.
    pub fn planned_node(&self, column: usize) -> Option<&str> {
        self.handoffs
            .iter()
            .find(|(c, _)| usize::from(*c) == column)
            .map(|(_, name)| name.as_str())
            .or_else(|| self.placement.get(column).map(String::as_str))
    }

    /// The entry-table length of this record's column, if it is a data
    /// column.
    pub fn entry_table_len(&self) -> Option<u32> {
        self.entry_table_lens
            .get(usize::from(self.column_index))
            .copied()
    }

    /// The number of bytes [`encode_into`](Self::encode_into) writes.
    pub fn encoded_len(&self) -> usize {
        let column_count = self.column_count();
        let names: usize = self.placement.iter().map(|name| U8_LEN + name.len()).sum();
        let handoffs: usize = self
            .handoffs
            .iter()
            .map(|(_, name)| U16_LEN + U8_LEN + name.len())
            .sum();
        HEADER_FIXED_LEN
            + column_count * U32_LEN * 2
            + usize::from(self.data_count) * U32_LEN
            + names
            + handoffs
            + U32_LEN
    }

    /// Checks every rule the decoder enforces, so that what we write can
    /// always be read back.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] or [`Error::LimitExceeded`] naming the
    /// first broken rule.
    pub fn validate(&self) -> Result<()> {
        let column_count = self.column_count();
        if self.data_count == 0 {
            return Err(Error::invalid("a stripe needs at least one data column"));
        }
        if column_count > COLUMN_COUNT_MAX {
            return Err(Error::LimitExceeded {
                what: "column count",
                limit: COLUMN_COUNT_MAX as u64,
                actual: column_count as u64,
            });
        }
        if usize::from(self.column_index) >= column_count {
            return Err(Error::invalid(format!(
                "column index {} out of range for {column_count} columns",
                self.column_index
            )));
        }
        for (what, len, want) in [
            ("column_lens", self.column_lens.len(), column_count),
            (
                "column_checksums",
                self.column_checksums.len(),
                column_count,
            ),
            ("placement", self.placement.len(), column_count),
            (
                "entry_table_lens",
                self.entry_table_lens.len(),
                usize::from(self.data_count),
            ),
        ] {
            if len != want {
                return Err(Error::invalid(format!(
                    "{what} has {len} items, expected {want}"
                )));
            }
        }
        check_columns(&self.column_lens, &self.entry_table_lens, self.data_count)
            .map_err(Error::invalid)?;
        for (index, name) in self.placement.iter().enumerate() {
            check_name(name).map_err(|e| match e {
                NameError::Empty => Error::invalid(format!("placement name {index} is empty")),
                NameError::TooLong(len) => Error::LimitExceeded {
                    what: "node name length",
                    limit: NODE_NAME_LEN_MAX as u64,
                    actual: len as u64,
                },
            })?;
        }
        check_handoffs(&self.handoffs, column_count).map_err(Error::invalid)?;
        for (column, name) in &self.handoffs {
            check_name(name).map_err(|e| match e {
                NameError::Empty => {
                    Error::invalid(format!("handoff name of column {column} is empty"))
                }
                NameError::TooLong(len) => Error::LimitExceeded {
                    what: "node name length",
                    limit: NODE_NAME_LEN_MAX as u64,
                    actual: len as u64,
                },
            })?;
        }
        Ok(())
    }

    /// Appends the encoded header (with its checksum) to `out`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate); nothing is appended on error.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        self.validate()?;
        let header_len = self.encoded_len();
        debug_assert!(header_len <= HEADER_LEN_MAX);
        let start = out.len();
        out.reserve(header_len);
        out.extend_from_slice(&RECORD_MAGIC);
        put_u16(out, FORMAT_VERSION);
        put_u16(out, 0); // flags
        put_u32(out, header_len as u32);
        put_u16(out, self.data_count);
        put_u16(out, self.parity_count);
        put_u64(out, self.stripe_id);
        put_u64(out, self.generation);
        put_u64(out, self.commit.commit_first_stripe_id);
        put_u16(out, self.column_index);
        // validate() bounded the handoffs by the column count.
        put_u16(out, self.handoffs.len() as u16);
        for &len in &self.column_lens {
            put_u32(out, len);
        }
        for &checksum in &self.column_checksums {
            put_u32(out, checksum);
        }
        for &len in &self.entry_table_lens {
            put_u32(out, len);
        }
        for name in &self.placement {
            // validate() bounded the name by NODE_NAME_LEN_MAX <= u8::MAX.
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        for (column, name) in &self.handoffs {
            put_u16(out, *column);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        let crc = crc32fast::hash(&out[start..]);
        put_u32(out, crc);
        assert_eq!(
            out.len() - start,
            header_len,
            "encoded_len disagrees with encode_into"
        );
        Ok(())
    }

    /// Decodes a header from the start of `bytes` (which may continue with
    /// the payload) and returns it with the number of bytes it used.
    ///
    /// Never panics and allocates at most [`HEADER_LEN_MAX`] bytes' worth,
    /// whatever the input.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the bytes are short, the magic, version or
    /// checksum is wrong, or a field breaks a format rule or limit.
    pub fn decode(bytes: &[u8]) -> Result<(ColumnHeader, usize)> {
        let mut fixed = Reader::new(bytes, WHAT);
        let magic = fixed.array::<MAGIC_LEN>()?;
        if magic != RECORD_MAGIC {
            return Err(corrupt(WHAT, format!("bad magic {magic:02x?}")));
        }
        let version = fixed.u16()?;
        if version != FORMAT_VERSION {
            return Err(corrupt(
                WHAT,
                format!("unsupported format version {version}"),
            ));
        }
        let flags = fixed.u16()?;
        let header_len = fixed.u32()? as usize;
        if !(HEADER_FIXED_LEN + U32_LEN..=HEADER_LEN_MAX).contains(&header_len) {
            return Err(corrupt(
                WHAT,
                format!("header length {header_len} out of range"),
            ));
        }
        let truncated = || {
            corrupt(
                WHAT,
                format!(
                    "truncated: header of {header_len} bytes, {} present",
                    bytes.len()
                ),
            )
        };
        let body_len = header_len - U32_LEN;
        let body = bytes.get(..body_len).ok_or_else(truncated)?;
        let stored_crc = super::wire::peek_u32(bytes, body_len).ok_or_else(truncated)?;
        // Walk the structure before paying for the checksum: a scanner
        // resynchronising over garbage that happens to hold the magic then
        // rejects almost every candidate after a few reads instead of a crc
        // over up to HEADER_LEN_MAX bytes.
        let header = Self::decode_body(body)?;
        let actual_crc = crc32fast::hash(body);
        if stored_crc != actual_crc {
            return Err(Error::ChecksumMismatch {
                what: WHAT,
                expected: stored_crc,
                actual: actual_crc,
            });
        }
        if flags != 0 {
            return Err(corrupt(WHAT, format!("unknown flags {flags:#06x}")));
        }
        Ok((header, header_len))
    }

    /// The fields of a header whose bytes before the crc are `body`: every
    /// length and count checked, the structure ending exactly at the end.
    fn decode_body(body: &[u8]) -> Result<ColumnHeader> {
        let mut reader = Reader::new(body, WHAT);
        reader.take(HEADER_LEN_OFFSET + U32_LEN)?;
        let data_count = reader.u16()?;
        let parity_count = reader.u16()?;
        let stripe_id = reader.u64()?;
        let generation = reader.u64()?;
        let commit = CommitStamp {
            commit_first_stripe_id: reader.u64()?,
        };
        let column_index = reader.u16()?;
        let handoff_count = usize::from(reader.u16()?);
        debug_assert_eq!(reader.position(), HEADER_FIXED_LEN);
        let column_count = usize::from(data_count) + usize::from(parity_count);
        if data_count == 0 || column_count > COLUMN_COUNT_MAX {
            return Err(corrupt(
                WHAT,
                format!("bad code shape k={data_count} m={parity_count}"),
            ));
        }
        if usize::from(column_index) >= column_count {
            return Err(corrupt(
                WHAT,
                format!("column index {column_index} >= {column_count}"),
            ));
        }
        if handoff_count > column_count {
            return Err(corrupt(
                WHAT,
                format!("{handoff_count} handoffs for {column_count} columns"),
            ));
        }
        let fixed_arrays = (column_count * 2 + usize::from(data_count)) * U32_LEN;
        if reader.remaining() < fixed_arrays + column_count * U8_LEN {
            return Err(corrupt(
                WHAT,
                "header length too small for its column count",
            ));
        }
        let mut column_lens = Vec::with_capacity(column_count);
        for _ in 0..column_count {
            column_lens.push(reader.u32()?);
        }
        let mut column_checksums = Vec::with_capacity(column_count);
        for _ in 0..column_count {
            column_checksums.push(reader.u32()?);
        }
        let mut entry_table_lens = Vec::with_capacity(usize::from(data_count));
        for _ in 0..data_count {
            entry_table_lens.push(reader.u32()?);
        }
        check_columns(&column_lens, &entry_table_lens, data_count).map_err(|r| corrupt(WHAT, r))?;
        let mut placement = Vec::with_capacity(column_count);
        for index in 0..column_count {
            placement.push(read_name(&mut reader, || {
                format!("placement name {index}")
            })?);
        }
        let mut handoffs = Vec::with_capacity(handoff_count);
        for _ in 0..handoff_count {
            let column = reader.u16()?;
            let name = read_name(&mut reader, || format!("handoff name of column {column}"))?;
            handoffs.push((column, name));
        }
        check_handoffs(&handoffs, column_count).map_err(|r| corrupt(WHAT, r))?;
        if reader.remaining() != 0 {
            return Err(corrupt(
                WHAT,
                format!("{} unused bytes in header", reader.remaining()),
            ));
        }
        Ok(ColumnHeader {
            stripe_id,
            generation,
            data_count,
            parity_count,
            column_index,
            column_lens,
            column_checksums,
            placement,
            entry_table_lens,
            commit,
            handoffs,
        })
    }
}

/// Why a node name is not acceptable.
enum NameError {
    Empty,
    TooLong(usize),
}

fn check_name(name: &str) -> std::result::Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NODE_NAME_LEN_MAX {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

/// Reads a u8-length-prefixed UTF-8 node name of 1 to `NODE_NAME_LEN_MAX`
/// bytes.
fn read_name(reader: &mut Reader<'_>, what: impl Fn() -> String) -> Result<String> {
    let name_len = usize::from(reader.u8()?);
    if name_len == 0 || name_len > NODE_NAME_LEN_MAX {
        return Err(corrupt(WHAT, format!("{} has length {name_len}", what())));
    }
    let name = std::str::from_utf8(reader.take(name_len)?)
        .map_err(|_| corrupt(WHAT, format!("{} is not UTF-8", what())))?;
    Ok(name.to_string())
}

/// Handoff columns are in range and strictly increasing (so at most one
/// per column).
fn check_handoffs(handoffs: &[(u16, String)], column_count: usize) -> Result<(), String> {
    let mut previous: Option<u16> = None;
    for (column, _) in handoffs {
        if usize::from(*column) >= column_count {
            return Err(format!(
                "handoff of column {column}, the stripe has {column_count}"
            ));
        }
        if previous.is_some_and(|p| p >= *column) {
            return Err(format!("handoff of column {column} out of order"));
        }
        previous = Some(*column);
    }
    Ok(())
}

/// The rules on column and entry-table lengths shared by encode and decode.
fn check_columns(
    column_lens: &[u32],
    entry_table_lens: &[u32],
    data_count: u16,
) -> Result<(), String> {
    let stripe_len = column_lens.iter().copied().max().unwrap_or(0);
    if u64::from(stripe_len) > COLUMN_LEN_MAX {
        return Err(format!(
            "column length {stripe_len} over the limit of {COLUMN_LEN_MAX}"
        ));
    }
    for (index, &len) in column_lens.iter().enumerate().skip(usize::from(data_count)) {
        if len != stripe_len {
            return Err(format!(
                "parity column {index} has length {len}, the stripe length is {stripe_len}"
            ));
        }
    }
    for (index, (&table_len, &column_len)) in entry_table_lens.iter().zip(column_lens).enumerate() {
        if table_len > column_len {
            return Err(format!(
                "entry table of column {index} ({table_len} bytes) is longer than the column ({column_len})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::HEADER_LEN_MAX;

    fn sample(column_index: u16) -> ColumnHeader {
        ColumnHeader {
            stripe_id: 0x0102_0304_0506_0708,
            generation: 3,
            data_count: 3,
            parity_count: 2,
            column_index,
            column_lens: vec![100, 40, 0, 100, 100],
            column_checksums: vec![11, 22, 33, 44, 55],
            placement: ["a1", "a2", "b1", "b2", "c1"].map(String::from).to_vec(),
            entry_table_lens: vec![60, 40, 0],
            commit: crate::format::CommitStamp::default(),
            handoffs: vec![(3, "c2".into())],
        }
    }

    #[test]
    fn round_trip_and_accessors() {
        for column_index in 0..5 {
            let header = sample(column_index);
            let mut out = vec![0xAA];
            header.encode_into(&mut out).unwrap();
            assert_eq!(out.len() - 1, header.encoded_len());
            out.extend_from_slice(b"payload follows");
            let (decoded, used) = ColumnHeader::decode(&out[1..]).unwrap();
            assert_eq!(decoded, header);
            assert_eq!(used, header.encoded_len());
        }
        let header = sample(1);
        assert_eq!(header.stripe_len(), 100);
        assert_eq!(header.payload_len(), 40);
        assert_eq!(header.payload_checksum(), 22);
        assert_eq!(header.entry_table_len(), Some(40));
        assert!(header.is_data());
        assert!(!sample(3).is_data());
        assert_eq!(sample(3).entry_table_len(), None);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_a_typed_error() {
        let mut bytes = Vec::new();
        sample(2).encode_into(&mut bytes).unwrap();
        for len in 0..bytes.len() {
            assert!(
                ColumnHeader::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(ColumnHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        type Mutation = Box<dyn Fn(&mut ColumnHeader)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("k = 0", Box::new(|h| h.data_count = 0)),
            ("index", Box::new(|h| h.column_index = 5)),
            ("lens count", Box::new(|h| h.column_lens.push(1))),
            (
                "checksums count",
                Box::new(|h| {
                    h.column_checksums.pop();
                }),
            ),
            ("placement count", Box::new(|h| h.placement.truncate(2))),
            ("tables count", Box::new(|h| h.entry_table_lens.push(0))),
            ("short parity", Box::new(|h| h.column_lens[4] = 99)),
            ("table > column", Box::new(|h| h.entry_table_lens[1] = 41)),
            ("empty name", Box::new(|h| h.placement[0].clear())),
            ("empty handoff name", Box::new(|h| h.handoffs[0].1.clear())),
            ("handoff column", Box::new(|h| h.handoffs[0].0 = 5)),
            (
                "handoffs out of order",
                Box::new(|h| h.handoffs = vec![(3, "x".into()), (1, "y".into())]),
            ),
            (
                "long name",
                Box::new(|h| h.placement[0] = "x".repeat(NODE_NAME_LEN_MAX + 1)),
            ),
            (
                "column too long",
                Box::new(|h| {
                    h.column_lens = vec![COLUMN_LEN_MAX as u32 + 1; 5];
                    h.entry_table_lens = vec![0; 3];
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut header = sample(0);
            mutate(&mut header);
            let mut out = Vec::new();
            assert!(header.encode_into(&mut out).is_err(), "{name}");
            assert!(out.is_empty(), "{name}");
        }
    }

    #[test]
    fn largest_header_fits_the_limit() {
        let columns = COLUMN_COUNT_MAX;
        let header = ColumnHeader {
            stripe_id: u64::MAX,
            generation: u64::MAX,
            data_count: columns as u16,
            parity_count: 0,
            column_index: 0,
            column_lens: vec![COLUMN_LEN_MAX as u32; columns],
            column_checksums: vec![u32::MAX; columns],
            placement: vec!["n".repeat(NODE_NAME_LEN_MAX); columns],
            entry_table_lens: vec![0; columns],
            commit: crate::format::CommitStamp::default(),
            handoffs: (0..columns)
                .map(|c| (c as u16, "h".repeat(NODE_NAME_LEN_MAX)))
                .collect(),
        };
        assert_eq!(header.encoded_len(), HEADER_LEN_MAX);
        let mut out = Vec::new();
        header.encode_into(&mut out).unwrap();
        assert_eq!(ColumnHeader::decode(&out).unwrap().0, header);
    }
}
