//! Fuzz target: arbitrary bytes through Hotline's SIP message path (parse, validate,
//! registrar/proxy, TCP framing, timers). See `hotline_sip::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hotline_sip::fuzzing::message_path(data);
});
