//! Codec round trip: a random code shape, engine, data and erasure pattern.
//! Parity must equal `reed-solomon-erasure`'s; with at most m columns lost,
//! reconstruct restores every byte; with more, it returns
//! `NotEnoughColumns`, never panics.

#![no_main]

use geoshard::Error;
use geoshard::codec::{Codec, EngineKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((header, payload)) = input.split_first_chunk::<6>() else {
        return;
    };
    let k = 1 + usize::from(header[0] % 16);
    let m = 1 + usize::from(header[1] % 8);
    let n = k + m;
    let lost_mask = u32::from_le_bytes([header[2], header[3], header[4], 0]) & ((1 << n) - 1);
    let engines = EngineKind::available();
    let engine = engines[usize::from(header[5]) % engines.len()];
    let codec = Codec::with_engine(k, m, engine).expect("valid shape");

    let column_len = payload.len() / k;
    let data: Vec<&[u8]> = payload.chunks_exact(column_len.max(1)).take(k).collect();
    let data: Vec<&[u8]> = if column_len == 0 {
        vec![&[][..]; k]
    } else {
        data
    };
    let mut parity = vec![vec![0u8; column_len]; m];
    {
        let mut parity_refs: Vec<&mut [u8]> = parity.iter_mut().map(|p| p.as_mut_slice()).collect();
        codec.encode(&data, &mut parity_refs).expect("encode");
    }
    if column_len > 0 {
        let oracle = reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).expect("oracle");
        let mut expected = vec![vec![0u8; column_len]; m];
        oracle
            .encode_sep(&data, &mut expected)
            .expect("oracle encode");
        assert_eq!(
            parity, expected,
            "{engine} RS({k},{m}) parity differs from the oracle"
        );
    }

    let columns: Vec<&[u8]> = data
        .iter()
        .copied()
        .chain(parity.iter().map(|p| p.as_slice()))
        .collect();
    let present: Vec<(usize, &[u8])> = (0..n)
        .filter(|i| lost_mask >> i & 1 == 0)
        .map(|i| (i, columns[i]))
        .collect();
    let lost: Vec<usize> = (0..n).filter(|i| lost_mask >> i & 1 == 1).collect();
    let mut rebuilt = vec![vec![0u8; column_len]; lost.len()];
    let mut missing: Vec<(usize, &mut [u8])> = lost
        .iter()
        .copied()
        .zip(rebuilt.iter_mut().map(|r| r.as_mut_slice()))
        .collect();
    match codec.reconstruct(&present, &mut missing) {
        Ok(()) => {
            assert!(
                lost.len() <= m,
                "rebuilt {} lost columns with m = {m}",
                lost.len()
            );
            for (bytes, &i) in rebuilt.iter().zip(&lost) {
                assert_eq!(
                    bytes.as_slice(),
                    columns[i],
                    "{engine} RS({k},{m}) column {i}"
                );
            }
        }
        Err(Error::NotEnoughColumns { needed, available }) => {
            assert!(lost.len() > m);
            assert_eq!((needed, available), (k, n - lost.len()));
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
});
