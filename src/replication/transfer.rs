//! A file sent whole on a QUIC stream of its own: `BackupChunk` frames (the name is the wire's,
//! kept since backups used them first) until the sender finishes the stream. Backups' offsite
//! copies (`backup::offsite`) and fleet updates' downloads (`update::agent`) both use it; the
//! receiver checks the size it was offered and the SHA-256 over the whole file.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::session::frame_name;
use super::transport::{read_frame, write_frame};
use super::wire::{Frame, RefuseCode};

/// Bytes per chunk frame.
pub const CHUNK: usize = 256 * 1024;
/// The longest the peer may stay silent on a transfer's stream.
const SILENCE: Duration = Duration::from_secs(120);

/// The next frame, or an error when the peer stays silent for [`SILENCE`].
pub async fn next(recv: &mut RecvStream, buf: &mut Vec<u8>) -> anyhow::Result<Option<Frame>> {
    tokio::time::timeout(SILENCE, read_frame(recv, buf))
        .await
        .map_err(|_| anyhow!("the peer sent nothing for {} s", SILENCE.as_secs()))?
}

/// SHA-256 and size of a file, read on a blocking thread.
pub async fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String)> {
        let mut file = crate::digest::Hashing::new(std::fs::File::open(&path)?);
        std::io::copy(&mut file, &mut std::io::sink())?;
        let (_, size, sha256) = file.finish();
        Ok((size, sha256))
    })
    .await?
}

/// Sends `file` from `offset` to its end as chunks, then finishes the stream.
pub async fn send_file(send: &mut SendStream, path: &Path, offset: u64) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let (mut data, mut out) = (vec![0u8; CHUNK], Vec::new());
    loop {
        let n = file.read(&mut data).await?;
        if n == 0 {
            break;
        }
        let chunk = Frame::BackupChunk {
            data: data[..n].to_vec(),
        };
        write_frame(send, &chunk, &mut out).await?;
    }
    send.finish()?;
    Ok(())
}

/// Appends chunks to `file` until the stream ends; returns the bytes written. Refuses to go
/// past `limit`.
pub async fn receive_file(
    recv: &mut RecvStream,
    buf: &mut Vec<u8>,
    file: &mut tokio::fs::File,
    mut at: u64,
    limit: u64,
) -> anyhow::Result<u64> {
    while let Some(frame) = next(recv, buf).await? {
        match frame {
            Frame::BackupChunk { data } => {
                at += data.len() as u64;
                if at > limit {
                    bail!("more bytes than the {limit} offered");
                }
                file.write_all(&data).await?;
            }
            Frame::Refuse { message, .. } => bail!("{message}"),
            other => bail!(
                "unexpected {} frame inside a backup transfer",
                frame_name(&other)
            ),
        }
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok(at)
}

/// Refuses the stream with `message` (a protocol refusal), and gives the error to return.
pub async fn refuse(send: &mut SendStream, message: String) -> anyhow::Error {
    let frame = Frame::Refuse {
        code: RefuseCode::Protocol,
        message: message.clone(),
    };
    let _ = write_frame(send, &frame, &mut Vec::new()).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    anyhow!(message)
}
