//! One request-response codec for murmur's own protocols (`/murmur/dm/2`,
//! `/murmur/sync/1`): one frame per stream each way, the writer closes its
//! side after writing, every read is bounded, and the bytes are counted.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prometheus_client::metrics::counter::Counter;

/// A message that travels as one frame.
pub trait Frame: Sized + Send {
    /// The largest valid frame; a longer one is refused after reading at most one byte more.
    const MAX_BYTES: usize;
    /// Wire bytes.
    fn encode(&self) -> Vec<u8>;
    /// Parses wire bytes. Must never panic.
    ///
    /// # Errors
    /// `InvalidData` when malformed.
    fn decode(bytes: &[u8]) -> io::Result<Self>;
}

/// Bytes of frames read and written by one protocol (shared by every clone of its codec).
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Frame bytes read.
    pub read: Counter,
    /// Frame bytes written.
    pub written: Counter,
}

/// The codec of a protocol whose requests are `Req` and responses `Resp`.
pub struct FrameCodec<Req, Resp> {
    /// Byte counters.
    pub traffic: Traffic,
    frames: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Default for FrameCodec<Req, Resp> {
    fn default() -> Self {
        Self {
            traffic: Traffic::default(),
            frames: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            traffic: self.traffic.clone(),
            frames: PhantomData,
        }
    }
}

/// `InvalidData` with a message.
pub(crate) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Longest refusal reason a response carries, in bytes.
pub const MAX_REASON_BYTES: usize = 256;

/// A refusal reason from the wire: lossy UTF-8 (a peer may send anything),
/// cut to [`MAX_REASON_BYTES`] so that it encodes back to what it decoded from.
pub(crate) fn reason_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    crate::envelope::truncate_utf8(&text, MAX_REASON_BYTES).to_owned()
}

/// Reads the whole stream, refusing more than `max` bytes without buffering them.
pub(crate) async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(invalid("frame exceeds the size limit"));
    }
    Ok(buf)
}

async fn read_frame<F: Frame, T: AsyncRead + Unpin + Send>(io: &mut T, count: &Counter) -> io::Result<F> {
    let bytes = read_bounded(io, F::MAX_BYTES).await?;
    count.inc_by(bytes.len() as u64);
    F::decode(&bytes)
}

async fn write_frame<F: Frame, T: AsyncWrite + Unpin + Send>(io: &mut T, frame: F, count: &Counter) -> io::Result<()> {
    let bytes = frame.encode();
    count.inc_by(bytes.len() as u64);
    io.write_all(&bytes).await?;
    io.close().await
}

impl<Req: Frame + 'static, Resp: Frame + 'static> libp2p::request_response::Codec for FrameCodec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, &self.traffic.read).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, &self.traffic.read).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, req, &self.traffic.written).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, res, &self.traffic.written).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_frames_are_refused_without_reading_them_whole() {
        let max = 1000;
        let mut cursor = futures::io::Cursor::new(vec![0u8; max * 4]);
        let err = futures::executor::block_on(read_bounded(&mut cursor, max)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(cursor.position() as usize, max + 1);
    }
}
