//! How pending transactions reach one Odoo, for the plant's queue (`mod.rs`) and the hub's
//! (`hub::apply`) alike: runs of creates or moves in one `load`, batches through the
//! plantd_apply module, one by one where those refuse; each `odoo.create` vetted against the
//! model's fields first; the connection made, and the kinds whose models Odoo lacks marked.

use std::time::Duration;

use serde_json::Value;

use super::{odoo_module, steps, Locate};
use crate::field::FieldError;
use crate::kinds::mapping::{Kinds, Step};
use crate::odoo::{Client, OdooError};
use steps::run_step;

/// Why a transaction was not applied: wait and retry, or stop the queue.
pub enum Failed {
    Wait(String),
    Stop(String),
}

/// A transaction waiting to be applied.
pub struct Pending<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub payload: &'a str,
    /// Set aside by an admin: passed over.
    pub parked: bool,
}

/// Most rows in one `load`.
const LOAD_ROWS: usize = 100;

/// Applies `pending` (in seq order) as far as it goes. Consecutive creates of one model with
/// the same columns go to Odoo as one `load` (all or nothing there), after one look for their
/// external ids; when Odoo rejects such a batch, its transactions are tried one by one, so that
/// the queue stops exactly at the one Odoo refuses. Returns the last seq applied (or passed
/// over), and where and why it stopped short.
pub async fn apply_many(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
    plant: &str,
    pending: &[Pending<'_>],
) -> (Option<u64>, Option<(u64, String, Failed)>) {
    let kept = client.is_some();
    let (through, failed) = apply_many_once(kinds, locate, client, plant, pending).await;
    // A connection kept from earlier batches (the hub keeps its workers') is refused access
    // once the API key it signed in with is rotated: once, a fresh connection, which reads
    // the key again, goes on from where it stopped. A real refusal is met again there.
    if let (true, Some((seq, _, Failed::Stop(_)))) = (kept, &failed) {
        if client.as_ref().is_some_and(Client::refused_access) {
            *client = None;
            if let Some(at) = pending.iter().position(|p| p.seq == *seq) {
                tracing::info!(
                    seq,
                    "Odoo refused access on a kept connection; trying once more on a fresh one"
                );
                let (again, failed) =
                    apply_many_once(kinds, locate, client, plant, &pending[at..]).await;
                return (again.or(through), failed);
            }
        }
    }
    (through, failed)
}

async fn apply_many_once(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
    plant: &str,
    pending: &[Pending<'_>],
) -> (Option<u64>, Option<(u64, String, Failed)>) {
    let mut through = None;
    let mut i = 0;
    // Connected first: a new connection learns which kinds this Odoo cannot take.
    if let Some(p) = pending.iter().find(|p| !p.parked) {
        match connect(kinds, locate, client).await {
            Err(f) => return (None, Some((p.seq, p.kind.to_string(), f))),
            // A kind refused for a missing model is let in again once Odoo has the model.
            Ok(c) if kinds.any_missing() => {
                if let Err(e) = check_models(kinds, c).await {
                    return (None, Some((p.seq, p.kind.to_string(), classify(e))));
                }
            }
            Ok(_) => {}
        }
    }
    while i < pending.len() {
        let p = &pending[i];
        if p.parked {
            through = Some(p.seq);
            i += 1;
            continue;
        }
        if client.as_ref().is_some_and(odoo_module::installed) {
            match apply_through_module(kinds, client, plant, &pending[i..]).await {
                Ok(Some(Module { next, done })) => {
                    through = done.or(through);
                    i += next;
                    if next > 0 {
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => return (through, Some((p.seq, p.kind.to_string(), classify(e)))),
            }
        }
        // The run of creates (or moves) that can share a load.
        let c = match connect(kinds, locate, client).await {
            Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
            Ok(c) => c,
        };
        let run = match vetted_run(kinds, c, &pending[i..]).await {
            Ok(run) => run,
            Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
        };
        if run.len() >= 2 {
            match steps::run_many(c, plant, &run).await {
                Ok(true) => {
                    through = run.last().map(|(s, _)| *s);
                    i += run.len();
                    continue;
                }
                // Rejected as a whole: one by one below finds the one.
                Ok(false) => {}
                Err(e) => return (through, Some((p.seq, p.kind.to_string(), classify(e)))),
            }
            for q in &pending[i..i + run.len()] {
                match apply_one(kinds, locate, client, plant, q.seq, q.kind, q.payload).await {
                    Ok(_) => through = Some(q.seq),
                    Err(f) => return (through, Some((q.seq, q.kind.to_string(), f))),
                }
            }
            i += run.len();
            continue;
        }
        match apply_one(kinds, locate, client, plant, p.seq, p.kind, p.payload).await {
            Ok(_) => through = Some(p.seq),
            Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
        }
        i += 1;
    }
    (through, None)
}

/// The run of creates (or moves) at the start of `pending` that can share a load: none when
/// the first is parked or neither a create nor a move.
fn load_run(kinds: &Kinds, pending: &[Pending<'_>]) -> Vec<(u64, Step)> {
    let mut run: Vec<(u64, Step)> = Vec::new();
    while let Some(q) = pending
        .get(run.len())
        .filter(|q| !q.parked && run.len() < LOAD_ROWS)
    {
        let Ok(step) = step_of(kinds, q.kind, q.payload) else {
            break;
        };
        let Some(shape) = load_shape(&step) else {
            break;
        };
        if run
            .first()
            .is_some_and(|(_, first)| load_shape(first) != Some(shape))
        {
            break;
        }
        run.push((q.seq, step));
    }
    run
}

/// Most transactions in one call of the plantd_apply module.
const MODULE_ROWS: usize = 500;

/// How far one call of the plantd_apply module got: `next` transactions of `pending` are
/// done (applied, or parked and passed over), the last of them `done`.
struct Module {
    next: usize,
    done: Option<u64>,
}

/// Applies the runs of creates and moves (and the parked transactions among them) at the start
/// of `pending` in one call of the plantd_apply module. `Ok(None)`: nothing there for it (the
/// first is neither), or the module failed in a way that is not Odoo refusing a transaction
/// (said in the log): the caller's own calls take over. A run the module refused, or could not
/// be sent (a reference an earlier run makes), is left to the caller, which finds the one
/// transaction one by one.
async fn apply_through_module(
    kinds: &Kinds,
    client: &Option<Client>,
    plant: &str,
    pending: &[Pending<'_>],
) -> Result<Option<Module>, OdooError> {
    let c = client.as_ref().expect("connected");
    // (index of the run's first transaction in `pending`, the run); parked ones between runs
    // are passed over with them.
    let mut runs: Vec<(usize, Vec<(u64, Step)>)> = Vec::new();
    let mut j = 0;
    let mut rows = 0;
    while j < pending.len() && rows < MODULE_ROWS {
        if pending[j].parked {
            j += 1;
            continue;
        }
        // One the vetting refuses ends the batch (the next run starts with it, and is empty):
        // the caller stops at it.
        let run = vetted_run(kinds, c, &pending[j..])
            .await
            .unwrap_or_default();
        if run.is_empty() {
            break;
        }
        rows += run.len();
        let len = run.len();
        runs.push((j, run));
        j += len;
    }
    if runs.is_empty() {
        return Ok(None);
    }
    let sent: Vec<&[(u64, Step)]> = runs.iter().map(|(_, r)| r.as_slice()).collect();
    let outcome = match steps::run_batch(c, plant, &sent).await {
        Ok(o) => o,
        Err(e) if e.transient() => return Err(e),
        Err(e) => {
            // Such as the module uninstalled meanwhile: the apply's own calls do the same.
            tracing::warn!(error = %e, "the plantd_apply module failed; applying with plantd's own calls");
            odoo_module::set_installed(c, false);
            return Ok(None);
        }
    };
    if let Some(why) = &outcome.refused {
        tracing::debug!(
            why,
            "the plantd_apply module refused a run; finding the transaction one by one"
        );
    }
    // Done through the last run carried out, with the parked ones before the next run.
    let next = match runs.get(outcome.done) {
        Some((start, _)) => *start,
        None => j,
    };
    let done = pending[..next].last().map(|p| p.seq);
    Ok(Some(Module { next, done }))
}

/// Why an idle apply's check found Odoo not answering.
#[derive(Debug, thiserror::Error)]
pub(super) enum IdleError {
    /// No connection (no `[odoo]` to call, Odoo away, a wrong key): why.
    #[error("{0}")]
    Connect(String),
    /// The probe call failed.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// The probe call got no answer within this many seconds.
    #[error("no answer within {0} s")]
    Timeout(u64),
}

/// How often an idle apply asks whether Odoo still answers (and how long it waits for it).
pub(super) const IDLE_CHECK: Duration = Duration::from_secs(4);

/// Whether Odoo can take transactions: a cheap signed-in call on the open connection (which
/// needs the database and the key, not only the web server), else a new connection. While a
/// kind is refused for a model Odoo lacked, the models are asked again, so that installing the
/// app lets the kind in within seconds.
pub(super) async fn idle_check(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
) -> Result<(), IdleError> {
    let c = match client {
        Some(c) => c,
        None => connect(kinds, locate, client).await.map_err(|f| match f {
            Failed::Wait(why) | Failed::Stop(why) => IdleError::Connect(why),
        })?,
    };
    let probe = c.call(
        "res.users",
        "search_count",
        vec![serde_json::json!([["id", "=", 0]])],
        serde_json::Map::new(),
    );
    match tokio::time::timeout(IDLE_CHECK, probe).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(IdleError::Timeout(IDLE_CHECK.as_secs())),
    }
    if kinds.any_missing() {
        check_models(kinds, c).await?;
    }
    Ok(())
}

/// What lets steps share one `load`: creates of one model with the same columns, or moves.
/// The context counts: one `load` has one.
type LoadShape<'s> = (
    &'s str,
    Vec<&'s str>,
    Option<&'s serde_json::Map<String, Value>>,
);

fn load_shape(step: &Step) -> Option<LoadShape<'_>> {
    match step {
        Step::Create {
            model,
            columns,
            context,
        } => Some((
            model.as_str(),
            columns.iter().map(|(c, _)| c.as_str()).collect(),
            Some(context),
        )),
        Step::Move { columns, .. } => Some((
            "stock.move",
            columns.iter().map(|(c, _)| c.as_str()).collect(),
            None,
        )),
        _ => None,
    }
}

fn step_of(kinds: &Kinds, kind: &str, payload: &str) -> Result<Step, Failed> {
    if let Some(why) = kinds.unavailable(kind) {
        return Err(Failed::Stop(why));
    }
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| Failed::Stop(format!("the payload is not JSON: {e}")))?;
    kinds
        .step(kind, &payload)
        .map_err(|FieldError { field, message: m }| {
            Failed::Stop(format!(
                "{field}: {m} (the mappings changed since it was accepted?)"
            ))
        })
}

/// Connects `client` when it is not connected, and learns which of the kinds' models this
/// Odoo lacks (those kinds are refused from then on, at ingest too).
async fn connect<'c>(
    kinds: &Kinds,
    locate: &Locate,
    client: &'c mut Option<Client>,
) -> Result<&'c Client, Failed> {
    if client.is_none() {
        let target = locate().map_err(|e| Failed::Wait(e.to_string()))?;
        let url = target.url.clone();
        // Not this transaction's fault (a wrong key, Odoo away): wait, and take up a fixed
        // [odoo] section at the next try.
        let c = Client::connect(target)
            .await
            .map_err(|e| Failed::Wait(format!("{url}: {e}")))?;
        check_models(kinds, &c).await.map_err(classify)?;
        *client = Some(c);
    }
    Ok(client.as_ref().expect("connected"))
}

