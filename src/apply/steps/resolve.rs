//! References resolved in one Odoo: a record by database id, external id, code, barcode or
//! name, each looked up once per connection and cached on it.

use super::*;

/// The record `r` names in `model`, in this Odoo (looked up once per connection).
pub async fn resolve(c: &Client, model: &str, r: &Ref) -> Result<i64, OdooError> {
    if let Ref::Id(id) = r {
        return Ok(*id);
    }
    let key = format!("{model} {r:?}");
    if let Some(id) = c.cached(&key) {
        return Ok(id);
    }
    let id = match r {
        Ref::Id(id) => *id,
        Ref::Xmlid(x) => {
            let (module, name) = x.split_once('.').expect("checked at ingest");
            let rows = c
                .call(
                    "ir.model.data",
                    "search_read",
                    vec![json!([["module", "=", module], ["name", "=", name]])],
                    Map::from_iter([("fields".to_string(), json!(["model", "res_id"]))]),
                )
                .await?;
            let row = rows
                .as_array()
                .and_then(|a| a.first())
                .ok_or_else(|| OdooError::Missing(format!("no external id {x} (for a {model})")))?;
            if row["model"] != model {
                return Err(OdooError::Rejected(format!(
                    "external id {x} names a {}, not a {model}",
                    row["model"].as_str().unwrap_or("?")
                )));
            }
            row["res_id"]
                .as_i64()
                .ok_or_else(|| OdooError::Protocol(format!("external id {x}: {row}")))?
        }
        Ref::Code(code) => {
            let mut found = None;
            for field in code_fields(model) {
                if let Some(id) = one(
                    c,
                    model,
                    json!([[field, "=", code]]),
                    &format!("{field} {code:?}"),
                )
                .await?
                {
                    found = Some(id);
                    break;
                }
            }
            // A production split for a backorder is renamed NAME-001 (its backorder NAME-002):
            // a retry after that split still finds it.
            if found.is_none() && model == "mrp.production" {
                let ids = c
                    .call(
                        model,
                        "search",
                        vec![json!([["name", "=", format!("{code}-001")]])],
                        Map::from_iter([
                            ("limit".to_string(), json!(1)),
                            ("order".to_string(), json!("id")),
                        ]),
                    )
                    .await?;
                found = ids.get(0).and_then(Value::as_i64);
            }
            found.ok_or_else(|| {
                OdooError::Missing(match code_fields(model) {
                    ["name"] => format!("no {model} named {code:?}"),
                    fields => format!(
                        "no {model} {code:?} (looked up by {})",
                        fields.join(", then ")
                    ),
                })
            })?
        }
        Ref::Name(name) => one(
            c,
            model,
            json!([["name", "=", name]]),
            &format!("name {name:?}"),
        )
        .await?
        .ok_or_else(|| OdooError::Missing(format!("no {model} named {name:?}")))?,
    };
    c.remember(key, id);
    Ok(id)
}

/// The one record matching `domain`; none; or a refusal when several match.
pub(super) async fn one(
    c: &Client,
    model: &str,
    domain: Value,
    what: &str,
) -> Result<Option<i64>, OdooError> {
    let ids = c
        .call(
            model,
            "search",
            vec![domain],
            Map::from_iter([("limit".to_string(), json!(2))]),
        )
        .await?;
    let ids: Vec<i64> = ids
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(*id)),
        _ => Err(OdooError::Rejected(format!(
            "several {model} records have {what}; name one by external id"
        ))),
    }
}

/// A many2one as read: `[id, "name"]` (Odoo) or the id.
pub(super) fn many2one(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.get(0).and_then(Value::as_i64))
}

/// A cell's text in this Odoo.
pub(super) async fn resolve_cell(c: &Client, cell: &Cell) -> Result<String, OdooError> {
    match cell {
        Cell::Text(t) => Ok(t.clone()),
        Cell::Id { model, by } => Ok(resolve(c, model, by).await?.to_string()),
        Cell::FieldOf {
            model,
            record,
            field,
        } => {
            let id = resolve(c, model, record).await?;
            let key = format!("{model} {id} {field}");
            if let Some(v) = c.cached(&key) {
                return Ok(v.to_string());
            }
            let rows = c
                .call_on(
                    model,
                    "read",
                    &[id],
                    Map::from_iter([("fields".to_string(), json!([field]))]),
                )
                .await?;
            let v = rows
                .get(0)
                .and_then(|row| many2one(&row[field.as_str()]))
                .ok_or_else(|| OdooError::Rejected(format!("{model} {id} has no {field}")))?;
            // Such as a workorder's work center, which does not change under it.
            c.remember(key, v);
            Ok(v.to_string())
        }
        Cell::First {
            model,
            domain,
            order,
        } => {
            let key = format!("{model} first {domain} {order}");
            if let Some(id) = c.cached(&key) {
                return Ok(id.to_string());
            }
            let ids = c
                .call(
                    model,
                    "search",
                    vec![domain.clone()],
                    Map::from_iter([
                        ("limit".to_string(), json!(1)),
                        ("order".to_string(), json!(order)),
                    ]),
                )
                .await?;
            let id = ids.get(0).and_then(Value::as_i64).ok_or_else(|| {
                OdooError::Missing(format!("no {model} matching {domain} in this Odoo"))
            })?;
            c.remember(key, id);
            Ok(id.to_string())
        }
    }
}

/// `load` columns with their cells resolved.
pub async fn resolve_columns(
    c: &Client,
    columns: &[(String, Cell)],
) -> Result<Vec<(String, String)>, OdooError> {
    let mut out = Vec::with_capacity(columns.len());
    for (column, cell) in columns {
        out.push((column.clone(), resolve_cell(c, cell).await?));
    }
    Ok(out)
}
