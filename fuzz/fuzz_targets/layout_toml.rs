//! Arbitrary text -> `Layout::from_toml_str`: never panics; anything refused
//! is `InvalidLayout` or `LayoutCannotSurvive` (typed, with a reason); a
//! layout it accepts places stripes, explains itself, and round-trips
//! through `to_toml_string` to an equal layout.
#![no_main]

use geoshard::Error;
use geoshard::layout::Layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Layout::from_toml_str(text) {
        Ok(layout) => {
            let _ = layout.placement(1);
            let _ = layout.explain().to_string();
            let again = Layout::from_toml_str(&layout.to_toml_string())
                .expect("a layout's own TOML reads back");
            assert_eq!(again, layout);
        }
        Err(Error::InvalidLayout { .. } | Error::LayoutCannotSurvive { .. }) => {}
        Err(other) => panic!("unexpected error: {other}"),
    }
});