/// Asks Odoo which of the models the kinds need it has, and marks the kinds whose models it
/// lacks (such as `quality.check` on Odoo Community).
async fn check_models(kinds: &Kinds, c: &Client) -> Result<(), OdooError> {
    let mut wanted: Vec<String> = kinds.models().into_iter().collect();
    wanted.push(odoo_module::MODEL.to_string());
    let rows = c
        .call(
            "ir.model",
            "search_read",
            vec![serde_json::json!([["model", "in", wanted]])],
            serde_json::Map::from_iter([("fields".to_string(), serde_json::json!(["model"]))]),
        )
        .await?;
    let have: std::collections::BTreeSet<String> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["model"].as_str().map(str::to_string))
        .collect();
    odoo_module::set_installed(c, have.contains(odoo_module::MODEL));
    let absent = wanted.into_iter().filter(|m| !have.contains(m)).collect();
    for (kind, why) in kinds.mark_missing(&absent) {
        tracing::warn!(kind = %kind, "{why}");
    }
    Ok(())
}

fn classify(e: OdooError) -> Failed {
    if e.transient() {
        Failed::Wait(e.to_string())
    } else {
        Failed::Stop(e.to_string())
    }
}

/// Applies transaction `seq` of `plant` (its `kind` and `payload`), connecting `client` first
/// when it is not connected.
pub async fn apply_one(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
    plant: &str,
    seq: u64,
    kind: &str,
    payload: &str,
) -> Result<String, Failed> {
    let c = connect(kinds, locate, client).await?;
    let step = step_of(kinds, kind, payload)?;
    vet(kinds, c, kind, &step).await?;
    run_step(c, plant, seq, &step).await.map_err(classify)
}

