//! The plant's warnings, errors and stack events, sent to the hub on a stream of their own.
//!
//! Below the journal in every way: the stream has a lower priority than the session's, a
//! hub that reads slowly only fills the plant's bounded queue (`telemetry::SHIP_QUEUE`, the
//! oldest dropped and counted), and nothing here ever waits on the journal. A batch goes
//! every second, at most [`BATCH_LINES`] lines and [`MAX_LOG_BATCH`] bytes; what could not be
//! sent goes back to the front of the queue.

use std::time::Duration;

use quinn::Connection;

use super::plant::{ConnectionTask, TaskFuture};
use super::transport::write_frame;
use super::wire::{Frame, MAX_LOG_BATCH};
use crate::telemetry::{requeue_shipped, take_shipped, LogLine};

/// Lines in one batch at most.
pub const BATCH_LINES: usize = 500;
/// How often a batch goes.
pub const EVERY: Duration = Duration::from_secs(1);
/// How long one batch may take to be written before the stream is given up and reopened.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The JSON body of a [`Frame::Logs`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Lines dropped at the plant (its queue was full) since the last batch.
    pub dropped: u64,
    pub lines: Vec<LogLine>,
}

/// Sends the plant's queued log lines to the hub on each connection.
pub struct LogShipper;

impl ConnectionTask for LogShipper {
    fn run(&self, conn: Connection) -> TaskFuture {
        Box::pin(ship(conn))
    }
}

async fn ship(conn: Connection) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let (mut send, _recv) = match conn.open_bi().await {
            Ok(s) => s,
            // The connection is gone: the replicator makes a new one, with a new shipper.
            Err(_) => return,
        };
        // The journal's batches go first.
        let _ = send.set_priority(-1);
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(EVERY);
        let failed = loop {
            tick.tick().await;
            // Room for the JSON around the lines (each line is measured as it is sent).
            let (lines, dropped) = take_shipped(BATCH_LINES, MAX_LOG_BATCH - 256);
            if lines.is_empty() && dropped == 0 {
                continue;
            }
            let batch = Batch { dropped, lines };
            let body = serde_json::to_string(&batch).expect("log lines serialize");
            let frame = Frame::Logs { body };
            match tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut send, &frame, &mut out))
                .await
            {
                Ok(Ok(())) => backoff = Duration::from_secs(1),
                _ => {
                    // A frame cut short must not be read as the start of the next one.
                    let _ = send.reset(0u32.into());
                    requeue_shipped(batch.lines, batch.dropped);
                    break true;
                }
            }
        };
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }
}
