//! A build's log, shipped to the hub while the build runs.
//!
//! The builder writes through [`LogWriter`] (a plain `Write`, as
//! `kiln_build::Progress` wants) into a bounded buffer; a background task
//! posts the buffer to the hub's log endpoint every [`FLUSH_INTERVAL`] or as
//! soon as [`FLUSH_BYTES`] are waiting. Writing never waits for the network:
//! when the hub stays unreachable and the buffer fills, the oldest bytes are
//! dropped and a marker in the log says how many.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::hubapi::{HubClient, HubError};

/// How long output may wait before it is sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(300);
/// How much output is sent at once, without waiting for the interval.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// The most one request carries.
const MAX_POST: usize = 1024 * 1024;
/// The most output held while the hub is unreachable.
pub const MAX_BUFFER: usize = 8 * 1024 * 1024;
/// The pause after a failed post (on top of the client's own retries).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Bytes dropped since the last successful post.
    dropped: u64,
    /// No more output will come: ship the rest and end.
    closed: bool,
    /// The hub said the task is not ours: discard everything.
    stopped: bool,
}

impl Pending {
    /// Drops the oldest bytes beyond [`MAX_BUFFER`].
    fn trim(&mut self) {
        if self.buf.len() > MAX_BUFFER {
            let excess = self.buf.len() - MAX_BUFFER;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A writer that panicked mid-append leaves bytes, not broken state.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The build's side: append-only, never blocks on the network.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

impl io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut p = self.shared.lock();
        if p.stopped {
            return Ok(data.len());
        }
        p.buf.extend_from_slice(data);
        p.trim();
        let full = p.buf.len() >= FLUSH_BYTES;
        drop(p);
        if full {
            self.shared.wake.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The task posting one build's log to the hub; aborted when dropped.
pub struct LogShipper {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl LogShipper {
    /// Starts shipping the log of task `task`.
    pub fn start(hub: HubClient, task: i64) -> LogShipper {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        let handle = tokio::spawn(ship(hub, task, shared.clone()));
        LogShipper {
            shared,
            task: Some(handle),
        }
    }

    /// A writer appending to the log.
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            shared: self.shared.clone(),
        }
    }

    /// Sends what is still buffered, giving up after `within`; later
    /// writes are discarded.
    pub async fn finish(mut self, within: Duration) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(within, &mut task).await.is_err()
        {
            tracing::warn!("the build log could not be sent within {within:?}; giving up");
            task.abort();
        }
    }
}

impl Drop for LogShipper {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The next request's body: a marker for dropped output, then as much of
/// the buffer as one post takes. While more output may come, an
/// incomplete UTF-8 sequence at the end stays for the next post, so the
/// hub never sees a character split across appends.
fn take(p: &mut Pending) -> Option<(Bytes, usize, u64)> {
    let mut n = p.buf.len().min(MAX_POST);
    if n > 0 && !p.closed {
        n = complete_utf8_prefix(&p.buf[..n]);
    }
    if n == 0 && p.dropped == 0 {
        return None;
    }
    let mut body = Vec::with_capacity(n + 100);
    if p.dropped > 0 {
        body.extend_from_slice(
            format!(
                "\n[kiln-worker: {} bytes of build output dropped: the hub was unreachable]\n",
                p.dropped
            )
            .as_bytes(),
        );
    }
    body.extend(p.buf.drain(..n));
    let dropped = std::mem::take(&mut p.dropped);
    Some((body.into(), n, dropped))
}

/// The length of `data` without a trailing incomplete UTF-8 sequence
/// (invalid bytes elsewhere are the writer's business and go as they are).
fn complete_utf8_prefix(data: &[u8]) -> usize {
    let tail_start = data.len().saturating_sub(3);
    for start in (tail_start..data.len()).rev() {
        let b = data[start];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return data.len(),
        };
        return if data.len() - start < needed {
            start
        } else {
            data.len()
        };
    }
    data.len()
}

/// Puts a body that could not be sent back in front of the buffer.
fn put_back(p: &mut Pending, body: &Bytes, n: usize, dropped: u64) {
    let chunk = &body[body.len() - n..];
    p.buf.splice(0..0, chunk.iter().copied());
    p.dropped += dropped;
    p.trim();
}

async fn ship(hub: HubClient, task: i64, shared: Arc<Shared>) {
    let mut warned = false;
    loop {
        let closed = shared.lock().closed;
        if !closed {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
            }
        }
        loop {
            let taken = {
                let mut p = shared.lock();
                if p.stopped {
                    return;
                }
                take(&mut p)
            };
            let Some((body, n, dropped)) = taken else {
                if shared.lock().closed {
                    return;
                }
                break;
            };
            match hub.append_log(task, body.clone()).await {
                Ok(()) => warned = false,
                Err(HubError::Stopped { .. }) => {
                    shared.lock().stopped = true;
                    return;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(task, "sending the build log: {e}; will retry");
                        warned = true;
                    }
                    put_back(&mut shared.lock(), &body, n, dropped);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_utf8_waits_for_the_next_post() {
        let e_acute = "é".as_bytes(); // 2 bytes
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(complete_utf8_prefix(b"abc"), 3);
        assert_eq!(complete_utf8_prefix(b""), 0);
        let mut d = b"ab".to_vec();
        d.push(e_acute[0]);
        assert_eq!(complete_utf8_prefix(&d), 2);
        d.push(e_acute[1]);
        assert_eq!(complete_utf8_prefix(&d), 4);
        let mut d = b"x".to_vec();
        d.extend_from_slice(&euro[..2]);
        assert_eq!(complete_utf8_prefix(&d), 1);
        // Invalid bytes are not held back forever.
        assert_eq!(complete_utf8_prefix(b"a\xff"), 2);
        assert_eq!(complete_utf8_prefix(b"\x80\x80\x80\x80"), 4);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_output_and_says_so() {
        let mut p = Pending {
            buf: vec![b'a'; MAX_BUFFER],
            ..Pending::default()
        };
        p.buf.extend_from_slice(b"newest");
        p.trim();
        assert_eq!(p.buf.len(), MAX_BUFFER);
        assert!(p.buf.ends_with(b"newest"));
        assert_eq!(p.dropped, 6);
        let (body, n, dropped) = take(&mut p).unwrap();
        assert_eq!((n, dropped), (MAX_POST, 6));
        assert!(
            body.starts_with(b"\n[kiln-worker: 6 bytes of build output dropped"),
            "{:?}",
            String::from_utf8_lossy(&body[..80])
        );
        assert_eq!(p.dropped, 0);
        // A failed post goes back in front, marker excluded.
        put_back(&mut p, &body, n, dropped);
        assert_eq!(p.buf.len(), MAX_BUFFER);
        assert_eq!(p.dropped, 6);
        assert!(p.buf.ends_with(b"newest"));
    }

    #[test]
    fn nothing_to_take_is_none() {
        let mut p = Pending::default();
        assert!(take(&mut p).is_none());
        p.buf.extend_from_slice(&"€".as_bytes()[..1]);
        assert!(take(&mut p).is_none());
        p.closed = true;
        assert_eq!(take(&mut p).unwrap().1, 1);
    }
}