/// How old what a connection knows of a model's fields may be before a field it has not heard
/// of makes it ask again.
const FIELDS_AGAIN: Duration = Duration::from_secs(60);

/// Checks an `odoo.create` against the fields Odoo says its model has (asked once per model and
/// connection): a one2many or many2many to a security model links records that grant rights,
/// and is written only where plant.toml names that model ([`Kinds::link_allowed`]). Other
/// kinds are the admin's own mappings, and pass.
async fn vet(kinds: &Kinds, c: &Client, kind: &str, step: &Step) -> Result<(), Failed> {
    let Step::Create { model, columns, .. } = step else {
        return Ok(());
    };
    if kind != "odoo.create" {
        return Ok(());
    }
    let mut fields = c.fields(model).await.map_err(classify)?;
    // A field this connection has not heard of may have come with a module installed since
    // it asked: asked again (at most once a minute) before it goes through unvetted (Odoo
    // refuses a field it lacks).
    if columns
        .iter()
        .any(|(col, _)| !fields.contains_key(field_of(col)))
    {
        fields = c
            .fields_again(model, FIELDS_AGAIN)
            .await
            .map_err(classify)?;
    }
    for (column, _) in columns {
        let name = field_of(column);
        if let Some(f) = fields.get(name) {
            kinds
                .link_allowed(model, name, &f.kind, f.relation.as_deref())
                .map_err(|m| Failed::Stop(format!("payload.values.{column}: {m}")))?;
        }
    }
    Ok(())
}

/// The field a column writes: itself, or the field of a reference (`partner_id/id`,
/// `partner_id/.id`).
fn field_of(column: &str) -> &str {
    column.split('/').next().unwrap_or(column)
}

/// [`load_run`], cut short before the first transaction [`vet`] refuses (the first of its
/// kind in the run); that one's refusal when it is the first.
async fn vetted_run(
    kinds: &Kinds,
    c: &Client,
    pending: &[Pending<'_>],
) -> Result<Vec<(u64, Step)>, Failed> {
    let mut run = load_run(kinds, pending);
    // A run's steps share a model and columns: one look per kind in it is enough.
    let mut vetted: Vec<&str> = Vec::new();
    for (n, (p, (_, step))) in pending.iter().zip(&run).enumerate() {
        if vetted.contains(&p.kind) {
            continue;
        }
        vetted.push(p.kind);
        if let Err(f) = vet(kinds, c, p.kind, step).await {
            if n == 0 {
                return Err(f);
            }
            run.truncate(n);
            break;
        }
    }
    Ok(run)
}
