//! The two byte pipelines of backups, both in bounded memory:
//!
//! - out: a child's stdout (pg_dump) → zstd|gzip → age → parts of at most
//!   `part_size` bytes → the store, SHA-256 and sizes computed on the way;
//! - in: an object from the store → SHA-256 → age → zstd|gzip → a child's
//!   stdin (pg_restore, psql) or nothing (verification).
//!
//! Compression and the child's pipes run on a blocking thread; uploads and
//! downloads on the async side; a channel of one or two parts between them is
//! all the buffering there is. The child is killed if the pipeline is
//! dropped. This module never decides whether a result is accepted: callers
//! compare checksums and exit statuses with the manifest.

use std::{
    io::{self, Read, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::store::{ObjectReader, Upload};
use crate::config::backup::Codec;

/// How the dump is encoded.
#[derive(Clone)]
pub struct Encoding {
    pub codec: Codec,
    pub level: i32,
    /// age recipients; empty = not encrypted.
    pub recipients: Vec<age::x25519::Recipient>,
    /// zstd worker threads; 0 compresses on the thread reading the dump
    /// (cheaper for small dumps, where starting threads costs more).
    pub threads: u32,
}

/// What a finished pipeline measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Bytes the child wrote (out) or read (in), before compression.
    pub raw_bytes: u64,
    /// Bytes of the stored object.
    pub stored_bytes: u64,
    /// SHA-256 of the stored object, lowercase hex.
    pub sha256: String,
    pub parts: u64,
}

/// Hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kills the child when dropped unless it was already reaped.
struct ChildGuard(Arc<Mutex<Child>>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.lock()
            && matches!(c.try_wait(), Ok(None))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Collects the last few KiB of a child's stderr on a thread.
fn stderr_tail(child: &mut Child) -> std::thread::JoinHandle<String> {
    let err = child.stderr.take();
    std::thread::spawn(move || {
        let Some(mut err) = err else {
            return String::new();
        };
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() > 64 * 1024 {
                all.drain(..all.len() - 16 * 1024);
            }
        }
        let text = String::from_utf8_lossy(&all).trim().to_string();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    })
}

fn program_name(cmd: &Command) -> String {
    std::path::Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---- out: child → codec → age → parts ----

/// Buffers encoded bytes into parts, hashing and counting them.
struct PartWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    part_size: usize,
    hasher: Sha256,
    stored: u64,
    parts: u64,
}

impl PartWriter {
    fn ship(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_size));
        self.parts += 1;
        self.tx
            .blocking_send(Bytes::from(full))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped"))
    }

    fn finish(mut self) -> io::Result<(String, u64, u64)> {
        if !self.buf.is_empty() || self.parts == 0 {
            self.ship()?;
        }
        Ok((hex(&self.hasher.finalize()), self.stored, self.parts))
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.stored += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.part_size - self.buf.len();
            let take = room.min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() >= self.part_size {
                self.ship()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Crypt<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Write for Crypt<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(b),
            Self::Age(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Age(w) => w.flush(),
        }
    }
}

impl<W: Write> Crypt<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Self::Plain(w) => Ok(w),
            Self::Age(w) => w.finish(),
        }
    }
}

enum Compress<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Write for Compress<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Zstd(w) => w.write(b),
            Self::Gzip(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Compress<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Self::Zstd(w) => w.finish(),
            Self::Gzip(w) => w.finish(),
        }
    }
}

