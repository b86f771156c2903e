//! Command-line interface: what each command takes, and the help that teaches it.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "meshguard",
    version,
    about = "Service-mesh guardrails: one rule set, enforced in CI, at admission and inside Envoy",
    long_about = "meshguard checks Kubernetes and Istio manifests against a rule set of Istio guardrails \
                  (port naming, sidecar start and stop order, namespace isolation of traffic rules, ...).\n\n\
                  Without --rules it uses the built-in default rule set (see `meshguard rules print-default`).",
    after_help = "Exit codes: 0 nothing fails, 1 a finding fails the check, 2 usage or input error.\n\n\
                  Examples:\n  meshguard check manifests/\n  kustomize build overlays/prod | meshguard check -\n  \
                  meshguard check --rules team-rules.yaml --format json --fail-on warn k8s/\n  meshguard rules list"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check manifests (files, directories, or - for stdin) against a rule set
    #[command(after_help = "Directories are searched recursively for *.yaml, *.yml and *.json (hidden directories \
                            are skipped, symlinks followed, a file reached twice read once). Multi-document YAML \
                            and `kind: List` are expanded. Documents without apiVersion and kind (e.g. Helm \
                            values) are skipped.\n\n\
                            Limits: regular UTF-8 files only, 32 MiB per file or stdin, 100 levels of nesting, \
                            1,000,000 nodes copied by YAML aliases; a regex too costly for a value fails closed.\n\n\
                            Your own rules: `check: cel` rules in --rules, and ValidatingAdmissionPolicy objects \
                            with their bindings and param objects in --policies, e.g.\n  \
                            meshguard check --policies examples/policies examples/manifests-fixed\n\n\
                            Exit codes: 0 nothing fails, 1 a finding fails the check, 2 usage or input error \
                            (malformed YAML, an invalid rule set, no objects at all; the other files are still checked).")]
    Check(CheckArgs),
    /// Fix what has one right fix, in the files themselves (a diff by default; --write to change them)
    #[command(after_help = "Reviews PATHs as `check` does; every finding whose check has one right remedy \
                            (see `meshguard rules docs`, \"Fix\") becomes an RFC 6902 JSON Patch against its \
                            object, written into the file at the place it belongs: untouched lines stay byte for \
                            byte (comments, key order, quoting, CRLF, a missing final newline); new keys go \
                            under their siblings at their indentation. Each edit is read back and must give \
                            exactly the patched object, or the file is left as it was. Files with anchors, \
                            aliases, merge keys, templates or tabs, or YAML flow mappings to rewrite, are not \
                            edited: they are listed with the reason and the patch. JSON files stay JSON. A fix \
                            that makes another possible (a preStop sleep, then a drain duration matching it) \
                            is followed up, up to 4 rounds.\n\n\
                            In CI, fail a pull request with the diff:\n  meshguard fix examples/manifests\n\
                            Or commit what a bot fixed:\n  meshguard fix --write . && git commit -am 'meshguard fix'\n\
                            In a pipeline:\n  kustomize build | meshguard fix - | kubectl apply -f -\n\n\
                            Exit codes: without --write, 0 nothing to fix, 1 a fix is printed; with --write (or \
                            -), 0 written; 2 usage or input error. Findings without a fix are listed on stderr \
                            with why, and do not change the exit code: `meshguard check` judges them.")]
    Fix(FixArgs),
    /// Replay recorded requests (JSON Lines) through the Envoy filter artifact, without Envoy
    #[command(
        after_help = "Each line: {\"method\": \"GET\", \"path\": \"/api\", \"authority\": \"api.shop\", \"headers\": {\"x-tenant\": \"shop\"},\n\
                            \"at_ms\": 1000, \"expect\": \"allow\" | \"deny\" | {\"decision\": \"deny\", \"rule\": \"tenant\", \"status\": 403}}\n\
                            (`authority`, `headers`, `at_ms` and `expect` are optional; `at_ms` drives rate-limit refills).\n\n\
                            Exit codes: 0 every request as expected, 1 a request contradicted its `expect`, 2 usage or input error."
    )]
    Replay {
        /// RuleSet file given to the filter as its plugin configuration (default: the built-in rule set)
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Requests file (JSON Lines), or - for stdin
        requests: PathBuf,
        #[command(flatten)]
        wasm: WasmArgs,
    },
    /// Run policy test suites: every meshguard-test.yaml under DIR
    #[command(after_help = "A suite file names a rule set (`rules: rules.yaml`, default built-in), optionally \
                            ValidatingAdmissionPolicy files (`policies: [vaps/]`), and cases:\n\
                            \n  cases:\n  - name: unnamed port is denied\n    resources: [service.yaml]\n    expect: {rules: [istio-port-name]}\n\
                            - name: fixed service passes\n    resources: [service-fixed.yaml]\n    expect: {allow: true}\n\
                            - name: request without tenant\n    request: {method: GET, path: /api}\n    expect: {deny: tenant}\n\n\
                            Exit codes: 0 all passed, 1 a case failed, 2 a suite could not be read.")]
    Test {
        /// Directory (searched recursively) or one suite file
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = EngineChoice::Wasm)]
        engine: EngineChoice,
        #[command(flatten)]
        wasm: WasmArgs,
    },
    /// Run the validating admission webhook (AdmissionReview over HTTPS on /validate)
    #[command(after_help = "Examples:\n  meshguard certs --out certs --dns-name meshguard.meshguard.svc\n  \
                            meshguard serve --tls-cert certs/tls.crt --tls-key certs/tls.key --rules rules.yaml\n  \
                            meshguard serve --self-signed ./trial-certs   # for a trial\n\n\
                            The certificate, key and rule set are re-read when their files change (the rule set \
                            also on SIGHUP); one that does not load is logged and counted, and the last good one \
                            keeps serving. SIGTERM: /readyz turns 503, requests are still answered for \
                            --shutdown-delay-ms, then in-flight ones finish and the process exits 0.\n\n\
                            Exit codes: 0 after a clean shutdown, 2 when it cannot start (an invalid rule set \
                            names the rule and field, so a bad rollout never replaces healthy pods).")]
    Serve(ServeArgs),
    /// Compile the module `serve` runs into the cache, in a process of its own (`serve` starts it)
    #[command(name = "compile-for-serve", hide = true)]
    CompileForServe {
        #[command(flatten)]
        wasm: WasmArgs,
    },
    /// Make a CA and a serving certificate for the webhook (for trials; use cert-manager in production)
    Certs {
        /// Directory for ca.crt, tls.crt and tls.key
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// DNS names of the webhook's Service (repeat for several)
        #[arg(long = "dns-name", value_name = "NAME", default_values_t = default_dns_names())]
        dns_names: Vec<String>,
    },
    /// Push a Kubewarden policy module or an image (OCI layout) to an OCI registry
    #[command(after_help = "ARTIFACT is a policy module (.wasm with Kubewarden metadata, as scripts/build-wasm.sh \
                            writes them) or an OCI image layout (DIR or DIR:TAG, as scripts/build-image.sh writes \
                            them). A module goes up as Kubewarden's policy fetcher pulls it (`registry://` in a \
                            policy's `module`): config application/vnd.wasm.config.v1+json, one \
                            application/vnd.wasm.content.layer.v1+wasm layer, the metadata's annotations on the \
                            manifest. An image goes up byte for byte, so its digest is the layout's.\n\n\
                            Prints REFERENCE@DIGEST; pin deployments to that digest. Registries on loopback \
                            (localhost, 127.0.0.1, [::1]) are spoken to over plain HTTP, as container tools do; \
                            --plain-http does so for others. Credentials: MESHGUARD_REGISTRY_USERNAME and \
                            MESHGUARD_REGISTRY_PASSWORD, else the registry's entry in $REGISTRY_AUTH_FILE, \
                            $XDG_RUNTIME_DIR/containers/auth.json (podman/skopeo login), $DOCKER_CONFIG/config.json \
                            or ~/.docker/config.json (docker login; credential helpers are not run), else none.\n\n\
                            Exit codes: 0 pushed, 2 the artifact is invalid or the registry refused it.\n\n\
                            Examples:\n  meshguard push dist/meshguard-kubewarden.wasm ghcr.io/acme/policies/meshguard:0.1.0\n  \
                            meshguard push target/image/meshguard:0.1.0 127.0.0.1:5000/meshguard/meshguard:0.1.0\n\n\
                            scripts/publish.sh REGISTRY/PREFIX pushes every artifact of a release this way.")]
    Push(PushArgs),
    /// Show the built-in checks and the default rule set
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Files or directories to check; `-` reads a YAML stream from stdin
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Rule set file (YAML or JSON, `kind: RuleSet`); defaults to the built-in rule set
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// ValidatingAdmissionPolicy and MutatingAdmissionPolicy objects to run too: files or
    /// directories holding policies, their bindings and param objects (admissionregistration.k8s.io
    /// v1; MAPs also v1beta1/v1alpha1); repeatable. MAPs mutate the objects first, as the API
    /// server orders them. Param objects may also be among the checked files
    #[arg(long, value_name = "PATH")]
    pub policies: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Lowest action that makes the exit code 1 (`audit` findings never fail)
    #[arg(long, value_enum, default_value_t = FailOn::Deny)]
    pub fail_on: FailOn,
    /// Exit 0 when the input holds no Kubernetes objects (by default that is an input error, exit 2,
    /// so a failed `kustomize build | meshguard check -` does not pass)
    #[arg(long)]
    pub allow_empty: bool,
    /// Namespace assumed for namespaced objects without metadata.namespace (as kubectl does)
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// When to color text output
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Who decides: the deployed Kubewarden wasm module in an embedded wasmtime host (the very
    /// artifact admission runs), or policy-core compiled into this binary. Same output either way.
    #[arg(long, value_enum, default_value_t = EngineChoice::Wasm)]
    pub engine: EngineChoice,
    #[command(flatten)]
    pub wasm: WasmArgs,
}

