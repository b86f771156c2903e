//! Request checks the Envoy filter enforces; they decide on the plain [`Request`] model.

use super::{
    compile_regex, parse_params, Applies, CheckSpec, Compiled, HttpCheck, HttpContext, ParamDoc, ParamError, Target,
};
use crate::http::{parse_duration_ms, BucketKey, Request, TokenBucket};
use crate::pattern::{Budget, Pattern};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequireHeaderParams {
    header: String,
    #[serde(default)]
    pattern: Option<String>,
}

struct RequireHeader {
    header: String,
    pattern: Option<Pattern>,
}

pub static REQUIRE_HEADER: CheckSpec = CheckSpec {
    id: "http-require-header",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc("The request carries `header`, and when `pattern` is set its value matches it."),
    params: &[
        ParamDoc {
            name: "header",
            ty: "string",
            default: "required",
            description: super::doc("Header name (case-insensitive)."),
        },
        ParamDoc {
            name: "pattern",
            ty: "regex",
            default: "unset",
            description: super::doc("The value must match (searched; anchor with `^...$`)."),
        },
    ],
    example_params: super::doc("{header: x-request-id, pattern: '^[0-9a-f-]{36}$'}"),
    passing_example: super::doc(
        "{method: GET, path: /orders, headers: {x-request-id: 3f2c9a1e-8d7b-4c61-9f0e-2a5b6c7d8e9f}}",
    ),
    failing_example: super::doc("{method: GET, path: /orders, headers: {x-request-id: abc}}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        let p: RequireHeaderParams = parse_params(params)?;
        let pattern = p.pattern.as_deref().map(|r| compile_regex("pattern", r)).transpose()?;
        Ok(Compiled::Http(Box::new(RequireHeader { header: p.header.to_ascii_lowercase(), pattern })))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for RequireHeader {
    fn evaluate(&self, _: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        Ok(match (ctx.header(0), &self.pattern) {
            (None, _) => Some(format!("missing required header `{}`", self.header)),
            (Some(v), Some(re))
                if !re.is_match(v, &mut Budget::default()).map_err(|e| format!("header `{}`: {e}", self.header))? =>
            {
                Some(format!("header `{}` does not match `{}`", self.header, re.as_str()))
            }
            _ => None,
        })
    }

    fn headers_read(&self) -> Option<Vec<&str>> {
        Some(vec![&self.header])
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyHeaderParams {
    header: String,
    pattern: String,
}

struct DenyHeader {
    header: String,
    pattern: Pattern,
}

pub static DENY_HEADER: CheckSpec = CheckSpec {
    id: "http-deny-header",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc(
        "The request does not carry `header` with a value matching `pattern` (e.g. debug or internal-only headers).",
    ),
    params: &[
        ParamDoc {
            name: "header",
            ty: "string",
            default: "required",
            description: super::doc("Header name (case-insensitive)."),
        },
        ParamDoc {
            name: "pattern",
            ty: "regex",
            default: "required",
            description: super::doc("Values to refuse; `.*` refuses the header outright."),
        },
    ],
    example_params: super::doc("{header: x-debug, pattern: '.*'}"),
    passing_example: super::doc("{method: GET, path: /orders, headers: {accept: application/json}}"),
    failing_example: super::doc("{method: GET, path: /orders, headers: {x-debug: 'true'}}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        let p: DenyHeaderParams = parse_params(params)?;
        Ok(Compiled::Http(Box::new(DenyHeader {
            header: p.header.to_ascii_lowercase(),
            pattern: compile_regex("pattern", &p.pattern)?,
        })))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for DenyHeader {
    fn evaluate(&self, _: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        let Some(value) = ctx.header(0) else { return Ok(None) };
        let forbidden = self
            .pattern
            .is_match(value, &mut Budget::default())
            .map_err(|e| format!("header `{}`: {e}", self.header))?;
        Ok(forbidden
            .then(|| format!("header `{}` has a forbidden value (matches `{}`)", self.header, self.pattern.as_str())))
    }

    fn headers_read(&self) -> Option<Vec<&str>> {
        Some(vec![&self.header])
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HeaderLimitsParams {
    #[serde(default)]
    max_count: Option<usize>,
    #[serde(default)]
    max_value_bytes: Option<usize>,
    #[serde(default)]
    max_total_bytes: Option<usize>,
}

struct HeaderLimits(HeaderLimitsParams);

pub static HEADER_LIMITS: CheckSpec = CheckSpec {
    id: "http-header-limits",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc("Bounds the request headers: how many (`maxCount`), the longest value (`maxValueBytes`) and the total \
              size of names and values (`maxTotalBytes`). Oversized headers are a common way one tenant hurts another's proxies."),
    params: &[
        ParamDoc { name: "maxCount", ty: "integer", default: "unset", description: super::doc("Most headers allowed.") },
        ParamDoc { name: "maxValueBytes", ty: "integer", default: "unset", description: super::doc("Longest header value.") },
        ParamDoc { name: "maxTotalBytes", ty: "integer", default: "unset", description: super::doc("Sum of name and value lengths.") },
    ],
    example_params: super::doc("{maxCount: 3, maxValueBytes: 16}"),
    passing_example: super::doc("{method: GET, path: /, headers: {accept: '*/*'}}"),
    failing_example: super::doc("{method: GET, path: /, headers: {cookie: 'session=0123456789abcdef0123456789'}}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        let p: HeaderLimitsParams = parse_params(params)?;
        if p.max_count.is_none() && p.max_value_bytes.is_none() && p.max_total_bytes.is_none() {
            return Err(ParamError::new("", "set at least one of maxCount, maxValueBytes, maxTotalBytes"));
        }
        Ok(Compiled::Http(Box::new(HeaderLimits(p))))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for HeaderLimits {
    fn evaluate(&self, req: &Request, _: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        let p = &self.0;
        if let Some(max) = p.max_count.filter(|m| req.headers.len() > *m) {
            return Ok(Some(format!("{} headers, more than the limit {max}", req.headers.len())));
        }
        if let Some(max) = p.max_value_bytes {
            if let Some((k, v)) = req.headers.iter().find(|(_, v)| v.len() > max) {
                return Ok(Some(format!("header `{k}` is {} bytes, more than the limit {max}", v.len())));
            }
        }
        if let Some(max) = p.max_total_bytes {
            let total: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > max {
                return Ok(Some(format!("headers total {total} bytes, more than the limit {max}")));
            }
        }
        Ok(None)
    }

    /// Every header: it counts and measures them all.
    fn headers_read(&self) -> Option<Vec<&str>> {
        None
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodsParams {
    paths: Vec<PathMethods>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathMethods {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    methods: Vec<String>,
}

/// How a rule picks request paths: shared by `http-allowed-methods` and a rule's `when`.
#[derive(Debug)]
pub(crate) enum PathMatcher {
    Prefix(String),
    Exact(String),
    Regex(Pattern),
}

impl PathMatcher {
    pub(crate) fn from_fields(
        field: &str,
        prefix: Option<String>,
        exact: Option<String>,
        regex: Option<String>,
    ) -> Result<Option<Self>, ParamError> {
        match (prefix, exact, regex) {
            (None, None, None) => Ok(None),
            (Some(p), None, None) => Ok(Some(PathMatcher::Prefix(p))),
            (None, Some(e), None) => Ok(Some(PathMatcher::Exact(e))),
            (None, None, Some(r)) => Ok(Some(PathMatcher::Regex(compile_regex(field, &r)?))),
            _ => Err(ParamError::new(field, "set only one of prefix, exact, regex")),
        }
    }

    /// `Err` when a regex match would exceed the evaluation budget (the caller's fail mode applies).
    pub(crate) fn matches(&self, path: &str) -> Result<bool, String> {
        match self {
            PathMatcher::Prefix(p) => Ok(path.starts_with(p.as_str())),
            PathMatcher::Exact(e) => Ok(path == e),
            PathMatcher::Regex(r) => r.is_match(path, &mut Budget::default()).map_err(|e| format!("path: {e}")),
        }
    }
}

struct AllowedMethods {
    paths: Vec<(PathMatcher, Vec<String>)>,
}

pub static ALLOWED_METHODS: CheckSpec = CheckSpec {
    id: "http-allowed-methods",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc(
        "Per path (`prefix`, `exact` or `regex`; the first entry that matches applies), only the listed methods \
              are allowed. Paths no entry matches are not restricted.",
    ),
    params: &[ParamDoc {
        name: "paths",
        ty: "list of {prefix | exact | regex, methods}",
        default: "required",
        description: super::doc("Path matchers, each with its allowed methods (upper case)."),
    }],
    example_params: super::doc("{paths: [{prefix: /admin, methods: [GET]}, {prefix: /, methods: [GET, POST]}]}"),
    passing_example: super::doc("{method: POST, path: /orders}"),
    failing_example: super::doc("{method: DELETE, path: /admin/users/7}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        let p: MethodsParams = parse_params(params)?;
        if p.paths.is_empty() {
            return Err(ParamError::new("paths", "must list at least one path"));
        }
        let mut paths = Vec::new();
        for (i, entry) in p.paths.into_iter().enumerate() {
            let field = format!("paths[{i}]");
            let m = PathMatcher::from_fields(&format!("{field}.regex"), entry.prefix, entry.exact, entry.regex)?
                .ok_or_else(|| ParamError::new(&field, "needs one of prefix, exact, regex"))?;
            if entry.methods.is_empty() {
                return Err(ParamError::new(format!("{field}.methods"), "must list at least one method"));
            }
            paths.push((m, entry.methods.iter().map(|m| m.to_ascii_uppercase()).collect()));
        }
        Ok(Compiled::Http(Box::new(AllowedMethods { paths })))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for AllowedMethods {
    fn evaluate(&self, req: &Request, _: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        let path = req.path_only();
        for (matcher, methods) in &self.paths {
            if matcher.matches(path)? {
                return Ok((!methods.iter().any(|m| m.eq_ignore_ascii_case(&req.method))).then(|| {
                    format!("method {} is not allowed on {path} (allowed: {})", req.method, methods.join(", "))
                }));
            }
        }
        Ok(None)
    }

    fn default_status(&self) -> u16 {
        405
    }

    fn headers_read(&self) -> Option<Vec<&str>> {
        Some(vec![])
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantParams {
    #[serde(default = "x_tenant")]
    header: String,
    allowed: Vec<String>,
}

fn x_tenant() -> String {
    "x-tenant".into()
}

struct TenantHeader(TenantParams);

pub static TENANT_HEADER: CheckSpec = CheckSpec {
    id: "http-tenant-header",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc("The request names its tenant in `header`, and the tenant is one of `allowed` (the callers this service accepts)."),
    params: &[
        ParamDoc { name: "header", ty: "string", default: "x-tenant", description: super::doc("Header carrying the tenant.") },
        ParamDoc { name: "allowed", ty: "list of strings", default: "required", description: super::doc("Tenants allowed to call.") },
    ],
    example_params: super::doc("{allowed: [shop, pay]}"),
    passing_example: super::doc("{method: GET, path: /, headers: {x-tenant: shop}}"),
    failing_example: super::doc("{method: GET, path: /, headers: {x-tenant: ads}}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        let mut p: TenantParams = parse_params(params)?;
        if p.allowed.is_empty() {
            return Err(ParamError::new("allowed", "must list at least one tenant"));
        }
        p.header = p.header.to_ascii_lowercase();
        Ok(Compiled::Http(Box::new(TenantHeader(p))))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for TenantHeader {
    fn evaluate(&self, _: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        let h = &self.0.header;
        Ok(match ctx.header(0) {
            None => Some(format!("missing tenant header `{h}`")),
            Some(t) if !self.0.allowed.iter().any(|a| a == t) => {
                Some(format!("tenant `{t}` is not allowed to call this service"))
            }
            Some(_) => None,
        })
    }

    fn headers_read(&self) -> Option<Vec<&str>> {
        Some(vec![&self.0.header])
    }
}

// ---------------------------------------------------------------------------------------------

struct GrpcShape;

pub static GRPC_SHAPE: CheckSpec = CheckSpec {
    id: "http-grpc-shape",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc("gRPC requests (`content-type: application/grpc*`) are POST with `te: trailers`, as the gRPC over HTTP/2 spec requires; \
              anything else is a broken or spoofed client."),
    params: &[],
    example_params: super::doc("{}"),
    passing_example: super::doc("{method: POST, path: /shop.Orders/Get, headers: {content-type: application/grpc, te: trailers}}"),
    failing_example: super::doc("{method: GET, path: /shop.Orders/Get, headers: {content-type: application/grpc}}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        parse_params::<super::EmptyParams>(params)?;
        Ok(Compiled::Http(Box::new(GrpcShape)))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for GrpcShape {
    fn evaluate(&self, req: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        if !ctx.header(0).is_some_and(crate::http::is_grpc_content_type) {
            return Ok(None);
        }
        if !req.method.eq_ignore_ascii_case("POST") {
            return Ok(Some(format!("gRPC request with method {}; gRPC requires POST", req.method)));
        }
        if ctx.header(1) != Some("trailers") {
            return Ok(Some("gRPC request without `te: trailers`".into()));
        }
        Ok(None)
    }

    fn headers_read(&self) -> Option<Vec<&str>> {
        Some(vec!["content-type", "te"])
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RateLimitParams {
    #[serde(default = "global")]
    key: String,
    token_bucket: BucketParams,
}

fn global() -> String {
    "global".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BucketParams {
    max_tokens: u32,
    #[serde(default)]
    tokens_per_fill: Option<u32>,
    fill_interval: String,
}

enum RateKey {
    Global,
    Path,
    Header(String),
}

struct LocalRateLimit {
    key: RateKey,
    bucket: TokenBucket,
}

pub static LOCAL_RATE_LIMIT: CheckSpec = CheckSpec {
    id: "http-local-rate-limit",
    target: Target::Http,
    applies_to: Applies::Any,
    summary: super::doc("A token bucket per key (`global`, `path`, or `header:<name>`), as Envoy's local_ratelimit filter: \
              `maxTokens`, refilled by `tokensPerFill` (default 1) every `fillInterval`. One proxy's buckets are shared \
              by all its worker threads, which lease tokens in batches (1/64 of `maxTokens`, at most 1024; buckets under \
              128 tokens one at a time, exactly): within one interval a key may admit up to workers x lease more than \
              `maxTokens`. Denies with 429 (gRPC: RESOURCE_EXHAUSTED)."),
    params: &[
        ParamDoc { name: "key", ty: "global | path | header:<name>", default: "global", description: super::doc("What gets its own bucket.") },
        ParamDoc { name: "tokenBucket.maxTokens", ty: "integer", default: "required", description: super::doc("Burst size.") },
        ParamDoc { name: "tokenBucket.tokensPerFill", ty: "integer", default: "1", description: super::doc("Tokens added per interval.") },
        ParamDoc { name: "tokenBucket.fillInterval", ty: "duration", default: "required", description: super::doc("`500ms`, `1s`, `1m`...") },
    ],
    example_params: super::doc("{key: 'header:x-tenant', tokenBucket: {maxTokens: 0, fillInterval: 1s}}"),
    passing_example: super::doc("{method: GET, path: /healthz}"),
    failing_example: super::doc("{method: GET, path: /, headers: {x-tenant: shop}}"),
    fix: crate::checks::doc("None: a request is answered in the proxy, not edited in a file."),
    fix_scope: &[],
    compile: |params| {
        let p: RateLimitParams = parse_params(params)?;
        let key = match p.key.as_str() {
            "global" => RateKey::Global,
            "path" => RateKey::Path,
            other => match other.strip_prefix("header:") {
                Some(h) if !h.is_empty() => RateKey::Header(h.to_ascii_lowercase()),
                _ => return Err(ParamError::new("key", format!("`{other}` is not `global`, `path` or `header:<name>`"))),
            },
        };
        let fill_interval_ms = parse_duration_ms(&p.token_bucket.fill_interval).map_err(|e| ParamError::new("tokenBucket.fillInterval", e))?;
        if fill_interval_ms == 0 {
            return Err(ParamError::new("tokenBucket.fillInterval", "must be longer than 0"));
        }
        let tokens_per_fill = p.token_bucket.tokens_per_fill.unwrap_or(1);
        let bucket = TokenBucket { max_tokens: p.token_bucket.max_tokens, tokens_per_fill, fill_interval_ms };
        Ok(Compiled::Http(Box::new(LocalRateLimit { key, bucket })))
    },
    native: crate::checks::Native::Envoy,
};

impl HttpCheck for LocalRateLimit {
    fn evaluate(&self, req: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String> {
        let value = match &self.key {
            RateKey::Global => "",
            RateKey::Path => req.path_only(),
            // Requests without the header are not this bucket's business.
            RateKey::Header(_) => match ctx.header(0) {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let key = BucketKey { rule: ctx.rule_id, value };
        let allowed = ctx.buckets.take(key, &self.bucket, &mut *ctx.clock)?;
        Ok((!allowed).then(|| "rate limit exceeded".to_string()))
    }

    fn default_status(&self) -> u16 {
        429
    }

    fn headers_read(&self) -> Option<Vec<&str>> {
        Some(match &self.key {
            RateKey::Header(h) => vec![h],
            RateKey::Global | RateKey::Path => vec![],
        })
    }
}