fn encoder(enc: &Encoding, sink: PartWriter) -> Result<Compress<Crypt<PartWriter>>> {
    let crypt = if enc.recipients.is_empty() {
        Crypt::Plain(sink)
    } else {
        let encryptor = age::Encryptor::with_recipients(
            enc.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| anyhow!("setting up age encryption: {e}"))?;
        Crypt::Age(encryptor.wrap_output(sink)?)
    };
    Ok(match enc.codec {
        Codec::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(crypt, enc.level)?;
            // Worker threads (two for large dumps): compression runs beside
            // the thread reading pg_dump's pipe and uses a second core when
            // PostgreSQL leaves one (ops/bench/backup: within 4-16% of
            // `pg_dump | zstd -3`, against 11-35% with one; peak RSS 89 MiB).
            if enc.threads > 0 {
                z.multithread(enc.threads)?;
                // Smaller jobs than zstd's default keep the worker's memory
                // flat and well under the 100 MiB budget.
                z.set_parameter(zstd::stream::raw::CParameter::JobSize(4 << 20))?;
            }
            Compress::Zstd(z)
        }
        Codec::Gzip => Compress::Gzip(flate2::write::GzEncoder::new(
            crypt,
            flate2::Compression::new(enc.level.clamp(1, 9) as u32),
        )),
    })
}

/// Where the bytes of a dump come from.
pub enum Source {
    /// A child writing the dump to stdout (pg_dump).
    Child(Command),
    /// Chunks from a task (a shared tenant's rows); the producer reports its
    /// own errors, so the caller must check it before completing the upload.
    Channel(mpsc::Receiver<Bytes>),
}

/// Runs `source` (pg_dump writing to stdout, or a producer task) and uploads its encoded output.
/// Stops (killing the child) when `cancel` fires. `on_part` is awaited after each part with the upload's id (once the store
/// has given one) and the raw bytes so far. The upload
/// is neither completed nor aborted here: the caller does that, after
/// deciding on the result. Fails if the child exits non-zero.
pub async fn dump_into(
    source: Source,
    enc: Encoding,
    part_size: usize,
    upload: &mut Upload,
    cancel: &tokio_util::sync::CancellationToken,
    mut on_part: impl FnMut(Option<&str>, u64) -> futures::future::BoxFuture<'static, ()>,
) -> Result<Measured> {
    let (mut input, child, err_tail, name): (Box<dyn Read + Send>, _, _, String) = match source {
        Source::Child(mut cmd) => {
            let name = program_name(&cmd);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().with_context(|| {
                format!("starting {name} (is it installed? see LANDLORD_PG_BIN_DIR)")
            })?;
            let stdout = child.stdout.take().context("child has no stdout")?;
            let tail = stderr_tail(&mut child);
            (
                Box::new(stdout),
                Some(Arc::new(Mutex::new(child))),
                Some(tail),
                name,
            )
        }
        Source::Channel(rx) => (
            Box::new(ChannelReader {
                rx,
                cur: Bytes::new(),
            }),
            None,
            None,
            "export".to_string(),
        ),
    };
    let guard = child.as_ref().map(|c| ChildGuard(c.clone()));
    let raw = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    let sink = PartWriter {
        tx,
        buf: Vec::with_capacity(part_size),
        part_size,
        hasher: Sha256::new(),
        stored: 0,
        parts: 0,
    };
    let mut writer = encoder(&enc, sink)?;
    let raw_t = raw.clone();
    let child_t = child.clone();
    let worker = tokio::task::spawn_blocking(move || -> Result<Measured> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the dump"),
            };
            raw_t.fetch_add(n as u64, Ordering::Relaxed);
            writer.write_all(&buf[..n]).context("encoding the dump")?;
        }
        if let Some(child) = child_t {
            let status = child
                .lock()
                .map_err(|_| anyhow!("child lock poisoned"))?
                .wait()?;
            let tail = err_tail
                .map(|t| t.join().unwrap_or_default())
                .unwrap_or_default();
            if !status.success() {
                bail!("{name} failed ({status}): {tail}");
            }
        }
        let sink = writer.finish()?.finish()?;
        let (sha256, stored_bytes, parts) = sink.finish()?;
        Ok(Measured {
            raw_bytes: raw_t.load(Ordering::Relaxed),
            stored_bytes,
            sha256,
            parts,
        })
    });
    loop {
        let part = tokio::select! {
            p = rx.recv() => p,
            _ = cancel.cancelled() => bail!("cancelled: the job no longer owns its claim"),
        };
        let Some(part) = part else { break };
        upload.part(part).await?;
        on_part(upload.id(), raw.load(Ordering::Relaxed)).await;
        if upload.id().is_some() {
            crate::failpoint::hit("backup.after_upload_started");
        }
        crate::failpoint::pause("backup.pause_after_part").await;
    }
    let measured = worker.await.context("dump thread panicked")??;
    drop(guard);
    Ok(measured)
}

