//! The Envoy-native peers of the meshguard filter: `envoy-rbac.yaml` (RBAC + local_ratelimit)
//! and `meshguard.lua` (a Lua filter), both doing `HTTP_RULES`'s checks.

use anyhow::{anyhow, Context, Result};
use meshguard_tests::envoy::Filter;
use serde_json::{json, Value};

pub const RBAC_CONFIG: &str = include_str!("envoy-rbac.yaml");
pub const LUA_FILTER: &str = include_str!("meshguard.lua");

pub fn rbac() -> Result<Filter> {
    let doc = policy_core::yaml::parse_one(RBAC_CONFIG).map_err(|e| anyhow!("envoy-rbac.yaml: {e}"))?.value;
    let http_filters = doc["http_filters"].as_array().cloned().context("envoy-rbac.yaml: http_filters")?;
    let hcm = doc["hcm"].as_object().cloned().unwrap_or_default();
    let bootstrap = doc["bootstrap"].as_object().cloned().unwrap_or_default();
    Ok(Filter::Replace { http_filters, hcm, bootstrap })
}

pub fn lua() -> Filter {
    let filter: Value = json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA_FILTER}
        }
    });
    Filter::Replace { http_filters: vec![filter], hcm: Default::default(), bootstrap: Default::default() }
}
