//! The replication wire format: length-prefixed binary frames on one QUIC stream.
//!
//! A frame is `u32 length (big-endian) | u8 type | body`, where `length` counts the type byte
//! and the body and is at most [`MAX_FRAME`]. Integers are big-endian; a string is `u32 length |
//! UTF-8 bytes`; an optional string is `u8 0` or `u8 1 | string`.
//!
//! [`decode`] is the one parser of bytes from the network: it returns a [`WireError`] that says
//! what is wrong and where, for any input, and never panics (a property test feeds it arbitrary
//! bytes). Pure: no I/O.

/// Protocol version spoken in `Hello`; a hub refuses versions it does not know.
pub const PROTOCOL: u16 = 1;
/// Largest frame accepted, type byte and body included.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest first frame on a connection (a hello, or a backup fetch or offer), before the peer
/// is known: nobody unauthenticated gets the hub to hold 16 MiB.
pub const MAX_FIRST_FRAME: usize = 64 * 1024;
/// Longest plant name in a hello (the rule of `plantd hub token create --plant`).
pub const MAX_PLANT_NAME: usize = 64;
/// Longest version string in a hello.
pub const MAX_VERSION: usize = 64;
/// Longest journal id in a hello (a journal's id is 32 hex digits).
pub const MAX_JOURNAL_ID: usize = 64;
/// Largest `body` of a remote action's result (a diagnostics bundle): the hub stores no more.
pub const MAX_REMOTE_BODY: usize = 4 * 1024 * 1024;
/// Longest `detail` of a remote action's result.
pub const MAX_REMOTE_DETAIL: usize = 8 * 1024;
/// Largest frame on a remote-action stream, either way: a result with its bounds, and room
/// for the frame's own fields. A longer one is refused from its length alone.
pub const MAX_REMOTE_FRAME: usize = MAX_REMOTE_BODY + MAX_REMOTE_DETAIL + 1024;

/// One journaled transaction as it travels to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub key: String,
    pub device: String,
    pub kind: String,
    pub payload: String,
    pub occurred_at: Option<String>,
    pub received_at_ms: i64,
}

/// Everything either side may say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Plant → hub, first: who I am.
    Hello {
        protocol: u16,
        plant: String,
        version: String,
        /// The plant journal's random id: a replaced journal must not resume an old one's seqs.
        journal: String,
    },
    /// Hub → plant: the next seq I need from you.
    Resume { next_seq: u64 },
    /// Plant → hub: consecutive entries, in seq order.
    Batch { entries: Vec<Entry> },
    /// Hub → plant: everything up to and including `through_seq` is committed.
    Ack { through_seq: u64 },
    /// Either side, then close: why.
    Refuse { code: RefuseCode, message: String },
    /// Plant → hub, on its own stream: a JSON health snapshot.
    Telemetry { body: String },
    /// First on a backup stream, plant → hub (an upload) or hub → plant (a fetch's answer):
    /// the archive file `name` (`ID.tar.zst` or `ID.tar.zst.age`), its size and SHA-256.
    BackupOffer {
        name: String,
        size: u64,
        sha256: String,
    },
    /// Hub → plant, after an offer: send from this byte on (what a cut-off upload left).
    BackupFrom { offset: u64 },
    /// Either way: the next bytes of the archive.
    BackupChunk { data: Vec<u8> },
    /// Hub → plant: the whole archive is stored and its SHA-256 matches.
    BackupStored { name: String },
    /// First on a backup stream, plant → hub: send me backup `id` from byte `offset` on.
    BackupFetch { id: String, offset: u64 },
    /// First on an update stream, plant → hub: I run `version`; is there a release for me?
    /// The hub holds the stream open until it has one or a while has passed (a long poll, so
    /// that a rollout reaches a connected plant within about a second).
    UpdateCheck { version: String },
    /// Hub → plant: install this signed release (for rollout `rollout`; 0 for a pin). The
    /// plant checks the signature before it downloads anything.
    UpdateOffer {
        version: String,
        size: u64,
        sha256: String,
        signature: String,
        rollout: u64,
        /// The stack image bundle that comes with the release, if any (signed with it).
        images: Option<crate::release::Images>,
    },
    /// Hub → plant: nothing to install now; ask again.
    UpdateNone,
    /// First on an update stream, plant → hub: send me release `version`'s binary from byte
    /// `offset` on (answered with `BackupChunk` frames, then the end of the stream).
    UpdateGet { version: String, offset: u64 },
    /// First on an update stream, plant → hub: send me release `version`'s image bundle from
    /// byte `offset` on (answered like `UpdateGet`).
    UpdateImagesGet { version: String, offset: u64 },
    /// First on an update stream, plant → hub: how installing `version` ended, and why.
    UpdateReport {
        version: String,
        rollout: u64,
        outcome: String,
        reason: String,
    },
    /// Hub → plant: the report is recorded.
    UpdateNoted,
    /// First on a remote-action stream, plant → hub: send me the actions waiting for me.
    RemoteReady,
    /// Hub → plant, on the remote-action stream: carry out `action` (a name of
    /// `config::RemoteAction`) with `args` (a JSON object), asked by the hub admin
    /// `requested_by`; answer with a [`Frame::RemoteResult`] of the same `id`.
    RemoteAction {
        id: u64,
        action: String,
        args: String,
        requested_by: String,
    },
    /// Plant → hub: how action `id` ended, why (`detail`), and what it returned (`body`, JSON;
    /// at most [`MAX_REMOTE_BODY`] bytes, `detail` at most [`MAX_REMOTE_DETAIL`]).
    RemoteResult {
        id: u64,
        outcome: RemoteOutcome,
        detail: String,
        body: String,
    },
    /// Plant → hub, on a log stream of its own (the first frame opens it): a batch of the
    /// plant's warnings, errors and stack events, JSON `{"dropped": N, "lines": [{"at",
    /// "level", "target", "message"}]}`, at most [`MAX_LOG_BATCH`] bytes.
    Logs { body: String },
}

