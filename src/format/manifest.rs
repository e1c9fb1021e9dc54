//! The manifest every node keeps: the store's identity and the decisions
//! open made about its history (docs/DURABILITY.md, "The manifest"; byte
//! table in docs/FORMAT.md, "Manifest").

use super::wire::{
    MAGIC_LEN, Reader, U8_LEN, U16_LEN, U32_LEN, U64_LEN, corrupt, put_u16, put_u32, put_u64,
};
use super::{FORMAT_VERSION, NODE_NAME_LEN_MAX};
use crate::{Error, Result};

const WHAT: &str = "manifest";

/// Magic that opens every manifest.
pub const MANIFEST_MAGIC: [u8; 4] = *b"GSMF";
/// Most discarded stripe-id ranges a manifest holds (one is added per
/// session while a node is missing; see docs/DURABILITY.md).
pub const DISCARDED_RANGES_MAX: usize = 4096;
/// Flag bit: the manifest is committed (its open reached a quorum with it
/// proposed, then wrote it committed). Only committed manifests decide.
const FLAG_COMMITTED: u16 = 1;
/// Flag bit: this node came back empty and repair has not brought back
/// what it lost yet (see [`Manifest::node_history_missing`]).
const FLAG_HISTORY_MISSING: u16 = 2;
/// Bytes of a manifest before the node name.
pub const MANIFEST_FIXED_LEN: usize =
    MAGIC_LEN + U16_LEN * 2 + U32_LEN + 16 + U16_LEN * 2 + U64_LEN * 3 + U32_LEN + U8_LEN;
/// Longest possible manifest.
pub const MANIFEST_LEN_MAX: usize =
    MANIFEST_FIXED_LEN + NODE_NAME_LEN_MAX + DISCARDED_RANGES_MAX * U64_LEN * 2 + U32_LEN;

const _: () = assert!(MANIFEST_FIXED_LEN == 61);
const _: () = assert!(MANIFEST_LEN_MAX <= u32::MAX as usize);

/// One node's manifest.
///
/// The store-wide part (id, code, session, version, discarded ranges) is the
/// same on every node a manifest write reached; `node_name`,
/// `node_since_stripe_id` and `node_history_missing` are the node's own.
///
/// # Example
/// ```
/// use geoshard::format::Manifest;
///
/// let manifest = Manifest {
///     store_id: [7; 16],
///     data_count: 6,
///     parity_count: 3,
///     session: 2,
///     version: 1,
///     committed: true,
///     node_since_stripe_id: 0,
///     node_history_missing: false,
///     node_name: "s1n1".into(),
///     discarded: vec![(5, 9), (20, 20)],
/// };
/// let bytes = manifest.encode()?;
/// assert_eq!(Manifest::decode(&bytes)?, manifest);
/// assert!(manifest.is_discarded(7) && !manifest.is_discarded(10));
/// # Ok::<(), geoshard::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The store's identity: 16 random bytes chosen by `Store::create`.
    pub store_id: [u8; 16],
    /// k of the store's code.
    pub data_count: u16,
    /// m of the store's code.
    pub parity_count: u16,
    /// The session (one open of the store) that wrote this manifest. Stripe
    /// ids of session `s` are `s << 40 | n`.
    pub session: u64,
    /// Counts the manifest writes within one session (an open writes it
    /// proposed, then committed; an accepted loss writes it again).
    pub version: u64,
    /// Whether the open that wrote it committed it: it reached a quorum of
    /// nodes as proposed first. Only committed manifests decide what is
    /// part of the store; any manifest's session counts when numbering the
    /// next session.
    pub committed: bool,
    /// This node holds every column planned on it for stripes with an id at
    /// or above this one; below it, the node may have lost columns (it was
    /// rebuilt empty) until repair brought them back.
    pub node_since_stripe_id: u64,
    /// The node came back empty (burned, replaced, wiped) and was adopted
    /// (at `node_since_stripe_id`), and no repair (nor `accept_loss`) has
    /// since found every stripe the store knows keeping the layout's
    /// promise. While set, open counts the node as missing
    /// when it judges an outage: the columns it lost are nowhere, and no
    /// scan can find a stripe whose every record burned.
    pub node_history_missing: bool,
    /// The node's own name.
    pub node_name: String,
    /// Stripe ids an open or an accepted loss decided are not part of the
    /// store, as inclusive ranges, sorted, disjoint and not adjacent.
    pub discarded: Vec<(u64, u64)>,
}

