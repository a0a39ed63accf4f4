//! Issue 7, test 5 (replay): every input of the SQLite import's fuzz
//! corpus (`fuzz/corpus/sqlite_import/`, kept in the repository) is
//! imported again here, both ways of handling invalid rows: an error or a
//! store, never a panic. The fuzzing itself is a long run
//! (docs/reliability.md).

use std::path::Path;

use sessionstore_migrate::{import, ImportOptions};

#[test]
fn the_sqlite_imports_fuzz_corpus_imports_or_errs_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sqlite_import");
    let (mut inputs, mut imported) = (0, 0);
    for entry in std::fs::read_dir(&corpus).expect("the corpus is in the repository") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for carry_invalid_rows in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("sessions.db");
            std::fs::write(&source, &bytes).unwrap();
            let options = ImportOptions {
                carry_invalid_rows,
                ..ImportOptions::default()
            };
            if import(&source, &dir.path().join("out.redb"), &options).is_ok() {
                imported += 1;
            }
        }
        inputs += 1;
    }
    assert!(inputs >= 2, "only {inputs} inputs in {}", corpus.display());
    assert!(
        imported > 0,
        "no input of the corpus imports: the seeds are broken"
    );
    eprintln!("sqlite corpus: {inputs} inputs replayed, {imported} imports");
}
