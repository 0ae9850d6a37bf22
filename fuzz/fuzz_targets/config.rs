//! Fuzz target: arbitrary bytes through `hotline_fuzz::config` (see its doc).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hotline_fuzz::config(data);
});