impl Manifest {
    /// Whether `stripe_id` lies in a discarded range.
    pub fn is_discarded(&self, stripe_id: u64) -> bool {
        let at = self
            .discarded
            .partition_point(|&(_, last)| last < stripe_id);
        self.discarded
            .get(at)
            .is_some_and(|&(first, _)| first <= stripe_id)
    }

    /// (session, version): what makes one manifest newer than another.
    pub fn age(&self) -> (u64, u64) {
        (self.session, self.version)
    }

    /// Encodes the manifest with its checksum.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] or [`Error::LimitExceeded`] when a field
    /// breaks a rule [`decode`](Self::decode) enforces.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.node_name.is_empty() || self.node_name.len() > NODE_NAME_LEN_MAX {
            return Err(Error::invalid(format!(
                "node name must be 1 to {NODE_NAME_LEN_MAX} bytes, got {}",
                self.node_name.len()
            )));
        }
        if self.discarded.len() > DISCARDED_RANGES_MAX {
            return Err(Error::LimitExceeded {
                what: "discarded stripe ranges",
                limit: DISCARDED_RANGES_MAX as u64,
                actual: self.discarded.len() as u64,
            });
        }
        check_ranges(&self.discarded).map_err(Error::invalid)?;
        let len = MANIFEST_FIXED_LEN + self.node_name.len() + self.discarded.len() * 16 + U32_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MANIFEST_MAGIC);
        put_u16(&mut out, FORMAT_VERSION);
        let mut flags = 0;
        if self.committed {
            flags |= FLAG_COMMITTED;
        }
        if self.node_history_missing {
            flags |= FLAG_HISTORY_MISSING;
        }
        put_u16(&mut out, flags);
        put_u32(&mut out, len as u32);
        out.extend_from_slice(&self.store_id);
        put_u16(&mut out, self.data_count);
        put_u16(&mut out, self.parity_count);
        put_u64(&mut out, self.session);
        put_u64(&mut out, self.version);
        put_u64(&mut out, self.node_since_stripe_id);
        put_u32(&mut out, self.discarded.len() as u32);
        out.push(self.node_name.len() as u8);
        out.extend_from_slice(self.node_name.as_bytes());
        for &(first, last) in &self.discarded {
            put_u64(&mut out, first);
            put_u64(&mut out, last);
        }
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }

    /// Decodes a manifest; never panics, whatever the bytes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::ChecksumMismatch`] for bytes that are
    /// not a whole, intact manifest of this format version.
    pub fn decode(bytes: &[u8]) -> Result<Manifest> {
        let mut reader = Reader::new(bytes, WHAT);
        let magic = reader.array::<MAGIC_LEN>()?;
        if magic != MANIFEST_MAGIC {
            return Err(corrupt(WHAT, format!("bad magic {magic:02x?}")));
        }
        let version = reader.u16()?;
        if version != FORMAT_VERSION {
            return Err(corrupt(
                WHAT,
                format!("unsupported format version {version}"),
            ));
        }
        let flags = reader.u16()?;
        let len = reader.u32()? as usize;
        if !(MANIFEST_FIXED_LEN + U32_LEN..=MANIFEST_LEN_MAX).contains(&len) || len != bytes.len() {
            return Err(corrupt(
                WHAT,
                format!(
                    "length {len} out of range or not the {} bytes given",
                    bytes.len()
                ),
            ));
        }
        let body = &bytes[..len - U32_LEN];
        let stored = super::wire::peek_u32(bytes, len - U32_LEN)
            .ok_or_else(|| corrupt(WHAT, "truncated"))?;
        let actual = crc32fast::hash(body);
        if stored != actual {
            return Err(Error::ChecksumMismatch {
                what: WHAT,
                expected: stored,
                actual,
            });
        }
        if flags & !(FLAG_COMMITTED | FLAG_HISTORY_MISSING) != 0 {
            return Err(corrupt(WHAT, format!("unknown flags {flags:#06x}")));
        }
        let store_id = reader.array::<16>()?;
        let data_count = reader.u16()?;
        let parity_count = reader.u16()?;
        let session = reader.u64()?;
        let manifest_version = reader.u64()?;
        let node_since_stripe_id = reader.u64()?;
        let range_count = reader.u32()? as usize;
        let name_len = usize::from(reader.u8()?);
        if name_len == 0 || range_count > DISCARDED_RANGES_MAX {
            return Err(corrupt(
                WHAT,
                format!("name length {name_len}, {range_count} ranges"),
            ));
        }
        if body.len() != MANIFEST_FIXED_LEN + name_len + range_count * 16 {
            return Err(corrupt(WHAT, "length disagrees with its counts"));
        }
        let node_name = std::str::from_utf8(reader.take(name_len)?)
            .map_err(|_| corrupt(WHAT, "node name is not UTF-8"))?
            .to_string();
        let mut discarded = Vec::with_capacity(range_count);
        for _ in 0..range_count {
            discarded.push((reader.u64()?, reader.u64()?));
        }
        check_ranges(&discarded).map_err(|r| corrupt(WHAT, r))?;
        Ok(Manifest {
            store_id,
            data_count,
            parity_count,
            session,
            version: manifest_version,
            committed: flags & FLAG_COMMITTED != 0,
            node_since_stripe_id,
            node_history_missing: flags & FLAG_HISTORY_MISSING != 0,
            node_name,
            discarded,
        })
    }
}

