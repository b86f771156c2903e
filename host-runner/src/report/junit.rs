use super::Printer;
use crate::check::Report;
use policy_core::Action;
use std::io::Write;

/// JUnit XML: a testsuite per file, a testcase per object and rule; a finding at or above
/// `--fail-on` is a failure, a lesser one is recorded in `system-out`. Unreadable files are errors.
pub struct JunitPrinter;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

impl Printer for JunitPrinter {
    fn print(&self, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
        let fails = |a: Action| a != Action::Audit && a >= report.fail_on;
        let index = report.findings_index();
        let mut files: Vec<&str> = Vec::new();
        for o in &report.objects {
            if !files.contains(&o.file.as_str()) {
                files.push(&o.file);
            }
        }
        let tests = report.objects.len() * report.rules.len() + report.errors.len();
        let failures = report.findings.iter().filter(|f| fails(f.action)).count();
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<testsuites name="meshguard" tests="{tests}" failures="{failures}" errors="{}">"#,
            report.errors.len()
        )?;
        for file in files {
            let objects: Vec<_> = report.objects.iter().filter(|o| o.file == file).collect();
            let file_failures = report.findings.iter().filter(|f| f.file == file && fails(f.action)).count();
            writeln!(
                out,
                r#"  <testsuite name="{}" tests="{}" failures="{file_failures}" errors="0">"#,
                esc(file),
                objects.len() * report.rules.len()
            )?;
            for o in objects {
                let object = if o.namespace.is_empty() {
                    format!("{} {}", o.kind, o.name)
                } else {
                    format!("{} {}/{}", o.kind, o.namespace, o.name)
                };
                for rule in &report.rules {
                    let hits = index.on(o, rule);
                    write!(
                        out,
                        r#"    <testcase classname="{}" name="{} [{}]" file="{}" line="{}""#,
                        esc(&object),
                        esc(&object),
                        esc(rule),
                        esc(file),
                        o.line
                    )?;
                    if hits.is_empty() {
                        writeln!(out, "/>")?;
                        continue;
                    }
                    writeln!(out, ">")?;
                    for f in hits.iter().copied() {
                        let text = format!("{}:{}: {} {}: {}", f.file, f.line, f.action, f.path, f.message);
                        if fails(f.action) {
                            writeln!(
                                out,
                                r#"      <failure type="{}" message="{}">{}</failure>"#,
                                f.action,
                                esc(&f.message),
                                esc(&text)
                            )?;
                        } else {
                            writeln!(out, "      <system-out>{}</system-out>", esc(&text))?;
                        }
                    }
                    writeln!(out, "    </testcase>")?;
                }
            }
            writeln!(out, "  </testsuite>")?;
        }
        if !report.errors.is_empty() {
            writeln!(out, r#"  <testsuite name="input" tests="{0}" failures="0" errors="{0}">"#, report.errors.len())?;
            for e in &report.errors {
                writeln!(
                    out,
                    r#"    <testcase classname="input" name="{}"><error message="{}">{}:{}:{}: {}</error></testcase>"#,
                    esc(&e.file),
                    esc(&e.message),
                    esc(&e.file),
                    e.line,
                    e.column,
                    esc(&e.message)
                )?;
            }
            writeln!(out, "  </testsuite>")?;
        }
        writeln!(out, "</testsuites>")
    }
}
