//! Call recording: both directions into one stereo 16-bit WAV (caller left, agent
//! right; in a conference the right channel is the agent and the added party mixed),
//! aligned by arrival time with silence filling gaps. The relay only does a
//! non-blocking `try_send` of a fixed-size frame into a bounded channel; a few writer
//! threads shared by every recording of the process (one per core, at most 4) take
//! what is queued every 20 ms, decode, align and write. A full channel drops and
//! counts. (A thread per recording was a wake-up per frame, and tokio's blocking pool
//! of 512 threads left recordings beyond the 512th unwritten until others ended.)

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::error::{MediaError, Result};
use crate::g711::Law;

/// Which side of the recording a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Left: the caller.
    Caller = 0,
    /// Right: the agent.
    Agent = 1,
}

/// Largest payload carried per frame (60 ms of G.711); longer payloads are split.
pub const MAX_FRAME_BYTES: usize = 480;

/// One chunk of received audio, sent by value so the hot path never allocates.
#[derive(Debug, Clone, Copy)]
pub struct RecFrame {
    channel: Channel,
    at: Instant,
    law: Law,
    len: u16,
    data: [u8; MAX_FRAME_BYTES],
}

/// Gaps shorter than this are treated as jitter and not filled.
const GAP_TOLERANCE: u64 = 480;
/// A silent side is filled so it trails the other by at most this (bounds memory).
const MAX_SKEW: u64 = 4000;
/// Audio arriving this far ahead of wall-clock time (a peer sending faster than real
/// time) is dropped, so a flood cannot grow the queues without bound.
const MAX_LEAD: u64 = 8000;

/// Sans-IO alignment of two channels into interleaved stereo samples.
#[derive(Debug)]
pub struct Aligner {
    start: Instant,
    written: [u64; 2],
    queues: [VecDeque<i16>; 2],
}

impl Aligner {
    /// An aligner whose time zero is `start`.
    pub fn new(start: Instant) -> Self {
        Aligner {
            start,
            written: [0; 2],
            queues: [VecDeque::new(), VecDeque::new()],
        }
    }

    /// Samples queued or written for a channel so far.
    fn total(&self, c: usize) -> u64 {
        self.written[c] + self.queues[c].len() as u64
    }

    fn fill(&mut self, c: usize, upto: u64) {
        let have = self.total(c);
        if upto > have {
            self.queues[c].extend(std::iter::repeat_n(0i16, (upto - have) as usize));
        }
    }

    /// Adds decoded samples for `channel` that arrived at `at`. Returns false (and
    /// drops them) if that channel is already more than a second ahead of real time.
    pub fn push(
        &mut self,
        channel: Channel,
        at: Instant,
        samples: impl Iterator<Item = i16>,
    ) -> bool {
        let c = channel as usize;
        let pos = (at.saturating_duration_since(self.start).as_micros() * 8 / 1000) as u64;
        if self.total(c) > pos + MAX_LEAD {
            return false;
        }
        if pos > self.total(c) + GAP_TOLERANCE {
            self.fill(c, pos);
        }
        self.queues[c].extend(samples);
        let other = 1 - c;
        self.fill(other, pos.saturating_sub(MAX_SKEW));
        true
    }

    /// Takes the interleaved stereo samples ready on both channels.
    pub fn drain(&mut self, mut out: impl FnMut(i16, i16) -> Result<()>) -> Result<()> {
        while let (Some(&l), Some(&r)) = (self.queues[0].front(), self.queues[1].front()) {
            out(l, r)?;
            self.queues[0].pop_front();
            self.queues[1].pop_front();
            self.written[0] += 1;
            self.written[1] += 1;
        }
        Ok(())
    }

    /// Adds caller samples of a one-channel recording (a voicemail message): the unused
    /// right channel follows as silence so [`Aligner::drain`] keeps its pace.
    pub fn push_mono(&mut self, at: Instant, samples: impl Iterator<Item = i16>) -> bool {
        let ok = self.push(Channel::Caller, at, samples);
        let n = self.total(0);
        self.fill(1, n);
        ok
    }