/// Largest log batch a plant sends in one [`Frame::Logs`].
pub const MAX_LOG_BATCH: usize = 256 * 1024;

/// How a remote action ended at the plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// Carried out.
    Ok,
    /// Not carried out, and nothing changed: the plant's `[remote] allow` forbids it, or it
    /// does not fit the plant's state.
    Refused,
    /// Tried, and failed.
    Failed,
}

impl RemoteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteOutcome::Ok => "ok",
            RemoteOutcome::Refused => "refused",
            RemoteOutcome::Failed => "failed",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            RemoteOutcome::Ok => 1,
            RemoteOutcome::Refused => 2,
            RemoteOutcome::Failed => 3,
        }
    }

    fn from_u8(v: u8) -> Option<RemoteOutcome> {
        Some(match v {
            1 => RemoteOutcome::Ok,
            2 => RemoteOutcome::Refused,
            3 => RemoteOutcome::Failed,
            _ => return None,
        })
    }
}

/// Why a side ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseCode {
    /// The peer broke the protocol (bad frame, wrong order, gap).
    Protocol,
    /// The plant is not (or no longer) allowed.
    Forbidden,
    /// The protocol version is not spoken here.
    Version,
    /// The hub cannot store right now; retry later.
    Unavailable,
}

impl RefuseCode {
    fn to_u8(self) -> u8 {
        match self {
            RefuseCode::Protocol => 1,
            RefuseCode::Forbidden => 2,
            RefuseCode::Version => 3,
            RefuseCode::Unavailable => 4,
        }
    }

