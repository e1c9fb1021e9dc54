//! Raw bytes -> manifest decoder: never panics, never allocates beyond the
//! format's limits, and whatever decodes re-encodes to the same bytes.
#![no_main]

use geoshard::format::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        let again = manifest.encode().expect("a decoded manifest re-encodes");
        assert_eq!(&again[..], data);
        for &(first, last) in &manifest.discarded {
            assert!(manifest.is_discarded(first) && manifest.is_discarded(last));
        }
    }
});
