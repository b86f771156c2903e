use super::Printer;
use crate::check::Report;
use std::io::Write;

/// `{"findings": [...], "errors": [...], "summary": {...}}`, one document per run.
pub struct JsonPrinter;

impl Printer for JsonPrinter {
    fn print(&self, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            findings: &'a [crate::check::LocatedFinding],
            errors: &'a [crate::sources::InputError],
            summary: &'a crate::check::Summary,
        }
        let doc = Doc { findings: &report.findings, errors: &report.errors, summary: &report.summary };
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)
    }
}
