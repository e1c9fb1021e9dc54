//! Raw bytes -> record header and entry table decoders: never panic, never
//! allocate beyond the format's limits, and whatever decodes re-encodes to
//! the same bytes.
#![no_main]

use geoshard::format::{ColumnHeader, decode_entry_table, decode_segment_header, encode_entry_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, used)) = ColumnHeader::decode(data) {
        assert!(used <= data.len());
        assert_eq!(used, header.encoded_len());
        let mut again = Vec::new();
        header.encode_into(&mut again).expect("a decoded header re-encodes");
        assert_eq!(&again[..], &data[..used]);
    }
    if let Ok(entries) = decode_entry_table(data) {
        let mut again = Vec::new();
        encode_entry_table(&entries, &mut again).expect("a decoded table re-encodes");
        if !data.is_empty() {
            assert_eq!(&again[..], data);
        }
    }
    let _ = decode_segment_header(data);
});