    fn from_u8(v: u8) -> Option<RefuseCode> {
        Some(match v {
            1 => RefuseCode::Protocol,
            2 => RefuseCode::Forbidden,
            3 => RefuseCode::Version,
            4 => RefuseCode::Unavailable,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error("empty frame (no type byte)")]
    Empty,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("{frame} frame ends early, at byte {offset}, while reading {field}")]
    Truncated {
        frame: &'static str,
        field: &'static str,
        offset: usize,
    },
    #[error("{frame} frame: {field} at byte {offset} is not UTF-8")]
    NotUtf8 {
        frame: &'static str,
        field: &'static str,
        offset: usize,
    },
    #[error("{frame} frame: {field} at byte {offset} has the invalid value {value}")]
    BadValue {
        frame: &'static str,
        field: &'static str,
        offset: usize,
        value: u64,
    },
    #[error("{frame} frame has {0} bytes after its end", frame = .1)]
    Trailing(usize, &'static str),
}

/// What is wrong with a hello's fields. The hub checks them before it looks anything up or
/// writes anything, and refuses the hello with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("hello: plant name {0} is not valid: use 1 to {MAX_PLANT_NAME} letters, digits, '.', '_' or '-', not starting with '.'")]
    Plant(Shown),
    #[error("hello: version {0} is not valid: use 1 to {MAX_VERSION} letters, digits, '.', '-', '+' or '_'")]
    Version(Shown),
    #[error(
        "hello: journal id {0} is not valid: use 1 to {MAX_JOURNAL_ID} letters, digits or '-'"
    )]
    Journal(Shown),
}

/// A refused field as a message shows it: quoted, cut to 40 characters, with its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown(String);