/// Ranges are inclusive, sorted, disjoint and not adjacent.
fn check_ranges(ranges: &[(u64, u64)]) -> Result<(), String> {
    let mut previous: Option<u64> = None;
    for &(first, last) in ranges {
        if first > last {
            return Err(format!("range {first}..={last} is backwards"));
        }
        if previous.is_some_and(|p| p.saturating_add(1) >= first) {
            return Err(format!(
                "range {first}..={last} overlaps or touches the one before"
            ));
        }
        previous = Some(last);
    }
    Ok(())
}

/// Adds the inclusive range `first..=last` to sorted, disjoint, non-adjacent
/// `ranges`, merging what it overlaps or touches.
pub fn add_range(ranges: &mut Vec<(u64, u64)>, first: u64, last: u64) {
    debug_assert!(first <= last);
    let mut first = first;
    let mut last = last;
    let start = ranges.partition_point(|&(_, l)| l.saturating_add(1) < first);
    let mut end = start;
    while let Some(&(f, l)) = ranges.get(end) {
        if f > last.saturating_add(1) {
            break;
        }
        first = first.min(f);
        last = last.max(l);
        end += 1;
    }
    ranges.splice(start..end, [(first, last)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            store_id: *b"0123456789abcdef",
            data_count: 6,
            parity_count: 3,
            session: 9,
            version: 2,
            committed: true,
            node_since_stripe_id: 9 << 40,
            node_history_missing: true,
            node_name: "s0n1".into(),
            discarded: vec![(1, 4), (10, 10), (1 << 41, (2 << 40) + 99)],
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let manifest = sample();
        let bytes = manifest.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest);
        for (id, discarded) in [
            (0, false),
            (1, true),
            (4, true),
            (5, false),
            (10, true),
            (11, false),
        ] {
            assert_eq!(manifest.is_discarded(id), discarded, "{id}");
        }
        assert!(manifest.is_discarded((2 << 40) + 50));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_a_typed_error() {
        let bytes = sample().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn encode_refuses_bad_ranges_and_names() {
        let mut m = sample();
        m.discarded = vec![(5, 3)];
        assert!(m.encode().is_err());
        m.discarded = vec![(1, 5), (6, 7)];
        assert!(m.encode().is_err(), "adjacent ranges must be merged");
        m.discarded.clear();
        m.node_name.clear();
        assert!(m.encode().is_err());
    }

    #[test]
    fn ranges_merge() {
        let mut ranges = Vec::new();
        add_range(&mut ranges, 10, 12);
        add_range(&mut ranges, 1, 2);
        add_range(&mut ranges, 20, 25);
        assert_eq!(ranges, [(1, 2), (10, 12), (20, 25)]);
        add_range(&mut ranges, 13, 19);
        assert_eq!(ranges, [(1, 2), (10, 25)]);
        add_range(&mut ranges, 0, 30);
        assert_eq!(ranges, [(0, 30)]);
        add_range(&mut ranges, u64::MAX - 1, u64::MAX);
        assert_eq!(ranges, [(0, 30), (u64::MAX - 1, u64::MAX)]);
    }
}
