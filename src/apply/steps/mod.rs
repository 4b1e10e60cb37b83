//! Carrying out [`Step`]s in one Odoo, idempotently: every step first looks whether it was
//! done (an external id `plantd.<plant>_<seq>`, a record's state), so that a retry after a crash
//! or a lost answer never does it twice. Only Odoo's public methods are called (private ones
//! cannot be called over RPC since Odoo 17), and a wizard in an answer is a refusal with its
//! name, never left open. References ([`Ref`]) are resolved in this Odoo and cached on the
//! connection.

mod resolve;
mod stock;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::kinds::mapping::{code_fields, Cell, Ref, Step};
use crate::odoo::{Client, OdooError};
use resolve::*;
use stock::*;

/// The context of the calls that validate a transfer: no backorder question (the step says
/// whether there is one), no SMS or expiry wizard.
fn validate_context(pickings_without_backorder: &[i64]) -> Map<String, Value> {
    let mut ctx = machine_context(&Map::new());
    ctx.extend([
        ("skip_backorder".to_string(), json!(true)),
        ("skip_sms".to_string(), json!(true)),
        ("skip_expired".to_string(), json!(true)),
    ]);
    if !pickings_without_backorder.is_empty() {
        ctx.insert(
            "picking_ids_not_to_backorder".into(),
            json!(pickings_without_backorder),
        );
    }
    ctx
}

/// The context of every call of the apply: a kind's own `context` over plantd's defaults for
/// a machine's records. The one default: plantd's API user does not become a follower of each
/// record it creates (`mail_create_nosubscribe`; Odoo would otherwise subscribe it to every
/// partner and transfer, to be told of each later change). Chatter's creation note and the
/// tracking of changes stay, as they do for a person's records.
pub(super) fn machine_context(context: &Map<String, Value>) -> Map<String, Value> {
    let mut ctx = Map::from_iter([("mail_create_nosubscribe".to_string(), json!(true))]);
    ctx.extend(context.clone());
    ctx
}

fn with_context(context: &Map<String, Value>) -> Map<String, Value> {
    Map::from_iter([(
        "context".to_string(),
        Value::Object(machine_context(context)),
    )])
}

/// A method's answer that opens a wizard (a window action in a dialog, `target: new`) means
/// Odoo wants a question answered: the step did not happen. Other actions (show the backorder,
/// print a report) follow a step that did.
fn wizard(model: &str, method: &str, id: i64, answer: &Value) -> Result<(), OdooError> {
    if answer["type"] == "ir.actions.act_window" && answer["target"] == "new" {
        let res_model = answer["res_model"].as_str().unwrap_or("?");
        let name = answer["name"].as_str().unwrap_or_default();
        return Err(OdooError::Rejected(format!(
            "{model}.{method} on {id} asks a question in a wizard ({res_model}{}); plantd answers none: say in the payload or the kind's config what to do",
            if name.is_empty() { String::new() } else { format!(", {name:?}") }
        )));
    }
    Ok(())
}