// ---- in: object → age → codec → child ----

/// How a stored object is decoded.
pub struct Decoding {
    pub codec: Codec,
    /// Identities to decrypt with; `None` = the object is not encrypted.
    pub identities: Option<Vec<age::x25519::Identity>>,
}

/// Where decoded bytes go.
pub enum Sink {
    /// A child reading stdin that must consume everything and exit 0.
    Child(Command),
    /// A child that may stop reading early (`pg_restore --list`); the rest is
    /// still decoded (and so checked) and dropped.
    Peek(Command),
    /// Decode and drop (checksum and codec check only).
    Discard,
    /// Decoded chunks to a task (a shared tenant's import), which must not
    /// commit before the caller has checked the checksum.
    Channel(mpsc::Sender<Bytes>),
}

/// Sends written bytes to a task.
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(b))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the import stopped"))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads parts from the async side.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

fn decoder(dec: &Decoding, input: ChannelReader) -> Result<Box<dyn Read + Send>> {
    let plain: Box<dyn Read + Send> = match &dec.identities {
        None => Box::new(input),
        Some(ids) => {
            let d = age::Decryptor::new(input)
                .map_err(|e| anyhow!("the object is not a valid age file: {e}"))?;
            let r = d
                .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
                .map_err(|e| anyhow!("cannot decrypt the backup (wrong age key?): {e}"))?;
            Box::new(r)
        }
    };
    Ok(match dec.codec {
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(plain)?),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(plain)),
    })
}

/// Why streaming a backup back failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreFailure {
    /// Reading the object from the store failed (worth retrying).
    #[error("reading the backup from the store: {0:#}")]
    Read(anyhow::Error),
    /// The loader (pg_restore, psql) could not be started.
    #[error("{0:#}")]
    Start(anyhow::Error),
    /// The bytes did not decode or load. The object was still read to its
    /// end, so `read` has the checksum and size of all of it.
    #[error("{error:#}")]
    Load {
        error: anyhow::Error,
        read: Box<Measured>,
    },
}

/// Streams `object` through the decoders into `sink`. Fails on a decode
/// error, a child that exits non-zero, or a read error; the caller compares
/// the returned checksum and size with what it expected.
pub async fn restore_from(
    mut object: ObjectReader,
    dec: Decoding,
    sink: Sink,
) -> Result<Measured, RestoreFailure> {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let (cmd, peek, out_tx) = match sink {
        Sink::Child(c) => (Some(c), false, None),
        Sink::Peek(c) => (Some(c), true, None),
        Sink::Discard => (None, false, None),
        Sink::Channel(t) => (None, false, Some(t)),
    };
    let name = match &cmd {
        Some(c) => program_name(c),
        None if out_tx.is_some() => "the import".to_string(),
        None => String::new(),
    };
    let loader = match cmd {
        Some(cmd) => Some(Loader::spawn(cmd, &name).map_err(RestoreFailure::Start)?),
        None => None,
    };
    let guard = loader.as_ref().map(|l| ChildGuard(l.child.clone()));
    let worker = tokio::task::spawn_blocking(move || {
        let input = ChannelReader {
            rx,
            cur: Bytes::new(),
        };
        decode_into(&dec, input, loader, out_tx, peek, &name)
    });
    // Read the object to its end even when the decoder or the loader gave
    // up early, so a failure can say whether the bytes themselves are wrong.
    let mut read = match read_object(&mut object, tx).await {
        Ok(read) => read,
        Err(e) => {
            let _ = worker.await;
            return Err(RestoreFailure::Read(e));
        }
    };
    let decoded = worker
        .await
        .context("restore thread panicked")
        .and_then(|r| r);
    drop(guard);
    read.raw_bytes = *decoded.as_ref().unwrap_or(&0);
    match decoded {
        Ok(_) => Ok(read),
        Err(error) => Err(RestoreFailure::Load {
            error,
            read: Box::new(read),
        }),
    }
}

