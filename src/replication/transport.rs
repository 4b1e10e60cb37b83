//! Frames over a QUIC stream: the only place either side reads or writes the wire.

use quinn::{RecvStream, SendStream};

use super::wire::{self, Frame};

/// Reads the next frame; `None` when the peer finished the stream cleanly between frames.
///
/// Cancel-safe: bytes received stay in `buf` (which the caller keeps), so dropping this future
/// inside `select!` loses nothing.
pub async fn read_frame(recv: &mut RecvStream, buf: &mut Vec<u8>) -> anyhow::Result<Option<Frame>> {
    read_frame_within(recv, buf, wire::MAX_FRAME).await
}

/// [`read_frame`] refusing a frame longer than `limit` as soon as its length arrives.
pub async fn read_frame_within(
    recv: &mut RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> anyhow::Result<Option<Frame>> {
    loop {
        if let Some((frame, used)) = wire::decode_within(buf, limit)? {
            buf.drain(..used);
            return Ok(Some(frame));
        }
        match recv.read_chunk(usize::MAX, true).await? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None if buf.is_empty() => return Ok(None),
            None => anyhow::bail!("the stream ended inside a frame"),
        }
    }
}

/// Writes one frame, reusing `out` as the encoding buffer.
pub async fn write_frame(
    send: &mut SendStream,
    frame: &Frame,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    out.clear();
    wire::encode(frame, out);
    send.write_all(out).await?;
    Ok(())
}
