use super::Printer;
use crate::check::Report;
use crate::printable::printable as p;
use policy_core::Action;
use std::io::Write;

/// Findings grouped by file, one line each, `line:col  action  rule  Kind ns/name  path: message`.
pub struct TextPrinter {
    pub color: bool,
}

impl TextPrinter {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(&self, a: Action) -> String {
        let code = match a {
            Action::Deny => "1;31",
            Action::Warn => "33",
            Action::Audit => "36",
        };
        self.paint(code, &format!("{:<5}", a.as_str()))
    }
}

impl Printer for TextPrinter {
    fn print(&self, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
        for e in &report.errors {
            writeln!(out, "{}: {} {}", p(&e.location()), self.paint("1;31", "error:"), p(&e.message))?;
        }
        let mut current: Option<&str> = None;
        for f in &report.findings {
            if current != Some(f.file.as_str()) {
                if current.is_some() || !report.errors.is_empty() {
                    writeln!(out)?;
                }
                writeln!(out, "{}", self.paint("1", &p(&f.file)))?;
                current = Some(&f.file);
            }
            let object = if f.namespace.is_empty() { f.name.clone() } else { format!("{}/{}", f.namespace, f.name) };
            // Everything below comes from the input (names, paths, messages quoting values).
            writeln!(
                out,
                "  {:>4}:{:<3} {} {}  {} {}  {}: {}",
                f.line,
                f.column,
                self.action(f.action),
                self.paint("2", &p(&f.rule)),
                p(&f.kind),
                p(&object),
                p(&f.path.to_string()),
                p(&f.message)
            )?;
        }
        let s = &report.summary;
        if !report.findings.is_empty() || !report.errors.is_empty() {
            writeln!(out)?;
        }
        let counts = format!(
            "{} deny, {} warn, {} audit in {} from {}",
            s.deny,
            s.warn,
            s.audit,
            plural(s.objects, "object", "objects"),
            plural(s.files, "file", "files")
        );
        let errors = if s.errors > 0 {
            format!("; {} could not be read", plural(s.errors, "file", "files"))
        } else {
            String::new()
        };
        if s.failing > 0 || s.errors > 0 {
            writeln!(
                out,
                "{} {counts}{errors}; {} the check",
                self.paint("1;31", "✖"),
                plural(s.failing, "finding fails", "findings fail")
            )
        } else {
            writeln!(out, "{} {counts}; nothing fails the check", self.paint("1;32", "✔"))
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
