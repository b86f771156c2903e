//! The hostile-input suite: every case of `cases.yaml` through the real `meshguard` binary, each
//! in a fresh directory, under a 4 GB address-space limit and a wall-clock bound, in both engines
//! with byte-identical output. Plus the compile-cache attacks, which need state between runs.

use policy_core::yaml::parse_one;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod support;
use support::{meshguard_keyed, Run};

#[derive(Deserialize)]
struct Suite {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    files: BTreeMap<String, Content>,
    #[serde(default)]
    fifos: Vec<String>,
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
    #[serde(default)]
    extra_files_from_repo: BTreeMap<String, String>,
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Repeat {
        text: String,
        repeat: usize,
        #[serde(default)]
        before: String,
        #[serde(default)]
        after: String,
    },
    Parts {
        parts: Vec<(String, usize)>,
    },
    Latin1 {
        latin1: String,
    },
    Utf16 {
        utf16le: String,
    },
    /// `numbered` written `count` times with `{i}` as 1, 2, ... and `{j}` as `{i}` - 1.
    Numbered {
        numbered: String,
        count: usize,
        #[serde(default)]
        before: String,
        #[serde(default)]
        after: String,
    },
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Content::Text(t) => t.as_bytes().to_vec(),
            Content::Repeat { text, repeat, before, after } => {
                [before.as_str(), &text.repeat(*repeat), after.as_str()].concat().into_bytes()
            }
            Content::Parts { parts } => parts.iter().map(|(text, n)| text.repeat(*n)).collect::<String>().into_bytes(),
            Content::Latin1 { latin1 } => latin1.chars().map(|c| u8::try_from(u32::from(c)).expect("latin1")).collect(),
            Content::Utf16 { utf16le } => utf16le.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Content::Numbered { numbered, count, before, after } => {
                let body: String = (1..=*count)
                    .map(|i| numbered.replace("{i}", &i.to_string()).replace("{j}", &(i - 1).to_string()))
                    .collect();
                [before.as_str(), &body, after.as_str()].concat().into_bytes()
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    exit: i32,
    #[serde(default)]
    stdout: Vec<String>,
    #[serde(default)]
    stderr: Vec<String>,
    #[serde(default)]
    lacks: Vec<String>,
    #[serde(default)]
    max_stdout: Option<usize>,
    #[serde(default)]
    max_stderr: Option<usize>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `meshguard args` in `dir` within the limits; `Err` when a limit is broken.
fn meshguard(dir: &Path, args: &[String], stdin: Option<&str>, cache: &Path) -> Result<Run, String> {
    meshguard_keyed(dir, args, stdin, cache, "hostile-suite-key")
}

fn prepare(case: &Case) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    };
    for (name, content) in &case.files {
        std::fs::write(at(name), content.bytes()).unwrap();
    }
    for (name, source) in &case.extra_files_from_repo {
        std::fs::copy(repo().join(source), at(name)).unwrap();
    }
    for name in &case.fifos {
        let path = std::ffi::CString::new(at(name).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0, "mkfifo {name}");
    }
    for (link, target) in &case.symlinks {
        std::os::unix::fs::symlink(target, at(link)).unwrap();
    }
    dir
}

/// Where the engine flag goes: `check` and `test` take `--engine`; other commands have one engine.
fn with_engine(args: &[String], engine: &str) -> Option<Vec<String>> {
    let command = args.first()?;
    (command == "check" || command == "test").then(|| {
        let mut out = vec![command.clone(), "--engine".into(), engine.into()];
        out.extend(args[1..].iter().cloned());
        out
    })
}

fn judge(case: &Case, run: &Run) -> Vec<String> {
    let e = &case.expect;
    let mut problems = Vec::new();
    if run.exit != e.exit {
        problems.push(format!("exit {} (expected {})", run.exit, e.exit));
    }
    for s in &e.stdout {
        if !run.stdout.contains(s.as_str()) {
            problems.push(format!("stdout lacks {s:?}"));
        }
    }
    for s in &e.stderr {
        if !run.stderr.contains(s.as_str()) {
            problems.push(format!("stderr lacks {s:?}"));
        }
    }
    for s in &e.lacks {
        if run.stdout.contains(s.as_str()) || run.stderr.contains(s.as_str()) {
            problems.push(format!("output contains {s:?}"));
        }
    }
    if e.max_stdout.is_some_and(|max| run.stdout.len() > max) {
        problems.push(format!("stdout is {} bytes", run.stdout.len()));
    }
    if e.max_stderr.is_some_and(|max| run.stderr.len() > max) {
        problems.push(format!("stderr is {} bytes", run.stderr.len()));
    }
    problems
}

