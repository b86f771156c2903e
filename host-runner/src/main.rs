//! `meshguard`: the CLI over policy-core. Thin by design: parse args, call a command, exit.

use clap::Parser;
use host_runner::cli::{
    CheckArgs, Cli, ColorChoice, Command, EngineChoice, ExportTarget, FailOn, FailurePolicy, FixArgs, FixFormat,
    PushArgs, RulesCommand, ServeArgs, WasmArgs,
};
use host_runner::engine::{self, Reviewer};
use host_runner::printable::printable;
use host_runner::{catalog, check, report, wasm};
use policy_core::Action;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

// Reading a big manifest repo allocates millions of small values from two threads; glibc's
// allocator spent a fifth of `check`'s time growing arenas (page faults, mprotect) there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = if e.downcast_ref::<engine::RulesError>().is_some() {
                format!("invalid rule set: {e}")
            } else {
                format!("{e:#}")
            };
            eprintln!("error: {}", printable(&message));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check_command(args),
        Command::Fix(args) => fix_command(args),
        Command::Replay { rules, requests, wasm: args } => replay_command(rules, &requests, &args),
        Command::Test { dir, engine, wasm } => test_command(&dir, engine, &wasm),
        Command::CompileForServe { wasm: args } => {
            let bytes = wasm::module_bytes(args.module.as_deref())?;
            // The server's engine: its deadlines trap.
            let limits = wasm::Limits { on_deadline: wasm::OnDeadline::Trap, ..wasm::setup::limits(&args, None) };
            let engine = wasm::server_engine(&limits)?;
            let cache = args.cache_dir.clone().or_else(wasm::default_cache_dir);
            wasm::compile_cached(&engine, &bytes, cache.as_deref())?;
            Ok(0)
        }
        Command::Serve(args) => serve_command(args),
        Command::Certs { out, dns_names } => {
            let made = host_runner::serve::tls::self_signed(&out, &dns_names)?;
            println!(
                "wrote {}, {} and {} for {}",
                made.ca.display(),
                made.cert.display(),
                made.key.display(),
                dns_names.join(", ")
            );
            Ok(0)
        }
        Command::Push(args) => push_command(&args),
        Command::Rules { command } => {
            print!("{}", rules_command(command)?);
            Ok(0)
        }
    }
}

fn push_command(args: &PushArgs) -> anyhow::Result<u8> {
    use host_runner::push;
    let destination = push::Destination::parse(&args.reference, args.plain_http)?;
    let path = std::path::Path::new(&args.artifact);
    let artifact = if path.is_dir() {
        push::oci_layout_image(path, None)?
    } else if path.is_file() {
        push::kubewarden_policy(path)?
    } else {
        match args.artifact.rsplit_once(':') {
            Some((dir, tag)) if std::path::Path::new(dir).is_dir() => push::oci_layout_image(dir.as_ref(), Some(tag))?,
            _ => anyhow::bail!("{}: no such file, directory or DIR:TAG of an OCI layout", args.artifact),
        }
    };
    let digest = push::upload(&artifact, &destination)?;
    println!("{}@{digest}", args.reference);
    Ok(0)
}

