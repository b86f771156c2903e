//! `meshguard`: the CLI over policy-core. Thin by design: parse args, call a command, exit.

use clap::Parser;
use host_runner::cli::{Cli, ColorChoice, Command, EngineChoice, FailOn, FailurePolicy, RulesCommand, WasmArgs};
use host_runner::printable::printable;
use host_runner::{catalog, check, report, wasm};
use policy_core::Action;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

// Reading a big manifest repo allocates millions of small values from two threads; glibc's
// allocator spent a fifth of `check`'s time growing arenas (page faults, mprotect) there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = if e.downcast_ref::<check::RulesError>().is_some() {
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
        Command::Check(args) => {
            let (policy, rules_doc) = check::load_policy_with(args.rules.as_deref(), &args.policies)?;
            let reviewer = match args.engine {
                EngineChoice::Native => check::Reviewer::Native(policy),
                EngineChoice::Wasm => check::Reviewer::Wasm {
                    module: std::sync::Arc::new(wasm_module(&args.wasm)?),
                    rules: rules_doc,
                    policy,
                },
            };
            let fail_on = match args.fail_on {
                FailOn::Deny => Action::Deny,
                FailOn::Warn => Action::Warn,
            };
            let mut report = check::run(&reviewer, &args.paths, &args.namespace, fail_on)?;
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
        Command::Replay { rules, requests, wasm: args } => {
            let config = match &rules {
                Some(path) => {
                    // Validate here first, for errors with the file's line numbers.
                    check::load_policy(Some(path))?;
                    std::fs::read(path)?
                }
                None => policy_core::DEFAULT_RULES_YAML.as_bytes().to_vec(),
            };
            let bytes = wasm::filter_bytes(args.module.as_deref())?;
            let limits = wasm_limits(&args, None);
            let engine = wasm::engine(&limits)?;
            let cache = if args.no_cache { None } else { args.cache_dir.clone().or_else(wasm::default_cache_dir) };
            let (module, _) = wasm::compile_cached(&engine, &bytes, cache.as_deref())?;
            let mut filter = wasm::proxy::ProxyFilter::new(&engine, &module, &config, limits)?;
            let stdout = std::io::stdout();
            let summary = host_runner::replay::run(&mut filter, &requests, &mut stdout.lock())?;
            Ok(u8::from(summary.unexpected > 0))
        }
        Command::Test { dir, engine, wasm } => {
            // One compiled module for every suite; each suite brings its own rule set.
            let module = match engine {
                EngineChoice::Wasm => Some(std::sync::Arc::new(wasm_module(&wasm)?)),
                EngineChoice::Native => None,
            };
            let make = |policy, rules| -> anyhow::Result<check::Reviewer> {
                Ok(match &module {
                    Some(m) => check::Reviewer::Wasm { module: m.clone(), rules, policy },
                    None => check::Reviewer::Native(policy),
                })
            };
            let outcomes = host_runner::suite::run(&dir, &make)?;
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
        Command::CompileForServe { wasm: args } => {
            let bytes = wasm::module_bytes(args.module.as_deref())?;
            // The server's engine: its deadlines trap.
            let limits = wasm::Limits { on_deadline: wasm::OnDeadline::Trap, ..wasm_limits(&args, None) };
            let engine = wasm::server_engine(&limits)?;
            let cache = args.cache_dir.clone().or_else(wasm::default_cache_dir);
            wasm::compile_cached(&engine, &bytes, cache.as_deref())?;
            Ok(0)
        }
        Command::Serve(args) => {
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
                Some(std::sync::Arc::new(host_runner::serve::cluster::ClusterSnapshot::load(&args.cluster)?))
            };
            let module = match args.engine {
                EngineChoice::Wasm => {
                    let mut module =
                        wasm_module_with(&args.wasm, Some(std::time::Duration::from_millis(args.review_timeout_ms)))?;
                    if let Some(view) = cluster.clone() {
                        module =
                            module.with_host_calls(std::sync::Arc::new(move |b: &str, n: &str, o: &str, p: &[u8]| {
                                view.answer(b, n, o, p)
                            }));
                    }
                    Some(std::sync::Arc::new(module))
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
                read_timeout: ms(args.read_timeout_ms),
                max_body_bytes: args.max_body_bytes,
                poll: ms(args.poll_ms),
                shutdown_delay: ms(args.shutdown_delay_ms),
            })?;
            Ok(0)
        }
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
        Command::Rules { command } => {
            let text = match command {
                RulesCommand::PrintDefault => policy_core::DEFAULT_RULES_YAML.to_string(),
                RulesCommand::List => catalog::list(),
                RulesCommand::Docs => catalog::markdown(),
                RulesCommand::WebhookConfig { rules, namespace, service, failure_policy, timeout_seconds } => {
                    let (policy, _) = check::load_policy(rules.as_deref())?;
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
                RulesCommand::Explain { check } => catalog::explain(&check)
                    .ok_or_else(|| anyhow::anyhow!("unknown check `{check}`; `meshguard rules list` shows them all"))?,
            };
            print!("{text}");
            Ok(0)
        }
    }
}

