//! RFC 8785 canonicalization of arbitrary bytes: never panics, and what it accepts is a fixed
//! point (canonicalizing the output again gives the same bytes), reads back with serde_json, and
//! canonicalizes from that parsed value to the same bytes (the gateway hashes text, a receipt
//! check hashes a parsed value: both must agree).
#![no_main]

use handsign_protocol::canonical::{Limits, canonicalize, canonicalize_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(canonical) = canonicalize(data, &limits) else {
        return;
    };
    assert_eq!(
        canonicalize(&canonical, &limits).expect("canonical output canonicalizes"),
        canonical,
        "canonical output is a fixed point"
    );
    let value: serde_json::Value =
        serde_json::from_slice(&canonical).expect("canonical output is JSON");
    assert_eq!(
        canonicalize_value(&value, &limits).expect("the parsed output canonicalizes"),
        canonical,
        "text and parsed value canonicalize alike"
    );
});