#[derive(clap::Args, Debug)]
pub struct FixArgs {
    /// Files or directories to fix; `-` reads a YAML stream from stdin and writes the fixed stream to stdout
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Change the files (each written whole through a temporary file and a rename, its mode kept)
    #[arg(long)]
    pub write: bool,
    /// Rule set file (YAML or JSON, `kind: RuleSet`); defaults to the built-in rule set
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Fix only these rules (comma-separated ids; a MutatingAdmissionPolicy binding is
    /// `policy/binding`)
    #[arg(long, value_name = "RULE,...", value_delimiter = ',')]
    pub only: Vec<String>,
    /// MutatingAdmissionPolicy objects (with their bindings and params) whose changes are written
    /// into the files too, before the rules' fixes: what the cluster would mutate shows in Git.
    /// ValidatingAdmissionPolicies there are run as in `check`
    #[arg(long, value_name = "PATH")]
    pub policies: Vec<PathBuf>,
    /// `diff`: a unified diff (as `git diff` names files); `json`: the patches per object and what
    /// was left, for bots
    #[arg(long, value_enum, default_value_t = FixFormat::Diff)]
    pub format: FixFormat,
    /// Namespace assumed for namespaced objects without metadata.namespace (as kubectl does)
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Who decides: the Kubewarden wasm module in an embedded wasmtime host, or policy-core
    /// compiled into this binary. The same fixes either way.
    #[arg(long, value_enum, default_value_t = EngineChoice::Wasm)]
    pub engine: EngineChoice,
    #[command(flatten)]
    pub wasm: WasmArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixFormat {
    Diff,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// A policy module (FILE.wasm) or an OCI image layout (DIR or DIR:TAG)
    #[arg(value_name = "ARTIFACT")]
    pub artifact: String,
    /// Where to: REGISTRY/REPOSITORY:TAG
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// Speak plain HTTP to the registry (loopback registries always are)
    #[arg(long)]
    pub plain_http: bool,
}

pub fn default_dns_names() -> Vec<String> {
    ["meshguard", "meshguard.meshguard", "meshguard.meshguard.svc", "localhost"].map(String::from).to_vec()
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Rule set file (default: the built-in rule set); re-read when it changes and on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Serving certificate chain (PEM); re-read when it changes
    #[arg(long, value_name = "FILE", required_unless_present = "self_signed", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the certificate (PEM); re-read when it changes
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Make a CA and serving certificate in DIR (see `meshguard certs`) and serve with them
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub self_signed: Option<PathBuf>,
    /// DNS names for --self-signed
    #[arg(long = "dns-name", value_name = "NAME", default_values_t = default_dns_names())]
    pub dns_names: Vec<String>,
    /// HTTPS address for /validate, /healthz and /readyz
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub addr: std::net::SocketAddr,
    /// Plain-HTTP address for Prometheus metrics (GET /metrics)
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: std::net::SocketAddr,
    /// Who decides (same answers either way)
    #[arg(long, value_enum, default_value_t = EngineChoice::Wasm)]
    pub engine: EngineChoice,
    /// Manifests standing for what is already in the cluster (files or directories, repeatable):
    /// cross-object rules compare each request's object with them, as CI does over a repo.
    /// Without it those rules decide on the request alone and are listed in the
    /// `without-context` audit annotation
    #[arg(long = "cluster", value_name = "PATH")]
    pub cluster: Vec<PathBuf>,
    /// When a request cannot be evaluated in time or the engine fails: refuse it (fail) or allow it
    /// with a warning (ignore). Match the ValidatingWebhookConfiguration's failurePolicy.
    #[arg(long, value_enum, default_value_t = FailurePolicy::Fail)]
    pub failure_policy: FailurePolicy,
    /// Deadline for one review, in milliseconds (keep it under the webhook's timeoutSeconds)
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub review_timeout_ms: u64,
    /// How long a review may wait for a free evaluation slot (one per core) before the failure
    /// policy answers it; the review deadline starts only when its evaluation does
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    pub queue_timeout_ms: u64,
    /// Deadline for a client to send its headers and body, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub read_timeout_ms: u64,
    /// Close a connection after this many milliseconds without a byte in either direction (after
    /// the TLS handshake, before a first request, between requests)
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Largest request body, in bytes (the API server sends objects up to about 3 MiB)
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// How often the certificate and rule-set files are checked for changes, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub poll_ms: u64,
    /// After SIGTERM, how long to keep answering while /readyz reports 503, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub shutdown_delay_ms: u64,
    #[command(flatten)]
    pub wasm: WasmArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

#[derive(clap::Args, Debug, Clone)]
pub struct WasmArgs {
    /// Wasm module to run (default: the module embedded at build time: the Kubewarden policy, or for
    /// `replay` the Envoy filter)
    #[arg(long, value_name = "FILE")]
    pub module: Option<PathBuf>,
    /// Wall-clock bound per wasm call, in milliseconds: stops a module that loops forever
    /// (`serve` also stops each review at --review-timeout-ms)
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub call_timeout_ms: u64,
    /// Also meter fuel, about one unit per wasm instruction: a bound that stops a call at the same
    /// instruction on every machine, where the timeout depends on the machine's speed. Off by
    /// default: metering is compiled into the module and slows every call
    #[arg(long, value_name = "UNITS")]
    pub fuel: Option<u64>,
    /// Largest memory a wasm module may use, in MiB (1 to 4096, what a 32-bit wasm memory can address)
    #[arg(long, value_name = "MIB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_memory_mb: u64,
    /// Directory for compiled modules (default: $MESHGUARD_CACHE_DIR, $XDG_CACHE_HOME/meshguard or
    /// ~/.cache/meshguard). A file there runs only if its HMAC verifies under this user's key
    /// (~/.config/meshguard/cache-key, or $MESHGUARD_CACHE_KEY to share a cache on purpose)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-module cache
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Wasm,
    Native,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Print the built-in default rule set (a starting point for your own)
    PrintDefault,
    /// List the built-in checks and what each enforces
    List,
    /// Explain one check: params, defaults and examples
    Explain {
        /// Check id, e.g. istio-port-name
        check: String,
    },
    /// Print the check catalog as Markdown (docs/checks.md is generated from it)
    Docs,
    /// Print the rule set as objects the API server enforces itself, without the webhook:
    /// ValidatingAdmissionPolicies for its decisions (`--to vap`), MutatingAdmissionPolicies for the
    /// fixes of its mutating rules (`--to map`); rules left out are named on stderr with why
    #[command(after_help = "Examples:\n  meshguard rules export --to vap > policies.yaml\n  \
        meshguard rules print-default | meshguard rules export --to vap --rules - | kubectl apply -f -\n  \
        meshguard rules export --to map --rules rules.yaml > mutations.yaml\n\n\
        Each rule becomes a policy named after its id (and `<id>-advisory` for findings that only ever warn),\n\
        with params inlined into its CEL; `action` is the binding's validationActions and each actionOverride\n\
        one more binding selecting its namespaces by name. With `--to map`, each rule set to mutate becomes a\n\
        MutatingAdmissionPolicy whose JSONPatch makes the fixes `meshguard fix` makes, bound to the namespaces\n\
        where the rule mutates; apply it beside the VAPs. Exit status: 0 exported, 2 the rule set does not load.")]
    Export {
        /// What to export to: `vap` or `map` (admissionregistration.k8s.io/v1)
        #[arg(long, value_enum)]
        to: ExportTarget,
        /// Rule set file, `-` for stdin (default: the built-in rule set)
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
    },
    /// Print the ValidatingWebhookConfiguration for `meshguard serve` whose rules cover exactly the
    /// kinds the rule set can flag (so other writes never wait on the webhook), and the
    /// MutatingWebhookConfiguration for `/mutate` when some rule has `mutate: true`
    WebhookConfig {
        /// Rule set file (default: the built-in rule set)
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Namespace of the webhook's Service
        #[arg(long, default_value = "meshguard")]
        namespace: String,
        /// Name of the webhook's Service
        #[arg(long, default_value = "meshguard")]
        service: String,
        /// What the API server does when the webhook cannot answer (start with Ignore)
        #[arg(long, value_enum, default_value_t = FailurePolicy::Ignore)]
        failure_policy: FailurePolicy,
        /// Seconds the API server waits for an answer (1 to 30)
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=30))]
        timeout_seconds: u8,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportTarget {
    /// ValidatingAdmissionPolicy and its bindings
    Vap,
    /// MutatingAdmissionPolicy and its bindings, for the rules set to mutate
    Map,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Findings grouped by file, for people and CI logs
    Text,
    /// One JSON document: findings, errors and a summary
    Json,
    /// SARIF 2.1.0, for GitHub code scanning annotations on the exact line
    Sarif,
    /// JUnit XML: one testcase per object and rule
    Junit,
    /// wgpolicyk8s.io/v1alpha2 PolicyReports (one per namespace) and a ClusterPolicyReport, as a List
    Policyreport,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    Deny,
    Warn,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}