/// The Kubewarden module, compiled once (or loaded from the on-disk cache) and linked once.
fn wasm_module(args: &WasmArgs) -> anyhow::Result<wasm::WapcModule> {
    wasm_module_with(args, None)
}

/// What bounds each wasm call: the module's limits from the command line, and for the webhook
/// also its review deadline (the shorter of the two holds).
fn wasm_limits(args: &WasmArgs, review_deadline: Option<std::time::Duration>) -> wasm::Limits {
    let call = std::time::Duration::from_millis(args.call_timeout_ms);
    wasm::Limits {
        fuel: args.fuel,
        max_memory_bytes: (args.max_memory_mb as usize) << 20,
        deadline: review_deadline.map_or(call, |review| review.min(call)),
        // The server answers the next review; a one-shot command has failed when a call runs long.
        on_deadline: if review_deadline.is_some() { wasm::OnDeadline::Trap } else { wasm::OnDeadline::Exit },
    }
}

/// [`wasm_module`], each call also bounded by `deadline` of wall-clock time (the webhook).
fn wasm_module_with(args: &WasmArgs, deadline: Option<std::time::Duration>) -> anyhow::Result<wasm::WapcModule> {
    let bytes = wasm::module_bytes(args.module.as_deref())?;
    let limits = wasm_limits(args, deadline);
    let engine = match limits.on_deadline {
        wasm::OnDeadline::Trap => wasm::server_engine(&limits)?,
        wasm::OnDeadline::Exit => wasm::engine(&limits)?,
    };
    let cache = if args.no_cache { None } else { args.cache_dir.clone().or_else(wasm::default_cache_dir) };
    let compile_here = |child_compiled: bool| -> anyhow::Result<(wasmtime::Module, &'static str)> {
        let (module, cached) = wasm::compile_cached(&engine, &bytes, cache.as_deref())?;
        Ok((
            module,
            match (cached, child_compiled) {
                (true, _) => "the cache",
                (false, true) => "compiled in this process (the cache could not be written)",
                (false, false) => "compiled in this process",
            },
        ))
    };
    let (module, source) = match (deadline, &cache) {
        // The server: a cache miss is compiled by a child process, then loaded from the cache.
        (Some(_), Some(dir)) => match wasm::load_cached(&engine, &bytes, Some(dir)) {
            Some(module) => (module, "the cache"),
            None => {
                let child_compiled = compile_in_child(args, dir);
                match child_compiled.then(|| wasm::load_cached(&engine, &bytes, Some(dir))).flatten() {
                    Some(module) => (module, "compiled by a child process into the cache"),
                    None => compile_here(child_compiled)?,
                }
            }
        },
        _ => compile_here(false)?,
    };
    if deadline.is_some() {
        host_runner::serve::log("info", "module loaded", serde_json::json!({"from": source}));
    }
    wasm::WapcModule::new(&engine, &module, limits)
}

/// Compiles the module for `serve` into `cache` in a child process (`compile-for-serve`): the
/// compiler's scratch memory stays in this process's heap after a compile (measured: 62 MB at
/// rest after compiling the speed-built module, 20 MB loading it from the cache), and a webhook
/// runs for weeks. When the child cannot write the cache, the caller compiles in process.
/// Whether the child finished without an error.
fn compile_in_child(args: &WasmArgs, cache: &std::path::Path) -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    let mut child = std::process::Command::new(exe);
    child.arg("compile-for-serve").arg("--cache-dir").arg(cache);
    // Metering changes the compiled code: the child compiles for the engine that will load it.
    if let Some(fuel) = args.fuel {
        child.arg("--fuel").arg(fuel.to_string());
    }
    if let Some(module) = &args.module {
        child.arg("--module").arg(module);
    }
    let why = match child.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).status() {
        Ok(status) if status.success() => return true,
        Ok(status) => format!("it ended with {status}"),
        Err(e) => format!("it could not start: {e}"),
    };
    let fields = serde_json::json!({"error": why, "cache": cache.display().to_string()});
    host_runner::serve::log(
        "warn",
        "compiling the module in a child process failed; compiling in this process",
        fields,
    );
    false
}
