//! The control socket's server: [`bind`] (mode 0600, a stale socket replaced) and [`serve`],
//! one request per line, each answered by [`Control`]'s actions and audited as the local user
//! that asked (`cli (uid N)`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::{Control, Request, Response};

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Binds the socket (mode 0600), replacing a stale one left by a crash.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another plantd is already running on this data directory (it answers on {})",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(listener)
}

/// Serves control connections until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let control = control.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, &control).await {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn connection(stream: UnixStream, control: &Control) -> std::io::Result<()> {
    // The socket is mode 0600, so this is the daemon's own user (root on a plant server).
    let who = match stream.peer_cred() {
        Ok(cred) => format!("cli (uid {})", cred.uid()),
        Err(_) => "cli".to_string(),
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = if line.len() > MAX_LINE {
            Response::Error {
                message: format!("request over {MAX_LINE} bytes"),
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => control.handle_audited(request, &who).await,
                Err(e) => Response::Error {
                    message: format!("not a control request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize");
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}