fn excerpt(s: &str) -> String {
    s.chars().take(1500).collect()
}

#[test]
fn hostile_inputs_get_their_documented_answer_in_both_engines() {
    let text = std::fs::read_to_string(repo().join("host-runner/tests/hostile/cases.yaml")).unwrap();
    let suite: Suite = serde_json::from_value(parse_one(&text).unwrap().value).unwrap();
    assert!(suite.cases.len() >= 25, "the suite shrank: {} cases", suite.cases.len());
    let cache = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in &suite.cases {
        let dir = prepare(case);
        let runs: Vec<(String, Result<Run, String>)> =
            match (with_engine(&case.args, "native"), with_engine(&case.args, "wasm")) {
                (Some(native), Some(wasm)) => vec![
                    ("native".into(), meshguard(dir.path(), &native, case.stdin.as_deref(), cache.path())),
                    ("wasm".into(), meshguard(dir.path(), &wasm, case.stdin.as_deref(), cache.path())),
                ],
                _ => vec![("".into(), meshguard(dir.path(), &case.args, case.stdin.as_deref(), cache.path()))],
            };
        for (engine, run) in &runs {
            match run {
                Err(e) => failures.push(format!("{} [{engine}]: {e}", case.name)),
                Ok(run) => {
                    let problems = judge(case, run);
                    if !problems.is_empty() {
                        failures.push(format!(
                            "{} [{engine}]: {}\n--- stdout\n{}\n--- stderr\n{}",
                            case.name,
                            problems.join("; "),
                            excerpt(&run.stdout),
                            excerpt(&run.stderr)
                        ));
                    }
                }
            }
        }
        if let [(_, Ok(native)), (_, Ok(wasm))] = runs.as_slice() {
            if native != wasm {
                failures.push(format!(
                    "{}: the engines differ\n--- native\n{}\n--- wasm\n{}",
                    case.name,
                    excerpt(&format!("{native:?}")),
                    excerpt(&format!("{wasm:?}"))
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        suite.cases.len(),
        failures.join("\n\n")
    );
}

/// The compile cache holds native code: a corrupted or planted file must never run.
#[test]
fn a_tampered_compile_cache_is_recompiled_not_executed() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("service.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  ports:\n  - {name: web, port: 80}\n").unwrap();
    let args: Vec<String> = ["check", "--engine", "wasm", "service.yaml"].iter().map(|s| s.to_string()).collect();
    let first = meshguard(work.path(), &args, None, cache.path()).unwrap();
    assert_eq!(first.exit, 1, "{}", first.stderr);
    let file = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache file");
    let good = std::fs::read(&file).unwrap();
    let tampered: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped bytes in the code", {
            let mut b = good.clone();
            for i in (good.len() / 3..good.len() / 3 + 64).step_by(7) {
                b[i] ^= 0xff;
            }
            b
        }),
        ("garbage", vec![0x41; 4096]),
        ("empty", Vec::new()),
        // A valid compile for another key: what a restored or shared cache would carry.
        ("valid code, wrong key's tag", {
            let mut b = good.clone();
            b[..32].copy_from_slice(&[0u8; 32]);
            b
        }),
    ];
    for (what, bytes) in tampered {
        std::fs::write(&file, &bytes).unwrap();
        let run = meshguard(work.path(), &args, None, cache.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(run, first, "{what}: the same answer as a clean compile");
        assert!(std::fs::read(&file).unwrap() == good, "{what}: the cache file is rewritten by the recompile");
    }
    // Another key does not trust this key's files: it recompiles and re-tags the file.
    let other = meshguard_keyed(work.path(), &args, None, cache.path(), "another-key").unwrap();
    assert_eq!(other, first);
    assert!(std::fs::read(&file).unwrap() != good, "the file was re-tagged under the other key");
}
