//! Parallel gzip in the style of pigz: the input is cut into 1 MiB blocks,
//! worker threads deflate each block with the previous block's last 32 KiB
//! as preset dictionary, ending it with a sync flush (byte-aligned, not
//! final), and the blocks are stitched in order into ONE gzip member with
//! the CRC-32s combined. Any gzip reader sees an ordinary single-member
//! stream. The output depends only on the input and the level, never on the
//! number of threads or their timing, so layer digests are reproducible.
//!
//! Memory is bounded: at most `2 × threads` blocks are in flight; `write`
//! waits for the oldest one when that many are queued.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

pub const BLOCK_SIZE: usize = 1 << 20;
const DICT_SIZE: usize = 32 * 1024;
/// Go's `compress/gzip` and zlib's default level.
pub const DEFAULT_LEVEL: u32 = 6;

/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS
/// "unknown" (what Go's `compress/gzip` writes, so headers match BuildKit's).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Done {
    data: Vec<u8>,
    crc: Crc,
    len: u64,
}

type JobResult = (u64, io::Result<Done>);

struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<JobResult>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize, level: u32) -> io::Result<Pool> {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, results) = mpsc::channel::<JobResult>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kiln-gzip-{i}"))
                .spawn(move || worker(&job_rx, &res_tx, level))?;
            handles.push(handle);
        }
        Ok(Pool {
            jobs: Some(job_tx),
            results,
            handles,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job channel ends the workers' loops.
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>, results: &mpsc::Sender<JobResult>, level: u32) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let seq = job.seq;
        let done = catch_unwind(AssertUnwindSafe(|| compress_block(&job, level)))
            .unwrap_or_else(|_| Err(io::Error::other("gzip worker panicked")));
        if results.send((seq, done)).is_err() {
            return;
        }
    }
}

fn compress_block(job: &Job, level: u32) -> io::Result<Done> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let mut crc = Crc::new();
    crc.update(&job.data);
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(c.total_in()).map_err(io::Error::other)?;
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() == job.data.len() as u64;
        // zlib's contract: a sync flush is complete once a call returns
        // with output space left over; a finish once it reports StreamEnd.
        let done = match status {
            Status::StreamEnd => true,
            _ => !job.last && all_in && out.len() < out.capacity(),
        };
        if done {
            break;
        }
    }
    Ok(Done {
        data: out,
        crc,
        len: job.data.len() as u64,
    })
}

/// A `Write` that gzips what it is given, on `threads` worker threads once
/// the input is larger than one block (small layers never start a thread).
pub struct ParallelGzEncoder<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    block: Vec<u8>,
    dict: Vec<u8>,
    next_seq: u64,
    next_write: u64,
    waiting: BTreeMap<u64, Done>,
    pool: Option<Pool>,
    crc: Crc,
    total_in: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    pub fn new(out: W, level: u32, threads: usize) -> ParallelGzEncoder<W> {
        ParallelGzEncoder {
            out,
            level: level.min(9),
            threads: threads.max(1),
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            next_seq: 0,
            next_write: 0,
            waiting: BTreeMap::new(),
            pool: None,
            crc: Crc::new(),
            total_in: 0,
            header_written: false,
        }
    }

    fn take_job(&mut self, last: bool) -> Job {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let dict_start = data.len().saturating_sub(DICT_SIZE);
        let next_dict = data[dict_start..].to_vec();
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let seq = self.next_seq;
        self.next_seq += 1;
        Job {
            seq,
            data,
            dict,
            last,
        }
    }

    fn submit(&mut self, job: Job) -> io::Result<()> {
        if self.pool.is_none() {
            self.pool = Some(Pool::start(self.threads, self.level)?);
        }
        let sent = self
            .pool
            .as_ref()
            .and_then(|p| p.jobs.as_ref())
            .is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            return Err(io::Error::other("gzip workers are gone"));
        }
        while self.next_seq - self.next_write >= 2 * self.threads as u64 {
            self.wait_one()?;
        }
        Ok(())
    }

    /// Receives one finished block and writes whatever is now in order.
    fn wait_one(&mut self) -> io::Result<()> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip workers not started"))?;
        let (seq, done) = pool
            .results
            .recv()
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.waiting.insert(seq, done?);
        while let Some(done) = self.waiting.remove(&self.next_write) {
            self.emit(&done)?;
            self.next_write += 1;
        }
        Ok(())
    }

    fn emit(&mut self, done: &Done) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(&GZIP_HEADER)?;
            self.header_written = true;
        }
        self.out.write_all(&done.data)?;
        self.crc.combine(&done.crc);
        self.total_in += done.len;
        Ok(())
    }

    /// Compresses what is left, writes the gzip trailer and returns the
    /// inner writer (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        let job = self.take_job(true);
        if self.pool.is_none() {
            // Everything fit in one block: no thread is worth starting.
            let done = compress_block(&job, self.level)?;
            self.emit(&done)?;
            self.next_write += 1;
        } else {
            self.submit(job)?;
            while self.next_write < self.next_seq {
                self.wait_one()?;
            }
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&(self.total_in as u32).to_le_bytes());
        self.out.write_all(&trailer)?;
        self.pool = None;
        let ParallelGzEncoder { out, .. } = self;
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_SIZE {
            let job = self.take_job(false);
            self.submit(job)?;
        }
        Ok(n)
    }

    /// Only the inner writer is flushed: cutting a block early would make
    /// the output depend on when flush was called.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn pseudo_random(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a small LCG over a short alphabet.
        let mut x: u32 = 12345;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefgh \n"[(x >> 16) as usize % 10]
            })
            .collect()
    }

    fn gz(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut enc = ParallelGzEncoder::new(Vec::new(), DEFAULT_LEVEL, threads);
        for part in data.chunks(chunk.max(1)) {
            enc.write_all(part).unwrap();
        }
        enc.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        // GzDecoder (not Multi) reads exactly one member: the stream must
        // be a single member to decode fully.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn empty_and_small_inputs_are_valid_gzip() {
        for len in [0, 1, 1000] {
            let data = pseudo_random(len);
            assert_eq!(gunzip(&gz(&data, 2, 4096)), data);
        }
    }

    #[test]
    fn multi_block_input_is_one_member_and_independent_of_threads() {
        let data = pseudo_random(2 * BLOCK_SIZE + 777);
        let one = gz(&data, 1, 100_000);
        let three = gz(&data, 3, 65_536);
        assert_eq!(one, three);
        assert_eq!(gunzip(&three), data);
        assert!(
            three.len() < data.len() / 2,
            "dictionary keeps compression good"
        );
    }

    #[test]
    fn exact_block_multiple_ends_with_an_empty_final_block() {
        let data = pseudo_random(BLOCK_SIZE);
        assert_eq!(gunzip(&gz(&data, 2, 8192)), data);
    }

    #[test]
    fn parallel_encoder_uses_worker_threads() {
        let data = pseudo_random(2 * BLOCK_SIZE + 1);
        let mut enc = ParallelGzEncoder::new(Vec::new(), DEFAULT_LEVEL, 2);
        enc.write_all(&data).unwrap();
        assert_eq!(enc.pool.as_ref().map(|p| p.handles.len()), Some(2));
        assert_eq!(gunzip(&enc.finish().unwrap()), data);
    }
}
