//! Output formats behind one interface: each printer renders a whole [`Report`].

mod json;
mod junit;
mod policyreport;
mod sarif;
mod text;

use crate::check::Report;
use crate::cli::Format;
use std::io::Write;

pub trait Printer {
    fn print(&self, report: &Report, out: &mut dyn Write) -> std::io::Result<()>;
}

pub fn printer(format: Format, color: bool) -> Box<dyn Printer> {
    match format {
        Format::Text => Box::new(text::TextPrinter { color }),
        Format::Json => Box::new(json::JsonPrinter),
        Format::Sarif => Box::new(sarif::SarifPrinter),
        Format::Junit => Box::new(junit::JunitPrinter),
        Format::Policyreport => Box::new(policyreport::PolicyReportPrinter),
    }
}
