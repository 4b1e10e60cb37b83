//! The daemon's end: the first SIGTERM or SIGINT.
//!
//! The handlers are installed before anything else starts, so that a stop that comes while the
//! daemon is still starting (systemd's `stop` right after `start`, a test's SIGTERM as soon as
//! the socket is there) is heard and carried out once the start is done, rather than ending the
//! process by the signal's default action with nothing flushed.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, listened for from the moment this is made.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers: from now on neither signal ends the process by itself.
    pub fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first of them (also one that came before this was called) and says which.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
