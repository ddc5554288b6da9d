//! Fuzz target `text_decoder`: a thin wrapper over `fuzz_checks::text_decoder` (tests/support/fuzz_checks.rs),
//! which tests/fuzz_corpus.rs also runs on every file of fuzz/corpus/text_decoder/ on stable.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::text_decoder(data));
