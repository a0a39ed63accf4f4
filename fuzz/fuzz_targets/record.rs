//! The store's record decoder on any bytes: sessions, messages and extra
//! rows as a read decodes them, then the public values built from them.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    sessionstore::fuzzing::decode_record(bytes);
});