fn check_command(args: CheckArgs) -> anyhow::Result<u8> {
    let (policy, rules_doc) = engine::load_policy_with(args.rules.as_deref(), &args.policies)?;
    let reviewer = match args.engine {
        EngineChoice::Native => Reviewer::Native(policy),
        EngineChoice::Wasm => {
            Reviewer::Wasm { module: Arc::new(wasm::setup::module(&args.wasm)?), rules: rules_doc, policy }
        }
    };
    let fail_on = match args.fail_on {
        FailOn::Deny => Action::Deny,
        FailOn::Warn => Action::Warn,
    };
    // SARIF carries each finding's fix as the lines it changes, for code scanning to offer.
    let fix_changes = args.format == host_runner::cli::Format::Sarif;
    let mut report = check::run_with(&reviewer, &args.paths, &args.namespace, fail_on, fix_changes)?;
    if !args.allow_empty {
        report.require_objects();
    }
    let stdout = std::io::stdout();
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = stdout.lock();
    let printed = report::printer(args.format, color).print(&report, &mut out).and_then(|()| out.flush());
    match printed {
        // A reader that stops early (`| head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    let code = report.exit_code() as u8;
    // See `Report::parsed`: the process ends now, and the OS takes the trees back at once.
    std::mem::forget(report.parsed);
    Ok(code)
}

fn fix_command(args: FixArgs) -> anyhow::Result<u8> {
    let (policy, rules_doc) = engine::load_policy_with(args.rules.as_deref(), &args.policies)?;
    let mut known: Vec<String> = policy.rules().map(|r| r.id.clone()).collect();
    known.extend(policy.mutating_policy_ids());
    if let Some(unknown) = args.only.iter().find(|r| !known.contains(r)) {
        anyhow::bail!("--only names `{unknown}`, which is not a rule of the rule set ({})", known.join(", "));
    }
    let reviewer = match args.engine {
        EngineChoice::Native => Reviewer::Native(policy),
        EngineChoice::Wasm => {
            Reviewer::Wasm { module: Arc::new(wasm::setup::module(&args.wasm)?), rules: rules_doc, policy }
        }
    };
    let stream = args.paths.iter().any(|p| p.as_os_str() == "-");
    if stream && args.paths.len() > 1 {
        anyhow::bail!("`-` (stdin) is fixed on its own: it cannot be mixed with other paths");
    }
    // With --write, what is left is named at its line in the file as written.
    let mut report = host_runner::fix::run(&reviewer, &args.paths, &args.namespace, &args.only, args.write)?;
    std::mem::forget(std::mem::take(&mut report.parsed));
    for e in &report.errors {
        eprintln!("{}: error: {}", e.location(), printable(&e.message));
    }
    for left in &report.left {
        eprintln!("{}:{}: {}: not fixed: {}", left.file, left.line, left.rule, printable(&left.why));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if stream {
        // The fixed stream (or the stream as it came, when nothing changed) for the next command.
        out.write_all(report.stream.as_deref().unwrap_or_default().as_bytes())?;
        return Ok(if report.errors.is_empty() { 0 } else { 2 });
    }
    match args.format {
        FixFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        FixFormat::Diff if !args.write => {
            for changed in &report.changed {
                write!(out, "{}", host_runner::fix::diff(changed))?;
            }
        }
        FixFormat::Diff => {}
    }
    if args.write {
        for changed in &report.changed {
            let path = std::fs::canonicalize(&changed.name).unwrap_or_else(|_| PathBuf::from(&changed.name));
            host_runner::fix::write_atomically(&path, &changed.after)?;
            eprintln!("fixed {}", changed.name);
        }
    }
    Ok(report.exit_code(args.write))
}

fn replay_command(rules: Option<PathBuf>, requests: &std::path::Path, args: &WasmArgs) -> anyhow::Result<u8> {
    let config = match &rules {
        Some(path) => {
            // Validate here first, for errors with the file's line numbers.
            engine::load_policy(Some(path))?;
            std::fs::read(path)?
        }
        None => policy_core::DEFAULT_RULES_YAML.as_bytes().to_vec(),
    };
    let bytes = wasm::filter_bytes(args.module.as_deref())?;
    let limits = wasm::setup::limits(args, None);
    let wasm_engine = wasm::engine(&limits)?;
    let cache = if args.no_cache { None } else { args.cache_dir.clone().or_else(wasm::default_cache_dir) };
    let (module, _) = wasm::compile_cached(&wasm_engine, &bytes, cache.as_deref())?;
    let mut filter = wasm::proxy::ProxyFilter::new(&wasm_engine, &module, &config, limits)?;
    let stdout = std::io::stdout();
    let summary = host_runner::replay::run(&mut filter, requests, &mut stdout.lock())?;
    Ok(u8::from(summary.unexpected > 0))
}

fn test_command(dir: &std::path::Path, engine: EngineChoice, wasm_args: &WasmArgs) -> anyhow::Result<u8> {
    // One compiled module for every suite; each suite brings its own rule set.
    let module = match engine {
        EngineChoice::Wasm => Some(Arc::new(wasm::setup::module(wasm_args)?)),
        EngineChoice::Native => None,
    };
    let make = |policy, rules| -> anyhow::Result<Reviewer> {
        Ok(match &module {
            Some(m) => Reviewer::Wasm { module: m.clone(), rules, policy },
            None => Reviewer::Native(policy),
        })
    };
    let outcomes = host_runner::suite::run(dir, &make)?;
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for o in &outcomes {
        match &o.failure {
            None => println!("PASS  {}", printable(&o.name)),
            Some(why) => println!("FAIL  {}\n      {}", printable(&o.name), printable(why)),
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    Ok(u8::from(failed > 0))
}

fn serve_command(args: ServeArgs) -> anyhow::Result<u8> {
    let (cert, key) = match (&args.self_signed, args.tls_cert, args.tls_key) {
        (Some(dir), _, _) => {
            let made = host_runner::serve::tls::self_signed(dir, &args.dns_names)?;
            (made.cert, made.key)
        }
        (None, Some(cert), Some(key)) => (cert, key),
        _ => anyhow::bail!("--tls-cert and --tls-key, or --self-signed DIR"),
    };
    let cluster = if args.cluster.is_empty() {
        None
    } else {
        Some(Arc::new(host_runner::serve::cluster::ClusterSnapshot::load(&args.cluster)?))
    };
    let module = match args.engine {
        EngineChoice::Wasm => {
            let deadline = std::time::Duration::from_millis(args.review_timeout_ms);
            let mut module = wasm::setup::module_with(&args.wasm, Some(deadline))?;
            if let Some(view) = cluster.clone() {
                module = module
                    .with_host_calls(Arc::new(move |b: &str, n: &str, o: &str, p: &[u8]| view.answer(b, n, o, p)));
            }
            Some(Arc::new(module))
        }
        EngineChoice::Native => None,
    };
    // Compiling the module (when the cache had none) leaves ~90 MB of Cranelift's scratch
    // memory in the allocator; a server that runs for weeks should not keep it.
    // SAFETY: mi_collect only returns free pages of mimalloc's own heaps to the OS.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let ms = std::time::Duration::from_millis;
    host_runner::serve::run(host_runner::serve::Options {
        rules: args.rules,
        cert,
        key,
        addr: args.addr,
        metrics_addr: args.metrics_addr,
        module,
        cluster,
        fail_closed: args.failure_policy == FailurePolicy::Fail,
        review_timeout: ms(args.review_timeout_ms),
        queue_timeout: ms(args.queue_timeout_ms),
        read_timeout: ms(args.read_timeout_ms),
        idle_timeout: ms(args.idle_timeout_ms),
        max_body_bytes: args.max_body_bytes,
        poll: ms(args.poll_ms),
        shutdown_delay: ms(args.shutdown_delay_ms),
    })?;
    Ok(0)
}

fn rules_command(command: RulesCommand) -> anyhow::Result<String> {
    Ok(match command {
        RulesCommand::PrintDefault => policy_core::DEFAULT_RULES_YAML.to_string(),
        RulesCommand::List => catalog::list(),
        RulesCommand::Docs => catalog::markdown(),
        RulesCommand::WebhookConfig { rules, namespace, service, failure_policy, timeout_seconds } => {
            let (policy, _) = engine::load_policy(rules.as_deref())?;
            host_runner::webhook_config::render(
                &policy,
                &host_runner::webhook_config::Options {
                    name: "meshguard",
                    namespace: &namespace,
                    service: &service,
                    failure_policy: match failure_policy {
                        FailurePolicy::Fail => "Fail",
                        FailurePolicy::Ignore => "Ignore",
                    },
                    timeout_seconds,
                },
            )
        }
        RulesCommand::Export { to, rules } => {
            let (_, doc) = engine::load_policy(rules.as_deref())?;
            let doc = if doc.is_null() {
                policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML)
                    .map_err(|e| anyhow::anyhow!("built-in rule set: {e}"))?
                    .value
            } else {
                doc
            };
            let target = match to {
                ExportTarget::Vap => policy_core::export::Target::Vap,
                ExportTarget::Map => policy_core::export::Target::Map,
            };
            let exported = policy_core::export::export(&doc, target).map_err(|e| engine::RulesError(e.to_string()))?;
            for left in &exported.left {
                eprintln!("meshguard: rule `{}` ({}) is not exported: {}", left.rule, left.check, left.reason);
            }
            for partial in &exported.partial {
                eprintln!(
                    "meshguard: rule `{}` ({}) is exported in part: {}",
                    partial.rule, partial.check, partial.reason
                );
            }
            host_runner::export::yaml_stream(&exported.objects)
        }
        RulesCommand::Explain { check } => catalog::explain(&check)
            .ok_or_else(|| anyhow::anyhow!("unknown check `{check}`; `meshguard rules list` shows them all"))?,
    })
}
