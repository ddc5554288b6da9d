//! Fuzz target `binary_decoder`: a thin wrapper over `fuzz_checks::binary_decoder` (tests/support/fuzz_checks.rs),
//! which tests/fuzz_corpus.rs also runs on every file of fuzz/corpus/binary_decoder/ on stable.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::binary_decoder(data));
