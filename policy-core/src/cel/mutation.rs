//! What a MutatingAdmissionPolicy's expressions add to CEL: `Object{...}` initializers for
//! ApplyConfiguration patches (`jsonpatch.escapeKey` is with the Kubernetes libraries, `k8s`).
//!
//! The API server types `Object` from the kind's schema, naming every nested initializer by its
//! field path from the root (`Object.spec.initContainers{...}` inside `Object.spec{initContainers:
//! [...]}`). meshguard has no schema to type the fields with; it checks the names the same way
//! (a wrong one is a compile error worded as the API server's) and builds each initializer as a map,
//! which the host reads back as JSON.

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr, LiteralValue, MapEntryExpr, MapExpr};

fn is_object_type(name: &str) -> bool {
    name == "Object" || name.starts_with("Object.")
}

/// Rewrites every `Object...{}` initializer in `tree` into a map literal, checking that each
/// nested one is named by its field path from the enclosing one. Without recursion.
pub(super) fn objects_as_maps(tree: &mut IdedExpr) -> Result<(), String> {
    let mut pending: Vec<(&mut IdedExpr, Option<String>)> = vec![(tree, None)];
    while let Some((node, expected)) = pending.pop() {
        if let Expr::Struct(s) = &node.expr {
            if is_object_type(&s.type_name) {
                if let Some(want) = expected.as_deref().filter(|w| *w != s.type_name) {
                    return Err(format!(
                        "type mismatch: unexpected type name \"{}\", expected \"{want}\", which matches field name path \
                         from root Object type",
                        s.type_name
                    ));
                }
                let Expr::Struct(s) = std::mem::replace(&mut node.expr, Expr::Unspecified) else { unreachable!() };
                let mut fields = Vec::with_capacity(s.entries.len());
                let mut entries = Vec::with_capacity(s.entries.len());
                for entry in s.entries {
                    if let EntryExpr::StructField(f) = entry.expr {
                        let key = IdedExpr {
                            id: entry.id,
                            expr: Expr::Literal(LiteralValue::String(f.field.clone().into())),
                        };
                        fields.push(format!("{}.{}", s.type_name, f.field));
                        let value = MapEntryExpr { key, value: f.value, optional: f.optional };
                        entries.push(IdedEntryExpr { id: entry.id, expr: EntryExpr::MapEntry(value) });
                    }
                }
                node.expr = Expr::Map(MapExpr { entries });
                // The values, each expected to be named after its field if it is an initializer.
                let Expr::Map(map) = &mut node.expr else { unreachable!() };
                for (entry, name) in map.entries.iter_mut().zip(fields) {
                    if let EntryExpr::MapEntry(e) = &mut entry.expr {
                        pending.push((&mut e.value, Some(name)));
                    }
                }
                continue;
            }
        }
        match &mut node.expr {
            // A list's items are initialized as the list's own field is named.
            Expr::List(list) => pending.extend(list.elements.iter_mut().map(|e| (e, expected.clone()))),
            other => pending.extend(super::ast::children_mut(other).into_iter().map(|e| (e, None))),
        }
    }
    Ok(())
}
