//! Many recordings at once: every one is written whole. (A writer thread per recording
//! from tokio's blocking pool, 512 threads, left recordings beyond the 512th unwritten
//! until others ended, their frames dropped meanwhile.)

use std::time::{Duration, Instant};

use hotline_media::g711::Law;
use hotline_media::recorder::{Channel, start_recording};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_recordings_than_tokios_blocking_pool_are_all_written_whole() {
    const RECORDINGS: usize = 600;
    const FRAMES: u32 = 40;
    let dir = std::env::temp_dir().join(format!("hotline-rec-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = Instant::now();
    let mut taps = Vec::with_capacity(RECORDINGS);
    let mut jobs = Vec::with_capacity(RECORDINGS);
    for i in 0..RECORDINGS {
        // Room for 20 frames per recording: 400 ms of arrivals below.
        let (tap, job) = start_recording(&dir.join(format!("{i}.wav")), 20, start).unwrap();
        taps.push(tap);
        jobs.push(job);
    }
    // All recordings open together, one 20 ms frame per side each round, at the real
    // pace (the writers must keep up while the calls last, not only after them).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for k in 0..FRAMES {
        tick.tick().await;
        let at = start + Duration::from_millis(20 * k as u64);
        for tap in &taps {
            tap.push(Channel::Caller, Law::Ulaw, &[0x90; 160], at);
            tap.push(Channel::Agent, Law::Ulaw, &[0x10; 160], at);
        }
    }
    drop(taps);
    for job in jobs {
        let rec = job.finish().await.unwrap();
        assert_eq!(rec.dropped_frames, 0, "{rec:?}");
        assert_eq!(
            rec.duration,
            Duration::from_millis(20 * FRAMES as u64),
            "{rec:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
