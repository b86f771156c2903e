//! `meshguard rules export`: a rule set as objects the API server enforces itself
//! ([`policy_core::export`]), printed as a YAML stream ready for `kubectl apply -f -`, and the
//! rules that stay with the webhook (or Envoy) reported on stderr with why.

use yaml_rust2::yaml::{Hash, Yaml};
use yaml_rust2::YamlEmitter;

fn to_yaml(value: &serde_json::Value) -> Yaml {
    use serde_json::Value;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut hash = Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml(v));
            }
            Yaml::Hash(hash)
        }
    }
}

/// Objects as one YAML stream (`---` before each document).
pub fn yaml_stream(objects: &[serde_json::Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for object in objects {
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline_strings(true);
        emitter.dump(&to_yaml(object)).map_err(|e| anyhow::anyhow!("writing YAML: {e:?}"))?;
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_reads_back_as_the_objects() {
        let objects = vec![
            serde_json::json!({"kind": "A", "spec": {"expression": "object.a == 'x: y'\n  && true", "n": 3, "f": 1.5, "l": [], "m": {}, "z": null, "yes": "yes"}}),
            serde_json::json!({"kind": "B", "list": ["#not a comment", "- dash", "", "1"]}),
        ];
        let text = yaml_stream(&objects).unwrap();
        let back: Vec<serde_json::Value> =
            policy_core::yaml::parse_documents(&text).unwrap().into_iter().map(|d| d.value).collect();
        assert_eq!(back, objects, "{text}");
    }
}