/// A started loader (pg_restore, psql): its stdin and the tail of its stderr.
struct Loader {
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    tail: std::thread::JoinHandle<String>,
}

impl Loader {
    fn spawn(mut cmd: Command, name: &str) -> Result<Self> {
        cmd.stdin(Stdio::piped()).stderr(Stdio::piped());
        let mut c = cmd.spawn().with_context(|| {
            format!("starting {name} (is it installed? see LANDLORD_PG_BIN_DIR)")
        })?;
        let stdin = c.stdin.take().context("child has no stdin")?;
        let tail = stderr_tail(&mut c);
        Ok(Self {
            child: Arc::new(Mutex::new(c)),
            stdin,
            tail,
        })
    }
}

/// The blocking side of [`restore_from`]: decodes `input` into the loader
/// (or `out_tx`, or nowhere), then waits for the loader to exit 0. Returns
/// the decoded size. A `peek` loader may stop reading early; the rest is
/// still decoded.
fn decode_into(
    dec: &Decoding,
    input: ChannelReader,
    loader: Option<Loader>,
    out_tx: Option<mpsc::Sender<Bytes>>,
    peek: bool,
    name: &str,
) -> Result<u64> {
    let identities = dec.identities.is_some();
    let mut input = decoder(dec, input)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut raw = 0u64;
    let (mut stdin, child): (Option<Box<dyn Write + Send>>, _) = match (loader, out_tx) {
        (Some(l), _) => (Some(Box::new(l.stdin)), Some((l.child, l.tail))),
        (None, Some(tx)) => (Some(Box::new(ChannelWriter(tx))), None),
        (None, None) => (None, None),
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let what = if identities {
                    "decrypting/decompressing"
                } else {
                    "decompressing"
                };
                return Err(anyhow!(
                    "{what} the backup: {e} (corrupt or truncated object?)"
                ));
            }
        };
        raw += n as u64;
        if let Some(w) = &mut stdin
            && let Err(e) = w.write_all(&buf[..n])
        {
            if peek && e.kind() == io::ErrorKind::BrokenPipe {
                stdin = None;
            } else {
                drop(stdin.take());
                let tail = match child {
                    Some((_, t)) => t.join().unwrap_or_default(),
                    None => String::new(),
                };
                bail!("{name} stopped reading: {e}: {tail}");
            }
        }
    }
    // Anything after the end of the compressed stream is corruption too.
    drop(stdin);
    if let Some((c, tail)) = child {
        let status = c
            .lock()
            .map_err(|_| anyhow!("child lock poisoned"))?
            .wait()?;
        let tail = tail.join().unwrap_or_default();
        if !status.success() {
            bail!("{name} failed ({status}): {tail}");
        }
    }
    Ok(raw)
}

/// Reads `object` to its end, hashing and counting it, and passes each part
/// to `tx` for as long as the decoder takes them. `raw_bytes` is left 0.
async fn read_object(object: &mut ObjectReader, tx: mpsc::Sender<Bytes>) -> Result<Measured> {
    let mut hasher = Sha256::new();
    let mut stored = 0u64;
    let mut parts = 0u64;
    let mut tx = Some(tx);
    while let Some(chunk) = object.next().await? {
        hasher.update(&chunk);
        stored += chunk.len() as u64;
        parts += 1;
        if let Some(t) = &tx
            && t.send(chunk).await.is_err()
        {
            tx = None;
        }
    }
    Ok(Measured {
        raw_bytes: 0,
        stored_bytes: stored,
        sha256: hex(&hasher.finalize()),
        parts,
    })
}