/// The records created under external ids `plantd.NAME` for these names: name → (model, id).
pub async fn created_many(
    c: &Client,
    names: &[String],
) -> Result<BTreeMap<String, (String, i64)>, OdooError> {
    let found = c
        .call(
            "ir.model.data",
            "search_read",
            vec![json!([["module", "=", "plantd"], ["name", "in", names]])],
            Map::from_iter([("fields".to_string(), json!(["name", "model", "res_id"]))]),
        )
        .await?;
    Ok(found
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some((
                        r["name"].as_str()?.to_string(),
                        (r["model"].as_str()?.to_string(), r["res_id"].as_i64()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Odoo's `load` rejected the rows (nothing of them stays): its messages, joined by "; ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct LoadRejected(String);

/// One `load` of rows (external id first, then the columns' cells); the ids, or Odoo's
/// messages when it rejected them (nothing of them stays).
async fn load(
    c: &Client,
    model: &str,
    columns: &[String],
    rows: Vec<Value>,
    context: &Map<String, Value>,
) -> Result<Result<Vec<i64>, LoadRejected>, OdooError> {
    let mut fields = vec![json!("id")];
    fields.extend(columns.iter().map(|c| json!(c)));
    let expected = rows.len();
    let answer = c
        .call(
            model,
            "load",
            vec![Value::Array(fields), Value::Array(rows)],
            with_context(context),
        )
        .await?;
    match answer["ids"].as_array() {
        Some(ids) if ids.len() == expected => {
            Ok(Ok(ids.iter().filter_map(Value::as_i64).collect()))
        }
        Some(ids) => Err(OdooError::Protocol(format!(
            "{model}.load created {} records of {expected}",
            ids.len()
        ))),
        None => {
            let messages: Vec<&str> = answer["messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["message"].as_str()).collect())
                .unwrap_or_default();
            if messages.is_empty() {
                return Err(OdooError::Protocol(format!(
                    "{model}.load answered {answer}"
                )));
            }
            Ok(Err(LoadRejected(messages.join("; "))))
        }
    }
}

/// What a create or a move loads: its model, columns, the move's description (the reference,
/// else the external id) and the context.
struct LoadParts<'s> {
    model: &'s str,
    columns: &'s [(String, Cell)],
    description: Option<String>,
    context: Map<String, Value>,
}

fn load_parts<'s>(step: &'s Step, name: &str) -> Option<LoadParts<'s>> {
    match step {
        Step::Create {
            model,
            columns,
            context,
        } => Some(LoadParts {
            model,
            columns,
            description: None,
            context: context.clone(),
        }),
        Step::Move { columns, reference } => Some(LoadParts {
            model: "stock.move",
            columns,
            description: Some(
                reference
                    .clone()
                    .unwrap_or_else(|| format!("plantd.{name}")),
            ),
            context: Map::new(),
        }),
        _ => None,
    }
}

/// Creates (through one `load`) what a run of creates or moves of one model with the same
/// columns needs, after one look for their external ids; then, for moves, puts each in a
/// transfer of its own and validates them all at once. `Ok(false)`: Odoo rejected the run
/// as a whole (nothing of the load stayed; moves may wait in their transfers), so it is done
/// one by one to find the one.
pub async fn run_many(c: &Client, plant: &str, run: &[(u64, Step)]) -> Result<bool, OdooError> {
    let names: Vec<String> = run
        .iter()
        .map(|(seq, _)| format!("{plant}_{seq}"))
        .collect();
    let done = created_many(c, &names).await?;
    let mut model = "";
    let mut columns: Vec<String> = Vec::new();
    let mut context = Map::new();
    let mut rows = Vec::new();
    let mut moves = Vec::new();
    for ((_, step), name) in run.iter().zip(&names) {
        let Some(LoadParts {
            model: m,
            columns: cells,
            description: extra,
            context: ctx,
        }) = load_parts(step, name)
        else {
            continue;
        };
        context = ctx;
        if model.is_empty() {
            model = m;
            columns = cells.iter().map(|(col, _)| col.clone()).collect();
            if extra.is_some() {
                columns.push("name".into());
            }
        }
        if let Some((_, id)) = done.get(name) {
            moves.push(*id);
            continue;
        }
        let mut row = vec![json!(format!("plantd.{name}"))];
        match resolve_columns(c, cells).await {
            Ok(values) => row.extend(values.into_iter().map(|(_, v)| json!(v))),
            // A reference this Odoo lacks: one by one finds whose.
            Err(e) if !e.transient() => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(description) = extra {
            row.push(json!(description));
        }
        rows.push(Value::Array(row));
    }
    if !rows.is_empty() {
        match load(c, model, &columns, rows, &context).await? {
            Ok(ids) => moves.extend(ids),
            Err(_) => return Ok(false),
        }
    }
    if model != "stock.move" {
        return Ok(true);
    }
    match finish_moves(c, &moves).await {
        Ok(()) => Ok(true),
        Err(e) if e.transient() => Err(e),
        Err(_) => Ok(false),
    }
}

/// What one call of `plantd.apply.run` (the plantd_apply module) did with the runs it was
/// given: how many it carried out, in order, and Odoo's message for the one after them when
/// Odoo refused it (`None`: the rest were not sent, or all went through).
#[derive(Debug, PartialEq)]
pub struct BatchOutcome {
    pub done: usize,
    pub refused: Option<String>,
}

/// Sends `runs` (each a run [`run_many`] would take, or a single create or move) to Odoo as
/// one `plantd.apply.run`: one round trip and one database transaction, the runs carried out
/// there in order with the same public methods. The runs are sent as far as their references
/// resolve here; a run with a reference this Odoo lacks (a record an earlier run of the same
/// batch makes, say) ends what is sent, and the caller goes on from it.
pub async fn run_batch(
    c: &Client,
    plant: &str,
    runs: &[&[(u64, Step)]],
) -> Result<BatchOutcome, OdooError> {
    let mut body = Vec::new();
    'runs: for run in runs {
        let mut fields: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut spec = None;
        for (seq, step) in run.iter() {
            let name = format!("{plant}_{seq}");
            let Some(parts) = load_parts(step, &name) else {
                break 'runs;
            };
            let values = match resolve_columns(c, parts.columns).await {
                Ok(v) => v,
                Err(e) if e.transient() => return Err(e),
                Err(_) => break 'runs,
            };
            if spec.is_none() {
                fields = values.iter().map(|(k, _)| k.clone()).collect();
                if parts.description.is_some() {
                    fields.push("name".into());
                }
                spec = Some((parts.model, parts.context.clone(), step_is_move(step)));
            }
            let mut row = vec![json!(format!("plantd.{name}"))];
            row.extend(values.into_iter().map(|(_, v)| json!(v)));
            if let Some(d) = parts.description {
                row.push(json!(d));
            }
            rows.push(Value::Array(row));
        }
        let Some((model, context, moves)) = spec else {
            break;
        };
        body.push(json!({
            "model": model,
            "fields": fields,
            "rows": rows,
            "context": machine_context(&context),
            "moves": moves,
        }));
    }
    if body.is_empty() {
        return Ok(BatchOutcome {
            done: 0,
            refused: None,
        });
    }
    let answers = c
        .call(
            super::odoo_module::MODEL,
            "run",
            vec![Value::Array(body)],
            Map::new(),
        )
        .await?;
    let answers = answers.as_array().ok_or_else(|| {
        OdooError::Protocol(format!("plantd.apply.run answered {answers}, not a list"))
    })?;
    let done = answers.iter().take_while(|a| a["ids"].is_array()).count();
    let refused = answers
        .get(done)
        .map(|a| a["error"].as_str().unwrap_or("refused").to_string());
    Ok(BatchOutcome { done, refused })
}

fn step_is_move(step: &Step) -> bool {
    matches!(step, Step::Move { .. })
}

/// Carries out one step, idempotently; says what it did.
pub async fn run_step(c: &Client, plant: &str, seq: u64, step: &Step) -> Result<String, OdooError> {
    match step {
        Step::Create { .. } | Step::Move { .. } => {
            let name = format!("{plant}_{seq}");
            let found = created_many(c, std::slice::from_ref(&name)).await?;
            let (model, id) = match found.get(&name) {
                Some((model, id)) => (model.clone(), *id),
                None => {
                    let LoadParts {
                        model,
                        columns: cells,
                        description,
                        context,
                    } = load_parts(step, &name).expect("a create or a move");
                    let resolved = resolve_columns(c, cells).await?;
                    let mut columns: Vec<String> =
                        resolved.iter().map(|(k, _)| k.clone()).collect();
                    let mut row = vec![json!(format!("plantd.{name}"))];
                    row.extend(resolved.into_iter().map(|(_, v)| json!(v)));
                    if let Some(d) = description {
                        columns.push("name".into());
                        row.push(json!(d));
                    }
                    match load(c, model, &columns, vec![Value::Array(row)], &context).await? {
                        Ok(ids) => (model.to_string(), ids.first().copied().unwrap_or_default()),
                        Err(LoadRejected(messages)) => {
                            // A call an earlier try abandoned may have committed meanwhile (the
                            // external id then collides): that is this transaction, applied.
                            match created_many(c, std::slice::from_ref(&name))
                                .await?
                                .get(&name)
                            {
                                Some((model, id)) => (model.clone(), *id),
                                None => return Err(OdooError::Rejected(messages)),
                            }
                        }
                    }
                }
            };
            if let Step::Move { .. } = step {
                finish_moves(c, &[id]).await?;
                return Ok(format!("stock.move {id} done as plantd.{name}"));
            }
            Ok(format!("{model} {id} created as plantd.{name}"))
        }
        Step::Write {
            model,
            record,
            values,
            context,
        } => {
            let id = resolve(c, model, record).await?;
            let mut kwargs = with_context(context);
            kwargs.insert("vals".to_string(), Value::Object(values.clone()));
            c.call_on(model, "write", &[id], kwargs).await?;
            Ok(format!("{model} {id} written"))
        }
        Step::Action {
            model,
            record,
            write,
            method,
            done_state,
            context,
        } => {
            let id = resolve(c, model, record).await?;
            let state = state_of(c, model, id).await?;
            if state == *done_state {
                return Ok(format!("{model} {id} was {done_state} already"));
            }
            if !write.is_empty() {
                let mut kwargs = with_context(context);
                kwargs.insert("vals".to_string(), Value::Object(write.clone()));
                c.call_on(model, "write", &[id], kwargs).await?;
            }
            let answer = c
                .call_on(model, method, &[id], with_context(context))
                .await?;
            wizard(model, method, id, &answer)?;
            let after = state_of(c, model, id).await?;
            if after != *done_state {
                return Err(OdooError::Rejected(format!(
                    "{model}.{method} on {id} left it {after:?}, not {done_state:?}"
                )));
            }
            Ok(format!("{model} {id} {method}: {done_state}"))
        }
        Step::Validate {
            picking,
            lines,
            backorder,
        } => validate(c, picking, lines, *backorder).await,
        Step::Produce {
            production,
            quantity,
            backorder,
        } => produce(c, production, *quantity, *backorder).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_context_goes_over_plantds_defaults() {
        assert_eq!(
            Value::Object(machine_context(&Map::new())),
            json!({"mail_create_nosubscribe": true})
        );
        let kind = Map::from_iter([
            ("mail_create_nosubscribe".to_string(), json!(false)),
            ("skip_sms".to_string(), json!(true)),
        ]);
        assert_eq!(
            Value::Object(with_context(&kind)),
            json!({"context": {"mail_create_nosubscribe": false, "skip_sms": true}})
        );
        assert_eq!(
            validate_context(&[7])["mail_create_nosubscribe"],
            json!(true)
        );
    }
}