    /// Pads the shorter channel and drains everything.
    pub fn finish(&mut self, out: impl FnMut(i16, i16) -> Result<()>) -> Result<()> {
        let n = self.total(0).max(self.total(1));
        self.fill(0, n);
        self.fill(1, n);
        self.drain(out)
    }
}

/// The hot-path side of a recording: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct RecorderTap {
    tx: mpsc::Sender<RecFrame>,
    dropped: Arc<AtomicU64>,
}

impl RecorderTap {
    /// Queues received G.711 audio for `channel`. Drops (and counts) when the writer
    /// is behind instead of blocking the relay.
    pub fn push(&self, channel: Channel, law: Law, payload: &[u8], at: Instant) {
        for chunk in payload.chunks(MAX_FRAME_BYTES) {
            let mut f = RecFrame {
                channel,
                at,
                law,
                len: chunk.len() as u16,
                data: [0; MAX_FRAME_BYTES],
            };
            f.data[..chunk.len()].copy_from_slice(chunk);
            if self.tx.try_send(f).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Frames dropped so far because the channel was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A finished recording, for the CDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The WAV file.
    pub path: PathBuf,
    /// Its length.
    pub duration: Duration,
    /// Frames dropped because the writer fell behind.
    pub dropped_frames: u64,
}

/// The writer side; [`RecordingJob::finish`] returns when the file is complete.
#[derive(Debug)]
pub struct RecordingJob {
    done: oneshot::Receiver<Result<(PathBuf, u64)>>,
    dropped: Arc<AtomicU64>,
}

impl RecordingJob {
    /// Waits for the writer to finalise the WAV header. The writer stops once every
    /// [`RecorderTap`] clone has been dropped, so drop (or stop the relay holding)
    /// the taps first.
    pub async fn finish(self) -> Result<Recording> {
        let (path, frames) = self
            .done
            .await
            .map_err(|_| MediaError::TaskGone("recording writer"))??;
        Ok(Recording {
            path,
            duration: Duration::from_micros(frames * 125),
            dropped_frames: self.dropped.load(Ordering::Relaxed),
        })
    }
}

/// Mean absolute amplitude above which a frame counts as voice (about -40 dBFS): line
/// noise and comfort noise stay below, speech is well above.
pub const VOICE_LEVEL: u32 = 330;

/// Whether a frame of samples is louder than [`VOICE_LEVEL`] (sans-IO, for silence
/// detection in voicemail).
pub fn is_voice(samples: &[i16]) -> bool {
    if samples.is_empty() {
        return false;
    }
    let sum: u64 = samples.iter().map(|s| s.unsigned_abs() as u64).sum();
    sum / samples.len() as u64 > VOICE_LEVEL as u64
}

/// What a one-channel recording heard, readable while it runs: when the caller last
/// spoke, so the call task can end a message after a silence without audio reaching it.
#[derive(Debug, Clone)]
pub struct VoiceActivity {
    /// Microseconds from the recording's start to the end of the last voiced frame;
    /// 0 = none yet.
    last_voice_us: Arc<AtomicU64>,
}

impl VoiceActivity {
    /// Time from the recording's start to the end of the last voiced frame (`None`: the
    /// caller has not spoken yet).
    pub fn last_voice(&self) -> Option<Duration> {
        match self.last_voice_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// Starts a one-channel recording (8 kHz 16-bit mono WAV) of the caller's audio into
/// `path`: a voicemail message. Frames of the agent channel are ignored. The writer runs
/// off the relay's path like [`start_recording`]'s.
pub fn start_mono_recording(
    path: &Path,
    capacity: usize,
    start: Instant,
) -> Result<(RecorderTap, RecordingJob, VoiceActivity)> {
    let activity = VoiceActivity {
        last_voice_us: Arc::new(AtomicU64::new(0)),
    };
    let voice = Some(Arc::clone(&activity.last_voice_us));
    let (tap, job) = spawn_writer(path, capacity, start, voice)?;
    Ok((tap, job, activity))
}

/// Starts recording into `path` (created or truncated). `capacity` is the channel
/// depth in frames (a 20 ms frame per direction: 100 ≈ 1 s of slack).
pub fn start_recording(
    path: &Path,
    capacity: usize,
    start: Instant,
) -> Result<(RecorderTap, RecordingJob)> {
    spawn_writer(path, capacity, start, None)
}

/// A recording: stereo, or (`voice` given) the caller alone in mono, with the end of
/// their last voiced frame stored in `voice`. Written by the [`pool`].
fn spawn_writer(
    path: &Path,
    capacity: usize,
    start: Instant,
    voice: Option<Arc<AtomicU64>>,
) -> Result<(RecorderTap, RecordingJob)> {
    let spec = hound::WavSpec {
        channels: if voice.is_some() { 1 } else { 2 },
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let writer = hound::WavWriter::create(path, spec)?;
    let (tx, rx) = mpsc::channel::<RecFrame>(capacity.max(1));
    let (done_tx, done) = oneshot::channel();
    let dropped = Arc::new(AtomicU64::new(0));
    pool().add(Writing {
        rx,
        al: Aligner::new(start),
        writer: Some(writer),
        voice,
        start,
        frames: 0,
        dropped: Arc::clone(&dropped),
        path: path.to_path_buf(),
        done: Some(done_tx),
        pcm: Vec::with_capacity(MAX_FRAME_BYTES),
    });
    Ok((
        RecorderTap {
            tx,
            dropped: Arc::clone(&dropped),
        },
        RecordingJob { done, dropped },
    ))
}

/// How often a writer thread takes what its recordings have queued.
const WRITE_TICK: Duration = Duration::from_millis(20);

/// One recording being written.
struct Writing {
    rx: mpsc::Receiver<RecFrame>,
    al: Aligner,
    /// Taken to finalise the WAV header.
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    voice: Option<Arc<AtomicU64>>,
    start: Instant,
    frames: u64,
    dropped: Arc<AtomicU64>,
    path: PathBuf,
    done: Option<oneshot::Sender<Result<(PathBuf, u64)>>>,
    pcm: Vec<i16>,
}

impl Writing {
    /// Writes what is queued. False once every tap is gone and the file is finished
    /// (its result sent to the [`RecordingJob`]).
    fn service(&mut self) -> bool {
        match self.take_queued() {
            Ok(true) => true,
            Ok(false) => {
                let r = self.finish();
                if let Some(done) = self.done.take() {
                    let _ = done.send(r.map(|()| (self.path.clone(), self.frames)));
                }
                false
            }
            Err(e) => {
                if let Some(done) = self.done.take() {
                    let _ = done.send(Err(e));
                }
                false
            }
        }
    }

    /// Ok(false): the taps are gone and everything they sent is written.
    fn take_queued(&mut self) -> Result<bool> {
        let mono = self.voice.is_some();
        loop {
            let f = match self.rx.try_recv() {
                Ok(f) => f,
                Err(mpsc::error::TryRecvError::Empty) => return Ok(true),
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(false),
            };
            self.pcm.clear();
            self.pcm
                .extend(f.data[..f.len as usize].iter().map(|&b| f.law.decode(b)));
            let kept = match &self.voice {
                None => self.al.push(f.channel, f.at, self.pcm.iter().copied()),
                Some(_) if f.channel != Channel::Caller => continue,
                Some(v) => {
                    if is_voice(&self.pcm) {
                        let end = f.at.saturating_duration_since(self.start)
                            + Duration::from_micros(self.pcm.len() as u64 * 125);
                        v.store(end.as_micros().max(1) as u64, Ordering::Relaxed);
                    }
                    self.al.push_mono(f.at, self.pcm.iter().copied())
                }
            };
            if !kept {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let Some(writer) = self.writer.as_mut() else {
                return Ok(false);
            };
            let frames = &mut self.frames;
            self.al
                .drain(|l, r| write_frame(writer, frames, mono, l, r))?;
        }
    }

    /// Writes what the aligner still holds and the WAV header's final sizes.
    fn finish(&mut self) -> Result<()> {
        let mono = self.voice.is_some();
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let frames = &mut self.frames;
        self.al
            .finish(|l, r| write_frame(&mut writer, frames, mono, l, r))?;
        writer.finalize()?;
        Ok(())
    }
}

fn write_frame(
    writer: &mut hound::WavWriter<BufWriter<File>>,
    frames: &mut u64,
    mono: bool,
    l: i16,
    r: i16,
) -> Result<()> {
    writer.write_sample(l)?;
    if !mono {
        writer.write_sample(r)?;
    }
    *frames += 1;
    Ok(())
}

/// The process's recording writers: a few threads, each writing its share of the
/// recordings every [`WRITE_TICK`] and sleeping on its queue of new ones when it has
/// none.
struct Pool {
    workers: Vec<std::sync::mpsc::Sender<Writing>>,
    next: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let workers = (0..n)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel::<Writing>();
                std::thread::Builder::new()
                    .name(format!("hotline-rec-{i}"))
                    .spawn(move || write_loop(rx))
                    .expect("recording writer thread");
                tx
            })
            .collect();
        Pool {
            workers,
            next: AtomicUsize::new(0),
        }
    })
}

impl Pool {
    fn add(&self, w: Writing) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        // A worker only ends with the process.
        let _ = self.workers[i].send(w);
    }
}

fn write_loop(new: std::sync::mpsc::Receiver<Writing>) {
    let mut jobs: Vec<Writing> = Vec::new();
    loop {
        if jobs.is_empty() {
            match new.recv() {
                Ok(w) => jobs.push(w),
                Err(_) => return,
            }
        }
        while let Ok(w) = new.try_recv() {
            jobs.push(w);
        }
        let tick = Instant::now() + WRITE_TICK;
        jobs.retain_mut(Writing::service);
        if let Some(rest) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(al: &mut Aligner, finish: bool) -> Vec<(i16, i16)> {
        let mut v = Vec::new();
        let f = |l, r| {
            v.push((l, r));
            Ok(())
        };
        if finish {
            al.finish(f).unwrap()
        } else {
            al.drain(f).unwrap()
        }
        v
    }

    #[test]
    fn aligner_interleaves_and_fills_gaps_with_silence() {
        let t0 = Instant::now();
        let mut al = Aligner::new(t0);
        let ms = Duration::from_millis;
        al.push(Channel::Caller, t0, std::iter::repeat_n(100, 160));
        al.push(Channel::Agent, t0, std::iter::repeat_n(-100, 160));
        assert_eq!(collect(&mut al, false), vec![(100, -100); 160]);
        // Caller goes silent for 200 ms (lost packets / hold); the agent keeps talking.
        al.push(Channel::Caller, t0 + ms(220), std::iter::repeat_n(7, 160));
        for i in 1..13u64 {
            al.push(
                Channel::Agent,
                t0 + ms(20 * i),
                std::iter::repeat_n(-5, 160),
            );
        }
        let out = collect(&mut al, true);
        // Caller: gap of 1600 samples of silence starts at 160, then 160 samples of 7.
        let left: Vec<i16> = out.iter().map(|p| p.0).collect();
        assert!(left[..1600].iter().all(|&s| s == 0));
        assert!(left[1600..1760].iter().all(|&s| s == 7));
        assert_eq!(out.len(), 12 * 160, "padded to the longer channel");
    }

    #[test]
    fn a_silent_side_does_not_grow_memory_without_bound() {
        let t0 = Instant::now();
        let mut al = Aligner::new(t0);
        for i in 0..500u64 {
            al.push(
                Channel::Caller,
                t0 + Duration::from_millis(20 * i),
                std::iter::repeat_n(1, 160),
            );
            collect(&mut al, false);
        }
        assert!(al.queues[0].len() as u64 <= MAX_SKEW + 160);
    }

    #[test]
    fn a_flooding_side_is_capped_ahead_of_real_time() {
        let t0 = Instant::now();
        let mut al = Aligner::new(t0);
        let accepted = (0..1000)
            .filter(|_| al.push(Channel::Agent, t0, std::iter::repeat_n(1, 160)))
            .count();
        // Up to MAX_LEAD samples (plus the frame that crosses it) are accepted.
        assert_eq!(accepted as u64, MAX_LEAD / 160 + 1);
        assert!(al.queues[1].len() as u64 <= MAX_LEAD + 160);
    }

    #[tokio::test]
    async fn records_stereo_wav_with_the_right_duration() {
        let dir = std::env::temp_dir().join(format!("hotline-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("call.wav");
        let t0 = Instant::now();
        let (tap, job) = start_recording(&path, 1000, t0).unwrap();
        for i in 0..50u64 {
            let at = t0 + Duration::from_millis(20 * i);
            tap.push(
                Channel::Caller,
                Law::Ulaw,
                &[Law::Ulaw.encode(1000); 160],
                at,
            );
            tap.push(
                Channel::Agent,
                Law::Alaw,
                &[Law::Alaw.encode(-2000); 160],
                at,
            );
        }
        assert_eq!(tap.dropped(), 0);
        drop(tap);
        let rec = job.finish().await.unwrap();
        assert_eq!(rec.path, path);
        assert_eq!(rec.duration, Duration::from_secs(1));
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.duration(), 8000);
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(s[0], Law::Ulaw.decode(Law::Ulaw.encode(1000)));
        assert_eq!(s[1], Law::Alaw.decode(Law::Alaw.encode(-2000)));
    }

    #[test]
    fn voice_is_louder_than_line_noise() {
        assert!(!is_voice(&[]));
        assert!(!is_voice(&[0; 160]));
        assert!(!is_voice(&[100, -100, 50, -200]));
        assert!(is_voice(&[4000, -4000, 3000, -3000]));
    }

    #[tokio::test]
    async fn mono_recording_keeps_the_caller_and_reports_the_last_voice() {
        let path =
            std::env::temp_dir().join(format!("hotline-rec-mono-{}.wav", std::process::id()));
        let t0 = Instant::now();
        let (tap, job, voice) = start_mono_recording(&path, 1000, t0).unwrap();
        let ms = Duration::from_millis;
        // 0.5 s of voice, then 0.5 s of near-silence; agent frames are ignored.
        for i in 0..50u64 {
            let level = if i < 25 { 6000 } else { 10 };
            tap.push(
                Channel::Caller,
                Law::Ulaw,
                &[Law::Ulaw.encode(level); 160],
                t0 + ms(20 * i),
            );
            tap.push(
                Channel::Agent,
                Law::Ulaw,
                &[Law::Ulaw.encode(-9000); 160],
                t0 + ms(20 * i),
            );
        }
        drop(tap);
        let rec = job.finish().await.unwrap();
        assert_eq!(rec.duration, Duration::from_secs(1));
        assert_eq!(voice.last_voice(), Some(ms(500)));
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 1);
        assert_eq!(r.duration(), 8000);
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(s[0], Law::Ulaw.decode(Law::Ulaw.encode(6000)));
        assert!(
            s[4000..].iter().all(|v| v.abs() < 100),
            "the agent is not in it"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn full_channel_drops_and_counts() {
        let path =
            std::env::temp_dir().join(format!("hotline-rec-full-{}.wav", std::process::id()));
        let t0 = Instant::now();
        let (tap, job) = start_recording(&path, 1, t0).unwrap();
        // The writer thread may take one frame out meanwhile; at most a few get through.
        for _ in 0..1000 {
            tap.push(Channel::Caller, Law::Ulaw, &[0xFF; 160], t0);
        }
        assert!(tap.dropped() > 900, "dropped {}", tap.dropped());
        drop(tap);
        let rec = job.finish().await.unwrap();
        assert!(rec.dropped_frames > 900);
    }
}
