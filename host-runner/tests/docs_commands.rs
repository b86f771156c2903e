//! Every `meshguard` command the docs show runs: each line of a ```sh block in README.md or
//! docs/*.md that starts with `meshguard ` runs from the repository root, with a time bound.
//!
//! A trailing `# comment` is dropped; a comment `# exit N` (optionally followed by `:` and more
//! text) states the expected exit code, otherwise the command must exit 0 or 1: never 2 (a usage or
//! input error, e.g. a flag or file that does not exist), never a crash. Commands that are not a
//! plain `meshguard` invocation (pipes, redirections, `$(...)`, other programs) or that need what a
//! test machine lacks (a cluster, a long-running `meshguard serve`) belong in ```console or ```text
//! blocks, which are not run. Files a command writes go under `target/`.

mod support;

use std::path::{Path, PathBuf};

/// The docs show more than this many commands: demoting every block must not make the test vacuous.
const AT_LEAST: usize = 15;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One `meshguard` line of a ```sh block.
#[derive(Debug)]
struct DocCommand {
    /// `docs/ci.md:17`
    at: String,
    line: String,
    /// The arguments after `meshguard`.
    args: Vec<String>,
    expect: Option<i32>,
}

/// README.md, then docs/*.md in name order.
fn doc_files() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    let mut files = vec![repo().join("README.md")];
    files.extend(pages);
    files
}

/// The lines of ```sh blocks that start with `meshguard `, as (line number, line).
fn sh_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // The open fence (its character and length) and whether the block is `sh`.
    let mut open: Option<(char, usize, bool)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let fence_char = line.chars().next().filter(|c| *c == '`' || *c == '~');
        let fence_len = fence_char.map_or(0, |c| line.chars().take_while(|x| *x == c).count());
        match open {
            None if fence_len >= 3 => {
                let info = line[fence_len..].trim();
                open = Some((fence_char.unwrap(), fence_len, info == "sh"));
            }
            Some((c, n, _)) if fence_char == Some(c) && fence_len >= n && line[fence_len..].trim().is_empty() => {
                open = None;
            }
            Some((_, _, true)) => {
                let command = line.trim();
                if command.starts_with("meshguard ") {
                    out.push((i + 1, command.to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Splits a command line into words as `sh` does for plain words and quotes (no variables), and
/// returns the trailing comment. Anything the shell would treat as more than one plain command is
/// an error.
fn shell_words(line: &str) -> Result<(Vec<String>, Option<String>), String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => return Ok((words, Some(chars.collect::<String>().trim().to_string()))),
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => word.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => word.push(x),
                            Some(x) => {
                                word.push('\\');
                                word.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(x @ ('$' | '`')) => return Err(format!("`{x}` in double quotes: no expansions here")),
                        Some(x) => word.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => word.push(x),
                    None => return Err("trailing backslash: one command per line".into()),
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '{' => {
                return Err(format!("`{c}` makes it more than a plain meshguard invocation"))
            }
            x => {
                in_word = true;
                word.push(x);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok((words, None))
}

/// `exit 2` or `exit 2: why` states the expected exit code.
fn expected_exit(comment: &str) -> Option<i32> {
    let rest = comment.strip_prefix("exit ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = &rest[digits.len()..];
    if digits.is_empty() || !(after.is_empty() || after.starts_with(':')) {
        return None;
    }
    digits.parse().ok()
}

fn doc_commands() -> Vec<DocCommand> {
    let mut commands = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for (number, line) in sh_lines(&text) {
            let at = format!("{name}:{number}");
            let (words, comment) = shell_words(&line).unwrap_or_else(|e| {
                panic!("{at}: `{line}`: {e}; put it in a ```console block, or split out the meshguard part")
            });
            assert_eq!(words[0], "meshguard", "{at}");
            for pair in words.windows(2) {
                if ["--out", "--self-signed", "--cache-dir"].contains(&pair[0].as_str()) {
                    assert!(pair[1].starts_with("target/"), "{at}: `{line}` writes outside target/");
                }
            }
            let expect = comment.as_deref().and_then(expected_exit);
            commands.push(DocCommand { at, line, args: words[1..].to_vec(), expect });
        }
    }
    commands
}

/// Runs one command from the repository root, within the limits every test run of the binary has;
/// the exit code and what it printed, or why there is no exit code.
fn run(command: &DocCommand, cache: &Path) -> Result<(i32, String), String> {
    // The compile cache and its key in the test's temporary directory, not in $HOME.
    let run = support::meshguard_keyed(&repo(), &command.args, None, cache, "docs-commands-key")?;
    Ok((run.exit, format!("{}{}", run.stdout, run.stderr)))
}

#[test]
fn every_meshguard_command_in_the_docs_runs() {
    let commands = doc_commands();
    assert!(
        commands.len() >= AT_LEAST,
        "only {} meshguard commands in ```sh blocks of README.md and docs/*.md (at least {AT_LEAST} expected)",
        commands.len()
    );
    let cache = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for command in &commands {
        let result = run(command, cache.path());
        let verdict = match &result {
            Ok((code, _)) => match command.expect {
                Some(expected) if *code == expected => Ok(()),
                Some(expected) => Err(format!("exit {code}, the docs say exit {expected}")),
                None if *code == 0 || *code == 1 => Ok(()),
                None => Err(format!("exit {code} (0 or 1 expected; 2 is a usage or input error)")),
            },
            Err(why) => Err(why.clone()),
        };
        let shown = match &result {
            Ok((code, _)) => format!("exit {code}"),
            Err(_) => "no exit".to_string(),
        };
        eprintln!("{}: {}  -> {shown}{}", command.at, command.line, if verdict.is_ok() { "" } else { "  FAILED" });
        if let Err(why) = verdict {
            let stderr = result.map(|(_, e)| e).unwrap_or_default();
            failures.push(format!("{}: `{}`: {why}\n{}", command.at, command.line, stderr.trim_end()));
        }
    }
    let hint = if repo().join("dist/meshguard-kubewarden.wasm").exists()
        && repo().join("dist/meshguard-envoy.wasm").exists()
    {
        ""
    } else {
        "\n(dist/ lacks the wasm artifacts: the wasm engine and `replay` need scripts/build-wasm.sh before the build)"
    };
    assert!(
        failures.is_empty(),
        "{} of {} doc commands failed:\n{}{hint}",
        failures.len(),
        commands.len(),
        failures.join("\n\n")
    );
}

#[test]
fn shell_words_split_as_sh_does() {
    let split = |line: &str| shell_words(line).unwrap();
    assert_eq!(
        split("meshguard check --rules 'a b.yaml' \"c\\\"d\" e\\ f   # exit 1: why"),
        (
            ["meshguard", "check", "--rules", "a b.yaml", "c\"d", "e f"].iter().map(|s| s.to_string()).collect(),
            Some("exit 1: why".to_string())
        )
    );
    assert_eq!(split("meshguard rules list").1, None);
    assert_eq!(split("meshguard check a#b").0.last().unwrap(), "a#b", "# inside a word is not a comment");
    for line in [
        "meshguard rules print-default > rules.yaml",
        "kustomize build . | meshguard check -",
        "meshguard check $(ls)",
        "meshguard check a && meshguard check b",
        "meshguard check \"$HOME\"",
        "meshguard check 'unterminated",
    ] {
        assert!(shell_words(line).is_err(), "{line}");
    }
    assert_eq!(expected_exit("exit 2"), Some(2));
    assert_eq!(expected_exit("exit 0: nothing fails"), Some(0));
    assert_eq!(expected_exit("exits when done"), None);
    assert_eq!(expected_exit("files and directories"), None);
}

#[test]
fn only_sh_blocks_are_read() {
    let text = "```sh\nmeshguard rules list   # x\n```\n\n```console\nmeshguard serve\n```\n\n````sh\n```\nmeshguard check a\n````\n  ```sh\n  meshguard test b\n  ```\n";
    let lines: Vec<String> = sh_lines(text).into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines, ["meshguard rules list   # x", "meshguard check a", "meshguard test b"]);
}
