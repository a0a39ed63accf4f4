//! The architecture invariants of ARCHITECTURE.md, checked on the sources:
//! which code may name which engine, which modules may import which, and no
//! import cycle between the library's top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Client crates of PostgreSQL the engine may use: only its folder names them.
const POSTGRES_CRATES: [&str; 4] = ["postgres", "tokio_postgres", "sqlx", "deadpool_postgres"];

/// A source file: its path from the workspace root, its lines of code
/// (comments dropped: doc examples and prose may name anything).
struct Source {
    path: String,
    code: Vec<String>,
}

fn sources(folder: &str) -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut folders = vec![root.join(folder)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(read(root, &path));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn read(root: &Path, path: &PathBuf) -> Source {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => line[..at].to_owned(),
            None => line.to_owned(),
        })
        .collect();
    let path = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/");
    Source { path, code }
}

/// Whether `line` names the crate `name` as a path (`name::`, `::name::`,
/// `use name`, `extern crate name`), not a module of that name inside
/// another path (`engine::redb::`).
fn names_crate(line: &str, name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let path = format!("{name}::");
    let mut from = 0;
    while let Some(at) = line[from..].find(&path).map(|at| at + from) {
        let before = &line[..at];
        let starts_a_word = !before.ends_with(word);
        let inside_a_path = before
            .strip_suffix("::")
            .is_some_and(|rest| rest.ends_with(word) || rest.ends_with('>'));
        if starts_a_word && !inside_a_path {
            return true;
        }
        from = at + path.len();
    }
    let trimmed = line.trim_start();
    [format!("use {name};"), format!("extern crate {name}")]
        .iter()
        .any(|form| trimmed.starts_with(form.as_str()))
}

/// The lines of `sources` that break a rule, as `path:line: text`.
fn offending(sources: &[Source], breaks: impl Fn(&Source, &str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for source in sources {
        for (n, line) in source.code.iter().enumerate() {
            if breaks(source, line) {
                found.push(format!("{}:{}: {}", source.path, n + 1, line.trim()));
            }
        }
    }
    found
}

fn library_and_tools() -> Vec<Source> {
    let mut all = sources("src");
    all.extend(sources("migrate/src"));
    all
}

#[test]
fn only_the_redb_engine_names_redb() {
    let found = offending(&library_and_tools(), |source, line| {
        !source.path.starts_with("src/engine/redb/") && names_crate(line, "redb")
    });
    assert!(
        found.is_empty(),
        "redb named outside src/engine/redb/:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_postgres_engine_names_a_postgres_client() {
    let found = offending(&library_and_tools(), |source, line| {
        !source.path.starts_with("src/engine/postgres/")
            && POSTGRES_CRATES.iter().any(|name| names_crate(line, name))
    });
    assert!(
        found.is_empty(),
        "a PostgreSQL client named outside src/engine/postgres/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_model_and_the_rules_import_no_engine() {
    let model = [
        "src/model.rs",
        "src/timestamp.rs",
        "src/json.rs",
        "src/query.rs",
        "src/error.rs",
    ];
    let found = offending(&sources("src"), |source, line| {
        (source.path.starts_with("src/rules/") || model.contains(&source.path.as_str()))
            && line.contains("crate::engine")
    });
    assert!(
        found.is_empty(),
        "the model or the rules import an engine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cli_server_client_and_converter_call_the_public_api_only() {
    let mut sources = sources("src/bin");
    sources.extend(self::sources("src/server"));
    sources.extend(self::sources("migrate"));
    sources.extend(
        self::sources("src")
            .into_iter()
            .filter(|s| s.path == "src/client.rs"),
    );
    let found = offending(&sources, |_, line| {
        line.contains("crate::engine") || line.contains("sessionstore::engine")
    });
    assert!(
        found.is_empty(),
        "engine internals imported:\n{}",
        found.join("\n")
    );
}

/// The top-level module of the library a file belongs to: `src/store.rs`
/// and `src/engine/redb/writer/mod.rs` belong to `store` and `engine`.
fn top_module(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    if rest.starts_with("bin/") {
        return None;
    }
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// Edges `from -> to` of `use crate::to` (any path `crate::to::`) between
/// top-level modules.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources("src");
    let modules: BTreeSet<String> = sources.iter().filter_map(|s| top_module(&s.path)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in &sources {
        let Some(from) = top_module(&source.path) else {
            continue;
        };
        if from == "lib" {
            continue;
        }
        for line in &source.code {
            for (at, _) in line.match_indices("crate::") {
                let to: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if to != from && modules.contains(&to) {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    graph
}

/// A cycle of `graph`, if it has one, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    if let Some(cycle) = cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert!(names_crate("use redb::Database;", "redb"));
    assert!(names_crate(
        "    let db = ::redb::Database::create(path);",
        "redb"
    ));
    assert!(names_crate("fn f(e: redb::Error) {}", "redb"));
    assert!(!names_crate("use crate::engine::redb::RedbEngine;", "redb"));
    assert!(!names_crate("let path = \"s.redb\";", "redb"));
    assert!(names_crate("use tokio_postgres::Client;", "tokio_postgres"));
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
    assert!(module_graph()
        .get("store")
        .is_some_and(|to| to.contains("engine")));
}