impl Shown {
    fn of(s: &str) -> Shown {
        let head: String = s.chars().take(40).collect();
        if head.len() == s.len() {
            Shown(format!("{head:?}"))
        } else {
            Shown(format!("{head:?}… ({} bytes)", s.len()))
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a hello's plant name, version and journal id against their bounds.
pub fn check_hello(plant: &str, version: &str, journal: &str) -> Result<(), HelloError> {
    let plant_ok = (1..=MAX_PLANT_NAME).contains(&plant.len())
        && !plant.starts_with('.')
        && plant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plant_ok {
        return Err(HelloError::Plant(Shown::of(plant)));
    }
    let version_ok = (1..=MAX_VERSION).contains(&version.len())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    if !version_ok {
        return Err(HelloError::Version(Shown::of(version)));
    }
    let journal_ok = (1..=MAX_JOURNAL_ID).contains(&journal.len())
        && journal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !journal_ok {
        return Err(HelloError::Journal(Shown::of(journal)));
    }
    Ok(())
}

/// Appends the encoded frame, length prefix included, to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match frame {
        Frame::Hello {
            protocol,
            plant,
            version,
            journal,
        } => {
            out.push(1);
            out.extend_from_slice(&protocol.to_be_bytes());
            put_str(out, plant);
            put_str(out, version);
            put_str(out, journal);
        }
        Frame::Resume { next_seq } => {
            out.push(2);
            out.extend_from_slice(&next_seq.to_be_bytes());
        }
        Frame::Batch { entries } => {
            out.push(3);
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                out.extend_from_slice(&e.seq.to_be_bytes());
                put_str(out, &e.key);
                put_str(out, &e.device);
                put_str(out, &e.kind);
                put_str(out, &e.payload);
                match &e.occurred_at {
                    None => out.push(0),
                    Some(s) => {
                        out.push(1);
                        put_str(out, s);
                    }
                }
                out.extend_from_slice(&e.received_at_ms.to_be_bytes());
            }
        }
        Frame::Ack { through_seq } => {
            out.push(4);
            out.extend_from_slice(&through_seq.to_be_bytes());
        }
        Frame::Refuse { code, message } => {
            out.push(5);
            out.push(code.to_u8());
            put_str(out, message);
        }
        Frame::Telemetry { body } => {
            out.push(6);
            put_str(out, body);
        }
        Frame::BackupOffer { name, size, sha256 } => {
            out.push(7);
            put_str(out, name);
            out.extend_from_slice(&size.to_be_bytes());
            put_str(out, sha256);
        }
        Frame::BackupFrom { offset } => {
            out.push(8);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Frame::BackupChunk { data } => {
            out.push(9);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        Frame::BackupStored { name } => {
            out.push(10);
            put_str(out, name);
        }
        Frame::BackupFetch { id, offset } => {
            out.push(11);
            put_str(out, id);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Frame::UpdateCheck { version } => {
            out.push(12);
            put_str(out, version);
        }
        Frame::UpdateOffer {
            version,
            size,
            sha256,
            signature,
            rollout,
            images,
        } => {
            out.push(13);
            put_str(out, version);
            out.extend_from_slice(&size.to_be_bytes());
            put_str(out, sha256);
            put_str(out, signature);
            out.extend_from_slice(&rollout.to_be_bytes());
            // A tail only when there are images: an offer without them is the frame plants of
            // earlier builds decode.
            if let Some(i) = images {
                out.extend_from_slice(&i.size.to_be_bytes());
                put_str(out, &i.sha256);
                put_str(out, &i.tags.join(" "));
            }
        }
        Frame::UpdateNone => out.push(14),
        Frame::UpdateGet { version, offset } => {
            out.push(15);
            put_str(out, version);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Frame::UpdateReport {
            version,
            rollout,
            outcome,
            reason,
        } => {
            out.push(16);
            put_str(out, version);
            out.extend_from_slice(&rollout.to_be_bytes());
            put_str(out, outcome);
            put_str(out, reason);
        }
        Frame::UpdateNoted => out.push(17),
        Frame::UpdateImagesGet { version, offset } => {
            out.push(18);
            put_str(out, version);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Frame::RemoteReady => out.push(19),
        Frame::Logs { body } => {
            out.push(22);
            put_str(out, body);
        }
        Frame::RemoteAction {
            id,
            action,
            args,
            requested_by,
        } => {
            out.push(20);
            out.extend_from_slice(&id.to_be_bytes());
            put_str(out, action);
            put_str(out, args);
            put_str(out, requested_by);
        }
        Frame::RemoteResult {
            id,
            outcome,
            detail,
            body,
        } => {
            out.push(21);
            out.extend_from_slice(&id.to_be_bytes());
            out.push(outcome.to_u8());
            put_str(out, detail);
            put_str(out, body);
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads one frame from the front of `buf`. `Ok(None)` means more bytes are needed; `Ok(Some((frame,
/// used)))` gives the frame and how many bytes it took.
#[cfg(test)]
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
    decode_within(buf, MAX_FRAME)
}

/// [`decode`] with a smaller limit than [`MAX_FRAME`]: a longer frame is refused as soon as its
/// length prefix arrives, before its body is buffered.
pub fn decode_within(buf: &[u8], limit: usize) -> Result<Option<(Frame, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > limit.min(MAX_FRAME) {
        return Err(WireError::TooLong {
            len,
            limit: limit.min(MAX_FRAME),
        });
    }
    if len == 0 {
        return Err(WireError::Empty);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let body = &buf[4..4 + len];
    let frame = decode_body(body)?;
    Ok(Some((frame, 4 + len)))
}

/// A cursor over one frame's bytes that names what it was reading when it ran out.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    frame: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated {
                frame: self.frame,
                field,
                offset: self.pos,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(
            self.take(2, field)?.try_into().expect("2"),
        ))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(
            self.take(4, field)?.try_into().expect("4"),
        ))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(
            self.take(8, field)?.try_into().expect("8"),
        ))
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let len = self.u32(field)? as usize;
        let at = self.pos;
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::NotUtf8 {
            frame: self.frame,
            field,
            offset: at,
        })
    }

    fn bad(&self, field: &'static str, value: u64) -> WireError {
        WireError::BadValue {
            frame: self.frame,
            field,
            offset: self.pos,
            value,
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn finish(self, frame: Frame) -> Result<Frame, WireError> {
        if self.pos != self.buf.len() {
            return Err(WireError::Trailing(self.buf.len() - self.pos, self.frame));
        }
        Ok(frame)
    }
}

fn decode_body(body: &[u8]) -> Result<Frame, WireError> {
    let kind = body[0];
    let name = match kind {
        1 => "hello",
        2 => "resume",
        3 => "batch",
        4 => "ack",
        5 => "refuse",
        6 => "telemetry",
        7 => "backup offer",
        8 => "backup from",
        9 => "backup chunk",
        10 => "backup stored",
        11 => "backup fetch",
        12 => "update check",
        13 => "update offer",
        14 => "update none",
        15 => "update get",
        16 => "update report",
        17 => "update noted",
        18 => "update images get",
        19 => "remote ready",
        20 => "remote action",
        21 => "remote result",
        22 => "logs",
        other => return Err(WireError::UnknownType(other)),
    };
    let mut r = Reader {
        buf: body,
        pos: 1,
        frame: name,
    };
    let frame = match kind {
        1 => Frame::Hello {
            protocol: r.u16("protocol")?,
            plant: r.string("plant")?,
            version: r.string("version")?,
            journal: r.string("journal")?,
        },
        2 => Frame::Resume {
            next_seq: r.u64("next_seq")?,
        },
        3 => {
            let count = r.u32("entry count")? as usize;
            // Each entry takes at least 33 bytes: do not trust the count for the allocation.
            let mut entries = Vec::with_capacity(count.min(body.len() / 33));
            for _ in 0..count {
                let seq = r.u64("seq")?;
                let key = r.string("key")?;
                let device = r.string("device")?;
                let kind = r.string("kind")?;
                let payload = r.string("payload")?;
                let occurred_at = match r.u8("occurred_at flag")? {
                    0 => None,
                    1 => Some(r.string("occurred_at")?),
                    v => return Err(r.bad("occurred_at flag", v as u64)),
                };
                let received_at_ms = r.u64("received_at")? as i64;
                entries.push(Entry {
                    seq,
                    key,
                    device,
                    kind,
                    payload,
                    occurred_at,
                    received_at_ms,
                });
            }
            Frame::Batch { entries }
        }
        4 => Frame::Ack {
            through_seq: r.u64("through_seq")?,
        },
        6 => Frame::Telemetry {
            body: r.string("body")?,
        },
        7 => Frame::BackupOffer {
            name: r.string("name")?,
            size: r.u64("size")?,
            sha256: r.string("sha256")?,
        },
        8 => Frame::BackupFrom {
            offset: r.u64("offset")?,
        },
        9 => {
            let len = r.u32("data")? as usize;
            Frame::BackupChunk {
                data: r.take(len, "data")?.to_vec(),
            }
        }
        10 => Frame::BackupStored {
            name: r.string("name")?,
        },
        11 => Frame::BackupFetch {
            id: r.string("id")?,
            offset: r.u64("offset")?,
        },
        12 => Frame::UpdateCheck {
            version: r.string("version")?,
        },
        13 => Frame::UpdateOffer {
            version: r.string("version")?,
            size: r.u64("size")?,
            sha256: r.string("sha256")?,
            signature: r.string("signature")?,
            rollout: r.u64("rollout")?,
            images: match r.at_end() {
                true => None,
                false => Some(crate::release::Images {
                    size: r.u64("images size")?,
                    sha256: r.string("images sha256")?,
                    tags: r
                        .string("images tags")?
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                }),
            },
        },
        14 => Frame::UpdateNone,
        15 => Frame::UpdateGet {
            version: r.string("version")?,
            offset: r.u64("offset")?,
        },
        16 => Frame::UpdateReport {
            version: r.string("version")?,
            rollout: r.u64("rollout")?,
            outcome: r.string("outcome")?,
            reason: r.string("reason")?,
        },
        17 => Frame::UpdateNoted,
        18 => Frame::UpdateImagesGet {
            version: r.string("version")?,
            offset: r.u64("offset")?,
        },
        19 => Frame::RemoteReady,
        22 => Frame::Logs {
            body: r.string("body")?,
        },
        20 => Frame::RemoteAction {
            id: r.u64("id")?,
            action: r.string("action")?,
            args: r.string("args")?,
            requested_by: r.string("requested_by")?,
        },
        21 => Frame::RemoteResult {
            id: r.u64("id")?,
            outcome: {
                let v = r.u8("outcome")?;
                RemoteOutcome::from_u8(v).ok_or_else(|| r.bad("outcome", v as u64))?
            },
            detail: r.string("detail")?,
            body: r.string("body")?,
        },
        _ => {
            let code = r.u8("code")?;
            let code = RefuseCode::from_u8(code).ok_or_else(|| r.bad("code", code as u64))?;
            Frame::Refuse {
                code,
                message: r.string("message")?,
            }
        }
    };
    r.finish(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            key: format!("k{seq}"),
            device: "scanner".into(),
            kind: "scan".into(),
            payload: r#"{"q":1}"#.into(),
            occurred_at: seq.is_multiple_of(2).then(|| "2026-11-27T08:00:00Z".into()),
            received_at_ms: 1_800_000_000_000 + seq as i64,
        }
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Hello {
                protocol: PROTOCOL,
                plant: "plant-lyon".into(),
                version: "0.1.0".into(),
                journal: "5f0c2a".into(),
            },
            Frame::Resume { next_seq: 42 },
            Frame::Batch {
                entries: (1..=3).map(entry).collect(),
            },
            Frame::Batch { entries: vec![] },
            Frame::Ack { through_seq: 7 },
            Frame::Refuse {
                code: RefuseCode::Forbidden,
                message: "revoked".into(),
            },
            Frame::Telemetry {
                body: r#"{"depth":3}"#.into(),
            },
            Frame::BackupOffer {
                name: "20261128T020000Z-abcdef.tar.zst".into(),
                size: 1 << 33,
                sha256: "ab".repeat(32),
            },
            Frame::BackupFrom { offset: 12345 },
            Frame::BackupChunk {
                data: vec![0, 1, 2, 255],
            },
            Frame::BackupChunk { data: vec![] },
            Frame::BackupStored {
                name: "x.tar.zst.age".into(),
            },
            Frame::BackupFetch {
                id: "20261128T020000Z-abcdef".into(),
                offset: 7,
            },
            Frame::UpdateCheck {
                version: "0.1.0".into(),
            },
            Frame::UpdateOffer {
                version: "2.0.0".into(),
                size: 21_000_000,
                sha256: "ab".repeat(32),
                signature: "c2ln".into(),
                rollout: 3,
                images: None,
            },
            Frame::UpdateOffer {
                version: "2.0.1".into(),
                size: 21_000_000,
                sha256: "ab".repeat(32),
                signature: "c2ln".into(),
                rollout: 4,
                images: Some(crate::release::Images {
                    size: 1 << 31,
                    sha256: "cd".repeat(32),
                    tags: vec!["odoo:17-p1".into(), "redis:7-p1".into()],
                }),
            },
            Frame::UpdateNone,
            Frame::UpdateGet {
                version: "2.0.0".into(),
                offset: 4096,
            },
            Frame::UpdateReport {
                version: "2.0.0".into(),
                rollout: 3,
                outcome: "rolled_back".into(),
                reason: "exited at start twice".into(),
            },
            Frame::UpdateNoted,
            Frame::UpdateImagesGet {
                version: "2.0.1".into(),
                offset: 1 << 20,
            },
            Frame::RemoteReady,
            Frame::Logs {
                body: r#"{"dropped":0,"lines":[]}"#.into(),
            },
            Frame::RemoteAction {
                id: 17,
                action: "restart".into(),
                args: r#"{"service":"odoo"}"#.into(),
                requested_by: "ana".into(),
            },
            Frame::RemoteResult {
                id: 17,
                outcome: RemoteOutcome::Refused,
                detail: "plant.toml [remote] allow does not list restart".into(),
                body: "null".into(),
            },
            Frame::RemoteResult {
                id: u64::MAX,
                outcome: RemoteOutcome::Ok,
                detail: String::new(),
                body: r#"{"status":{}}"#.into(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_whole_and_byte_by_byte() {
        let mut stream = Vec::new();
        for f in all_frames() {
            encode(&f, &mut stream);
        }
        // Whole.
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((f, used)) = decode(&stream[at..]).unwrap() {
            got.push(f);
            at += used;
        }
        assert_eq!(got, all_frames());
        // A prefix is never an error, only "more bytes needed".
        let mut one = Vec::new();
        encode(&all_frames()[2], &mut one);
        for cut in 0..one.len() {
            assert_eq!(decode(&one[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let mut f = Vec::new();
        encode(&Frame::Resume { next_seq: 1 }, &mut f);
        f[3] -= 1; // the length now ends inside next_seq
        assert_eq!(
            decode(&f),
            Err(WireError::Truncated {
                frame: "resume",
                field: "next_seq",
                offset: 1
            })
        );
        assert_eq!(decode(&[0, 0, 0, 1, 99]), Err(WireError::UnknownType(99)));
        assert_eq!(decode(&[0, 0, 0, 0]), Err(WireError::Empty));
        assert_eq!(
            decode(&[0xff, 0, 0, 0]),
            Err(WireError::TooLong {
                len: 0xff00_0000,
                limit: MAX_FRAME
            })
        );
        let mut t = Vec::new();
        encode(&Frame::Ack { through_seq: 1 }, &mut t);
        t[3] += 1;
        t.push(0);
        assert_eq!(decode(&t), Err(WireError::Trailing(1, "ack")));
        let mut u = Vec::new();
        encode(
            &Frame::Refuse {
                code: RefuseCode::Protocol,
                message: "ab".into(),
            },
            &mut u,
        );
        let n = u.len();
        u[n - 1] = 0xff;
        assert!(matches!(
            decode(&u),
            Err(WireError::NotUtf8 {
                field: "message",
                ..
            })
        ));
    }

    #[test]
    fn hello_fields_are_bounded_and_refusals_do_not_echo_them() {
        let journal = "ab".repeat(16);
        assert_eq!(check_hello("plant-lyon", "0.1.0", &journal), Ok(()));
        assert_eq!(check_hello("p.1_x", "2.0.0-rc.1+build_7", "5f0c2a"), Ok(()));
        let huge = "x".repeat(4 * 1024 * 1024);
        let e = check_hello("plant-lyon", &huge, &journal).unwrap_err();
        assert!(matches!(e, HelloError::Version(_)));
        let m = e.to_string();
        assert!(m.len() < 300 && m.contains("(4194304 bytes)"), "{m}");
        for (plant, version, journal, field) in [
            ("", "1", "a", "plant name"),
            (".hidden", "1", "a", "plant name"),
            ("../etc", "1", "a", "plant name"),
            (&"p".repeat(65)[..], "1", "a", "plant name"),
            ("p", "", "a", "version"),
            ("p", "1.0 <b>", "a", "version"),
            ("p", &"1".repeat(65)[..], "a", "version"),
            ("p", "1", "", "journal id"),
            ("p", "1", "a;b", "journal id"),
        ] {
            let m = check_hello(plant, version, journal)
                .unwrap_err()
                .to_string();
            assert!(m.starts_with(&format!("hello: {field}")), "{m}");
        }
    }

    #[test]
    fn a_first_frame_over_its_limit_is_refused_from_its_length_alone() {
        let mut f = Vec::new();
        encode(
            &Frame::Hello {
                protocol: PROTOCOL,
                plant: "p".into(),
                version: "x".repeat(MAX_FIRST_FRAME),
                journal: "j".into(),
            },
            &mut f,
        );
        // Only the length prefix has arrived: already refused.
        assert_eq!(
            decode_within(&f[..4], MAX_FIRST_FRAME),
            Err(WireError::TooLong {
                len: f.len() - 4,
                limit: MAX_FIRST_FRAME
            })
        );
        // The same frame is fine where the full limit applies.
        assert!(matches!(decode(&f), Ok(Some((Frame::Hello { .. }, _)))));
    }

    #[test]
    fn remote_frames_say_what_is_wrong_and_a_result_over_its_bound_is_refused_by_length() {
        let mut f = Vec::new();
        encode(
            &Frame::RemoteResult {
                id: 1,
                outcome: RemoteOutcome::Ok,
                detail: "d".into(),
                body: "{}".into(),
            },
            &mut f,
        );
        f[4 + 1 + 8] = 9; // the outcome byte
        assert_eq!(
            decode(&f),
            Err(WireError::BadValue {
                frame: "remote result",
                field: "outcome",
                offset: 10,
                value: 9
            })
        );
        let mut big = Vec::new();
        encode(
            &Frame::RemoteResult {
                id: 1,
                outcome: RemoteOutcome::Ok,
                detail: String::new(),
                body: "x".repeat(MAX_REMOTE_FRAME),
            },
            &mut big,
        );
        assert!(matches!(
            decode_within(&big[..4], MAX_REMOTE_FRAME),
            Err(WireError::TooLong {
                limit: MAX_REMOTE_FRAME,
                ..
            })
        ));
        let mut action = Vec::new();
        encode(
            &Frame::RemoteAction {
                id: 2,
                action: "backup".into(),
                args: "{}".into(),
                requested_by: "ana".into(),
            },
            &mut action,
        );
        // The length says one byte less than was written: requested_by ends early.
        action[3] -= 1;
        let n = action.len();
        assert!(
            matches!(
                decode(&action[..n - 1]),
                Err(WireError::Truncated {
                    frame: "remote action",
                    field: "requested_by",
                    ..
                })
            ),
            "{:?}",
            decode(&action[..n - 1])
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]
        /// Any hello, whatever its fields: the decoder under the first-frame limit either
        /// refuses it by length or gives back exactly what was sent, and the bounds check
        /// accepts exactly the fields that follow the rules (checked against a reference).
        #[test]
        fn hellos_decode_within_the_first_frame_limit_and_their_bounds_hold(
            plant in prop_oneof!["[a-zA-Z0-9._-]{0,70}", any::<String>()],
            version in prop_oneof![
                "[0-9a-zA-Z.+_-]{0,70}".boxed(),
                any::<String>().boxed(),
                // Around the first-frame limit, on either side of it.
                (65_400usize..65_600).prop_map(|n| "1".repeat(n)).boxed(),
            ],
            journal in prop_oneof!["[0-9a-f]{0,70}", any::<String>()],
        ) {
            let frame = Frame::Hello { protocol: PROTOCOL, plant: plant.clone(), version: version.clone(), journal: journal.clone() };
            let mut bytes = Vec::new();
            encode(&frame, &mut bytes);
            match decode_within(&bytes, MAX_FIRST_FRAME) {
                Ok(Some((got, used))) => {
                    prop_assert!(bytes.len() - 4 <= MAX_FIRST_FRAME);
                    prop_assert_eq!(used, bytes.len());
                    prop_assert_eq!(got, frame);
                }
                Err(WireError::TooLong { len, limit }) => {
                    prop_assert_eq!(limit, MAX_FIRST_FRAME);
                    prop_assert_eq!(len, bytes.len() - 4);
                    prop_assert!(len > MAX_FIRST_FRAME);
                }
                other => prop_assert!(false, "{:?}", other),
            }
            let name_ok = |s: &str, max: usize, extra: &str, lead_dot: bool| {
                !s.is_empty() && s.len() <= max && (lead_dot || !s.starts_with('.'))
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b))
            };
            let expected = name_ok(&plant, MAX_PLANT_NAME, "._-", false)
                && name_ok(&version, MAX_VERSION, ".-+_", true)
                && name_ok(&journal, MAX_JOURNAL_ID, "-", true);
            let got = check_hello(&plant, &version, &journal);
            prop_assert_eq!(got.is_ok(), expected, "{:?}", got);
            if let Err(e) = got {
                prop_assert!(e.to_string().len() < 400);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100_000, ..ProptestConfig::default() })]
        /// Arbitrary bytes, and valid frames with bytes flipped, never make the decoder panic.
        #[test]
        fn the_decoder_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            frame in 0usize..64,
            flip in any::<(usize, u8)>(),
        ) {
            let _ = decode(&bytes);
            let mut with_len = (bytes.len() as u32).to_be_bytes().to_vec();
            with_len.extend_from_slice(&bytes);
            let _ = decode(&with_len);
            let mut valid = Vec::new();
            let frames = all_frames();
            encode(&frames[frame % frames.len()], &mut valid);
            let i = flip.0 % valid.len();
            valid[i] ^= flip.1;
            if let Ok(Some((_, used))) = decode(&valid) {
                prop_assert!(used <= valid.len());
            }
        }
    }
}
