//! Receipt reading and verification, as `handsign receipt verify` does it: strict parsing, then
//! every check, without and with the gateway's keys. A receipt that verifies with the keys
//! carries a verified gateway signature.
#![no_main]

use handsign_fuzz::gateway_keys;
use handsign_protocol::receipt::{Anchored, Receipt, TrustAnchor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(receipt) = Receipt::parse(data) else {
        return;
    };
    let _ = receipt.verify(TrustAnchor::None);
    if let Ok(verified) = receipt.verify(TrustAnchor::Gateway(&gateway_keys())) {
        assert!(matches!(
            verified.anchored,
            Anchored::GatewaySignature { .. }
        ));
    }
});
