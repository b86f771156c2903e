//! The check catalog rendered from policy-core's registry: `rules list`, `rules explain`, and the
//! Markdown of docs/checks.md (a test keeps docs/checks.md equal to it).

use policy_core::checks::CheckSpec;
use policy_core::{registry, Target};
use std::fmt::Write;

fn target(spec: &CheckSpec) -> &'static str {
    match spec.target {
        Target::Kubernetes => "Kubernetes objects",
        Target::Http => "HTTP requests",
    }
}

pub fn list() -> String {
    let width = registry().iter().map(|c| c.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for spec in registry() {
        let first = spec.summary.split(". ").next().unwrap_or(spec.summary).trim_end_matches('.');
        let _ = writeln!(
            out,
            "{:<width$}  {:<4}  {first}.",
            spec.id,
            if spec.target == Target::Http { "http" } else { "k8s" }
        );
    }
    out.push_str("\nRun `meshguard rules explain <check>` for params and examples.\n");
    out
}

pub fn explain(id: &str) -> Option<String> {
    let spec = policy_core::checks::find(id)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({})\n\n{}\n\nCode: {}\n",
        spec.id,
        target(spec),
        spec.summary,
        policy_core::checks::source(spec.id).unwrap_or("")
    );
    if spec.params.is_empty() {
        out.push_str("Params: none\n");
    } else {
        out.push_str("Params:\n");
        for p in spec.params {
            let _ = writeln!(out, "  {} ({}, default {}): {}", p.name, p.ty, p.default, p.description);
        }
    }
    let _ = writeln!(
        out,
        "\nExample params: {}\n\nPasses:\n{}\nFails:\n{}",
        spec.example_params,
        indent(spec.passing_example),
        indent(spec.failing_example)
    );
    let _ = writeln!(out, "Fix: {}", spec.fix);
    if !spec.fix_scope.is_empty() {
        let _ = writeln!(out, "A fix changes only: {}", spec.fix_scope.join(", "));
    }
    let _ = writeln!(out, "Native: {}", native(spec));
    if let Some(fixed) = fixed_example(spec) {
        let _ = writeln!(out, "\n`meshguard fix` turns the failing example into:\n{}", indent(&fixed));
    }
    Some(out)
}

/// The failing example after `meshguard fix` (with the example params), when the check fixes it:
/// run, not written by hand, so the catalog shows what the engine does.
fn fixed_example(spec: &CheckSpec) -> Option<String> {
    if spec.target != Target::Kubernetes {
        return None;
    }
    let params = policy_core::yaml::parse_one(spec.example_params).ok()?.value;
    let doc = serde_json::json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "example"},
        "spec": {"rules": [{"id": spec.id, "check": spec.id, "params": params}]}
    });
    let policy = policy_core::Policy::from_value(&doc).ok()?;
    let fixed = policy_core::fix::fix_text(&policy, spec.failing_example, "default").ok()?;
    (!fixed.applied.is_empty()).then_some(fixed.text)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("| check | applies to | what it enforces |\n|---|---|---|\n");
    for spec in registry() {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            spec.id,
            spec.id,
            target(spec),
            spec.summary.split(". ").next().unwrap_or("").trim_end_matches('.')
        );
    }
    for spec in registry() {
        let _ = writeln!(out, "\n### {}\n\n{}\n", spec.id, spec.summary);
        // One hop from a rule id to its code and to the corpus cases that exercise it.
        let source = policy_core::checks::source(spec.id).unwrap_or("");
        let _ = writeln!(out, "Code: [`{source}`](../{source}) · cases: `grep -rlw {} tests/corpus`\n", spec.id);
        if spec.params.is_empty() {
            out.push_str("No params.\n");
        } else {
            out.push_str("| param | type | default | meaning |\n|---|---|---|---|\n");
            for p in spec.params {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    p.name,
                    p.ty,
                    p.default.replace('|', "\\|"),
                    p.description.replace('|', "\\|")
                );
            }
        }
        // Both kinds of example (an object, an HTTP request) are written in YAML.
        let _ = writeln!(
            out,
            "\nWith params `{}`, this passes:\n\n```yaml\n{}```\n\nand this fails:\n\n```yaml\n{}```",
            spec.example_params,
            with_newline(spec.passing_example),
            with_newline(spec.failing_example)
        );
        let _ = writeln!(out, "\n**Fix.** {}", spec.fix);
        if !spec.fix_scope.is_empty() {
            let scope: Vec<String> = spec.fix_scope.iter().map(|p| format!("`{p}`")).collect();
            let _ =
                writeln!(out, "\nA fix changes only {} (`*`: one segment, `**`: any path before).", scope.join(", "));
        }
        if let Some(fixed) = fixed_example(spec) {
            let _ = writeln!(
                out,
                "\n`meshguard fix` turns the failing example into:\n\n```yaml\n{}```",
                with_newline(&fixed)
            );
        }
        let _ = writeln!(out, "\n**Native.** {}", native(spec));
    }
    out
}

/// Whether the API server can enforce the check itself, from the registry's native form.
fn native(spec: &CheckSpec) -> String {
    match spec.native {
        policy_core::checks::Native::Vap(build) => {
            let decisions = "`meshguard rules export --to vap` writes its rules as ValidatingAdmissionPolicies \
            the API server enforces without the webhook, with the same decisions (params inlined into the CEL).";
            // The example params: what the form is for a rule that fixes depends on the check only.
            let params = policy_core::yaml::parse_one(spec.example_params).map(|d| d.value).unwrap_or_default();
            let form = build(&params).ok();
            let fixes = match form.as_ref() {
                Some(f) if !f.mutations.is_empty() => match f.mutation_gap {
                    None => {
                        " With `mutate`, `--to map` writes its fix as a MutatingAdmissionPolicy making the same patch."
                            .to_string()
                    }
                    Some(gap) => format!(
                        " With `mutate`, `--to map` writes its fix as a MutatingAdmissionPolicy in part: {gap}."
                    ),
                },
                _ => String::new(),
            };
            format!("{decisions}{fixes}")
        }
        policy_core::checks::Native::WebhookOnly(why) => {
            format!("None: its rules stay with the webhook, since the check {why}.")
        }
        policy_core::checks::Native::Envoy => "None at admission: Envoy enforces it.".to_string(),
    }
}

fn with_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}
