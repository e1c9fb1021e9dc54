//! A corrupted segment file -> recovery never panics and never returns a
//! record whose checksum fails.
//!
//! The input edits a valid segment (so the fuzzer starts from real records
//! rather than noise): a cut length, then (offset, xor) pairs. The scanner
//! is the one `LocalNode` recovery runs; every record it returns is checked
//! against its header and payload checksums.
#![no_main]

use geoshard::format::{ColumnHeader, encode_segment_header, scan_segment};
use libfuzzer_sys::fuzz_target;

const GENERATION: u64 = 3;

fn valid_segment() -> Vec<u8> {
    let mut bytes = encode_segment_header(GENERATION).to_vec();
    for stripe_id in 0..4u64 {
        let payload: Vec<u8> = (0..stripe_id * 37).map(|i| (i * 13 + stripe_id) as u8).collect();
        let len = payload.len() as u32;
        let header = ColumnHeader {
            stripe_id,
            generation: GENERATION,
            data_count: 2,
            parity_count: 1,
            column_index: (stripe_id % 3) as u16,
            column_lens: vec![len; 3],
            column_checksums: vec![crc32fast::hash(&payload); 3],
            placement: vec!["a".into(), "bb".into(), "ccc".into()],
            entry_table_lens: vec![0; 2],
            commit: geoshard::format::CommitStamp::default(),
            handoffs: Vec::new(),
        };
        header.encode_into(&mut bytes).expect("valid header");
        bytes.extend_from_slice(&payload);
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = valid_segment();
    let (cut, edits) = data.split_at(data.len().min(2));
    if let [high, low] = *cut {
        let keep = usize::from(u16::from_le_bytes([low, high])) % (bytes.len() + 1);
        bytes.truncate(keep);
    }
    let mut raw_tail = Vec::new();
    for edit in edits.chunks(3) {
        match *edit {
            [high, low, xor] if !bytes.is_empty() => {
                let at = usize::from(u16::from_le_bytes([low, high])) % bytes.len();
                bytes[at] ^= xor;
            }
            _ => raw_tail.extend_from_slice(edit),
        }
    }
    bytes.extend_from_slice(&raw_tail);
    let scan = scan_segment(&bytes, GENERATION);
    assert!(scan.intact_len as usize <= bytes.len());
    let mut previous_end = 0u64;
    for record in &scan.records {
        let start = record.record_offset as usize;
        let (header, used) = ColumnHeader::decode(&bytes[start..]).expect("returned header decodes");
        assert_eq!(header, record.header);
        assert_eq!(record.payload_offset, record.record_offset + used as u64);
        let payload_start = record.payload_offset as usize;
        let payload = &bytes[payload_start..payload_start + record.payload_len as usize];
        assert_eq!(crc32fast::hash(payload), header.payload_checksum(), "returned payload verifies");
        assert_eq!(header.generation, GENERATION);
        assert!(record.record_offset >= previous_end, "records do not overlap");
        previous_end = record.payload_offset + u64::from(record.payload_len);
    }
    for damage in &scan.damaged {
        assert!(damage.offset + damage.len <= scan.intact_len);
    }
});
