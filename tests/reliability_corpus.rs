//! Issue 7, test 5 (replay): every input of the record decoder's fuzz
//! corpus (`fuzz/corpus/record/`, kept in the repository) is decoded again
//! here, so that `cargo test` fails if a change makes any of them panic.
//! The fuzzing itself is a long run (docs/reliability.md).

use std::path::Path;

#[test]
fn the_record_decoders_fuzz_corpus_decodes_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/record");
    let mut inputs = 0;
    let mut decoded = 0;
    for entry in std::fs::read_dir(&corpus).expect("the corpus is in the repository") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        decoded += sessionstore::fuzzing::decode_record(&bytes);
        inputs += 1;
    }
    assert!(inputs >= 10, "only {inputs} inputs in {}", corpus.display());
    assert!(
        decoded > 0,
        "no input of the corpus decodes: it no longer reaches the decoder's depths"
    );
    eprintln!("corpus: {inputs} inputs replayed, {decoded} decodings");
}
