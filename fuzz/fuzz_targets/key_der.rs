//! Any bytes as DER key material, wrapped in PEM: the first byte picks the PEM label, the rest
//! is the DER (so the fuzzer mutates ASN.1 structure, not base64). Same checks as `key_pem`.
#![no_main]

#[path = "common/keys.rs"]
mod keys;

use libfuzzer_sys::fuzz_target;

const LABELS: [&str; 8] = [
    "PUBLIC KEY",
    "RSA PUBLIC KEY",
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "X509 CRL",
];

fuzz_target!(|data: &[u8]| {
    let Some((&label, der)) = data.split_first() else {
        return;
    };
    let label = LABELS[usize::from(label) % LABELS.len()];
    let pem = pem::encode(&pem::Pem::new(label, der.to_vec()));
    keys::check_pem(pem.as_bytes());
});
