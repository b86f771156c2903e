//! `meshguard-cel.yaml` in cel-interpreter, evaluated the way a ValidatingAdmissionPolicy is:
//! one object at a time, variables in order, then each rule's match condition and validations.

use super::PeerFinding;
use anyhow::{anyhow, bail, Context as _, Result};
use cel_interpreter::extractors::This;
use cel_interpreter::objects::{Key, Map};
use cel_interpreter::{Context, ExecutionError, FunctionContext, Program, Value as Cel};
use serde::Deserialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub const CEL_POLICY: &str = include_str!("meshguard-cel.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    variables: Vec<NamedExpression>,
    rules: Vec<RuleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedExpression {
    name: String,
    expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    id: String,
    action: String,
    #[serde(rename = "match")]
    match_condition: String,
    validations: Vec<ValidationDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidationDoc {
    #[serde(default)]
    action: Option<String>,
    expression: String,
}

struct Rule {
    id: String,
    matches: Program,
    validations: Vec<(String, Program)>,
}

/// The CEL rule set, compiled once.
pub struct CelPeer {
    root: Context<'static>,
    variables: Vec<(String, Program)>,
    rules: Vec<Rule>,
}

fn compile(what: &str, source: &str) -> Result<Program> {
    Program::compile(source).map_err(|e| anyhow!("meshguard-cel.yaml: {what}: {e}"))
}

thread_local! {
    // cel-go (what Kubernetes runs) compiles constant regexes once, at policy compile time;
    // cel-interpreter's built-in `matches` compiles on every call. Caching here keeps the
    // comparison about evaluation, not about that one missing optimisation.
    static REGEXES: RefCell<HashMap<String, regex::Regex>> = RefCell::new(HashMap::new());
}

fn with_regex<T>(
    ftx: &FunctionContext,
    pattern: &str,
    f: impl FnOnce(&regex::Regex) -> T,
) -> Result<T, ExecutionError> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            let re =
                regex::Regex::new(pattern).map_err(|e| ftx.error(format!("'{pattern}' is not a valid regex: {e}")))?;
            cache.insert(pattern.to_string(), re);
        }
        Ok(f(&cache[pattern]))
    })
}

/// The Kubernetes CEL library functions the rules use (strings and regex extensions).
fn kubernetes_functions(ctx: &mut Context<'static>) {
    ctx.add_function("lowerAscii", |This(s): This<Arc<String>>| s.to_ascii_lowercase());
    ctx.add_function("split", |This(s): This<Arc<String>>, sep: Arc<String>| -> Result<Cel, ExecutionError> {
        Ok(Cel::List(Arc::new(s.split(sep.as_str()).map(|p| Cel::String(Arc::new(p.to_string()))).collect())))
    });
    ctx.add_function("join", |This(items): This<Arc<Vec<Cel>>>, sep: Arc<String>| {
        let parts: Vec<&str> = items
            .iter()
            .filter_map(|v| match v {
                Cel::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        parts.join(sep.as_str())
    });
    ctx.add_function("indexOf", |This(s): This<Arc<String>>, needle: Arc<String>| {
        s.find(needle.as_str()).map_or(-1, |i| s[..i].chars().count() as i64)
    });
    ctx.add_function("matches", |ftx: &FunctionContext, This(s): This<Arc<String>>, re: Arc<String>| {
        with_regex(ftx, &re, |r| r.is_match(&s))
    });
    ctx.add_function("findAll", |ftx: &FunctionContext, This(s): This<Arc<String>>, re: Arc<String>| {
        with_regex(ftx, &re, |r| {
            Cel::List(Arc::new(r.find_iter(&s).map(|m| Cel::String(Arc::new(m.as_str().to_string()))).collect()))
        })
    });
}

/// JSON as Kubernetes' CEL sees it: integers are `int`.
pub fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => n.as_i64().map_or_else(|| Cel::Float(n.as_f64().unwrap_or(f64::NAN)), Cel::Int),
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(m) => Cel::Map(Map {
            map: Arc::new(m.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect()),
        }),
    }
}

fn as_bool(what: &str, v: Result<Cel, ExecutionError>) -> Result<bool> {
    match v {
        Ok(Cel::Bool(b)) => Ok(b),
        Ok(other) => bail!("{what}: expected a bool, got {other:?}"),
        Err(e) => bail!("{what}: {e}"),
    }
}

impl CelPeer {
    pub fn new() -> Result<Self> {
        let doc: PolicyDoc = serde_json::from_value(
            policy_core::yaml::parse_one(CEL_POLICY).map_err(|e| anyhow!("meshguard-cel.yaml: {e}"))?.value,
        )
        .context("meshguard-cel.yaml")?;
        let mut root = Context::default();
        kubernetes_functions(&mut root);
        let variables = doc
            .variables
            .iter()
            .map(|v| Ok((v.name.clone(), compile(&format!("variable {}", v.name), &v.expression)?)))
            .collect::<Result<_>>()?;
        let rules = doc
            .rules
            .iter()
            .map(|r| {
                let validations = r
                    .validations
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let action = v.action.clone().unwrap_or_else(|| r.action.clone());
                        Ok((action, compile(&format!("rule {} validation {i}", r.id), &v.expression)?))
                    })
                    .collect::<Result<_>>()?;
                Ok(Rule {
                    id: r.id.clone(),
                    matches: compile(&format!("rule {} match", r.id), &r.match_condition)?,
                    validations,
                })
            })
            .collect::<Result<_>>()?;
        Ok(CelPeer { root, variables, rules })
    }

    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// Reviews one object as an admission request in `namespace`; findings name object 0.
    pub fn review(&self, object: &Cel, namespace_object: &Cel, namespace: &str) -> Result<BTreeSet<PeerFinding>> {
        let mut ctx = self.root.new_inner_scope();
        ctx.add_variable_from_value("object", object.clone());
        ctx.add_variable_from_value("namespaceObject", namespace_object.clone());
        let request = [(Key::String(Arc::new("namespace".into())), Cel::String(Arc::new(namespace.to_string())))];
        ctx.add_variable_from_value("request", Cel::Map(Map { map: Arc::new(request.into_iter().collect()) }));
        for (name, program) in &self.variables {
            let value = program.execute(&ctx).map_err(|e| anyhow!("variable {name}: {e}"))?;
            ctx.add_variable_from_value(name.clone(), value);
        }
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            if !as_bool(&format!("rule {} match", rule.id), rule.matches.execute(&ctx))? {
                continue;
            }
            for (i, (action, program)) in rule.validations.iter().enumerate() {
                if !as_bool(&format!("rule {} validation {i}", rule.id), program.execute(&ctx))? {
                    out.insert(PeerFinding {
                        rule: rule.id.clone(),
                        object: 0,
                        action: action.clone(),
                        path: String::new(),
                    });
                }
            }
        }
        Ok(out)
    }
}
