//! Voicemail with real peers: SIPp callers streaming audio wait in a queue nobody serves
//! until its `max_wait_secs` passes and its fallback sends them to a voicemail box; the
//! greeting and the beep play, the caller's audio is recorded (mono 8 kHz WAV) until the
//! box's limit, the `#` key (SIP INFO), the caller's BYE. Checked: the WAV's length and
//! that it is not silence, the message row, the CDR (result `voicemail`, the WAV as
//! recording), the queue log, the customer's service trail, `voicemail.left` on the
//! supervisor's WebSocket, the HTTP API (list, audio, listened, delete) and that no call,
//! port or dialog is left. A caller who hangs up during the greeting leaves no message
//! (CDR `abandoned`, route ending in the box). Store: SQLite.

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;
mod http;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use client::{Desk, ORIGIN};
use hotline::Hotline;
use hotline_cdr::{CallResult, CdrStore, HangupSide, QueueEventKind, StoreOptions};
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port, out_dir, start_hotline_with};
use hotline_switch::{CallEnd, EndReason};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const CALLER: &str = "+49301234567";
/// The greeting the test boxes play (a tone WAV made here), before the beep.
const GREETING_MS: u64 = 1000;

struct Rig {
    h: Hotline,
    ended: tokio::sync::mpsc::Receiver<CallEnd>,
    server: SocketAddr,
    cti: SocketAddr,
    store_url: String,
    dir: PathBuf,
}

/// Writes an 8 kHz µ-law WAV of `ms` of a quiet tone (the boxes' greetings).
fn greeting(name: &str, ms: u64) -> anyhow::Result<PathBuf> {
    let path = out_dir().join(format!("vm-greeting-{name}-{}.wav", std::process::id()));
    let tone: Vec<i16> = (0..ms * 8)
        .map(|i| ((i as f64 * 0.3).sin() * 2000.0) as i16)
        .collect();
    hotline_media::wav::write_wav(&path, hotline_media::wav::WavEncoding::Ulaw, &tone)?;
    Ok(path)
}

/// Hotline with queue `support` (4700; max wait 1 s, fallback box `support-box`: limit
/// `max_secs` and `silence_secs`, 1 s greeting) and queue `sales` (4701; box `long-box`, a 4 s greeting); no
/// agents; number 4702 is a menu whose key 1 goes to `support-box`. `[crm]`, a SQLite store, `[cti]` with alice supervising support.
async fn rig(name: &str, max_secs: u64, silence_secs: u64) -> anyhow::Result<Rig> {
    let dir = out_dir().join(format!("vm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = out_dir().join(format!("vm-{name}-{}.db", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let store_url = format!("sqlite://{}", db.display());
    let hash = hotline_cti::hash_password("desk-pw")?;
    let cfg = format!(
        "{}prompt_cache = \"{}\"\n\
         [[numbers]]\nnumber = \"4700\"\nqueue = \"support\"\n\
         [[numbers]]\nnumber = \"4701\"\nqueue = \"sales\"\n\
         [[numbers]]\nnumber = \"4702\"\nmenu = \"vm-menu\"\n\
         [[menus]]\nname = \"vm-menu\"\nsay = \"Press 1 to leave a message.\"\n\
         choices = {{ \"1\" = {{ voicemail = \"support-box\" }} }}\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nmax_wait_secs = 1\n\
         fallback = {{ voicemail = \"support-box\" }}\n\
         [[acd.queue]]\nname = \"sales\"\nmax_wait_secs = 1\nfallback = {{ voicemail = \"long-box\" }}\n\
         [[voicemail]]\nname = \"support-box\"\ngreeting = \"{}\"\ndir = \"{}\"\nmax_secs = {max_secs}\nsilence_secs = {silence_secs}\n\
         [[voicemail]]\nname = \"long-box\"\ngreeting = \"{}\"\ndir = \"{}\"\n\
         [crm]\n[store]\nurl = \"{store_url}\"\n\
         [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n\
         [[cti.user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\nqueues = [\"support\", \"sales\"]\n",
        hotline_sip_tests::media(100),
        out_dir().join("prompts").display(),
        greeting("short", GREETING_MS)?.display(),
        dir.display(),
        greeting("long", 4000)?.display(),
        dir.display(),
    );
    let mut h = start_hotline_with(&cfg).await?;
    let ended = h
        .switch
        .as_mut()
        .and_then(|s| s.take_ended())
        .context("ended calls")?;
    let server = Proto::Udp.server_addr(&h);
    let cti = h.cti.as_ref().context("[cti]")?.local_addr();
    Ok(Rig {
        h,
        ended,
        server,
        cti,
        store_url,
        dir,
    })
}

impl Rig {
    /// Alice's desk, logged in; and her session token for the HTTP API.
    async fn supervisor(&self) -> anyhow::Result<(Desk, String)> {
        let mut d = Desk::connect(self.cti, Some(ORIGIN)).await?;
        let reply = d.login("alice", "desk-pw").await;
        let token = reply["token"].as_str().context("login token")?.to_string();
        Ok((d, token))
    }

    async fn next_end(&mut self) -> anyhow::Result<CallEnd> {
        tokio::time::timeout(WAIT, self.ended.recv())
            .await
            .context("no call ended within 20 s")?
            .context("switch stopped")
    }

    async fn store(&self) -> anyhow::Result<CdrStore> {
        Ok(CdrStore::open(&self.store_url, &StoreOptions::default()).await?)
    }

    /// No call task, RTP port or SIP dialog is left; then stops Hotline.
    async fn done(self) -> anyhow::Result<()> {
        let sw = self.h.switch.as_ref().context("switch")?;
        assert_eq!(sw.stats().active_calls(), 0, "call tasks left");
        assert_eq!(sw.ports().in_use(), 0, "RTP ports leaked");
        assert_eq!(sw.sip_dialogs().await?, 0, "SIP dialogs left behind");
        self.h.shutdown().await;
        Ok(())
    }

    fn messages_on_disk(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| d.count())
    }
}

/// Length and loudness (mean absolute sample) of a mono 8 kHz WAV.
fn wav_facts(path: &Path) -> anyhow::Result<(Duration, u64)> {
    let mut r = hound::WavReader::open(path).with_context(|| format!("{}", path.display()))?;
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16),
        "mono 8 kHz 16-bit"
    );
    let samples: Vec<i16> = r.samples::<i16>().collect::<Result<_, _>>()?;
    let mean =
        samples.iter().map(|s| s.unsigned_abs() as u64).sum::<u64>() / samples.len().max(1) as u64;
    Ok((Duration::from_micros(samples.len() as u64 * 125), mean))
}

fn bearer(token: &str) -> Vec<String> {
    vec![format!("Authorization: Bearer {token}")]
}

/// A trunk caller (a number the CRM knows as a provisional customer) streams audio in
/// the support queue; after 1 s it goes to the box, hears the greeting and the beep and
/// talks until the box's 3 s limit: goodbye, BYE. Everything about the message is
/// checked, then the supervisor listens to it and deletes it over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_leaves_a_message_until_the_limit() -> anyhow::Result<()> {
    let mut rig = rig("limit", 3, 0).await?;
    let (mut alice, token) = rig.supervisor().await?;
    caller_audio()?;
    SippBuilder::new(
        "vm-limit-caller",
        "uac_trunk_call_audio_wait_bye.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-i",
        hotline_sip_tests::TRUSTED_IP,
        "-s",
        "4700",
        "-key",
        "caller",
        CALLER,
    ])
    .spawn(Some(rig.server))?
    .expect_success()
    .await?;
    let end = rig.next_end().await?;
    assert_eq!(end.reason, EndReason::Voicemail, "{end:?}");
    assert_eq!(end.route, "queue:support>voicemail:support-box");
    let wav = end.recording.clone().context("the message's WAV")?;
    assert!(wav.starts_with(&rig.dir), "{}", wav.display());
    let (len, loudness) = wav_facts(&wav)?;
    let ms = len.as_millis() as i64;
    assert!((2700..=3700).contains(&ms), "a 3 s message: {ms} ms");
    assert!(
        loudness > 1000,
        "the caller's tone, not silence: {loudness}"
    );

    // The supervisor of the queue was told.
    let (_, ev) = alice.event("voicemail.left").await;
    let data = &ev["data"];
    assert_eq!(data["call_id"], end.call_id.as_str(), "{ev}");
    assert_eq!(data["mailbox"], "support-box");
    assert_eq!(data["queue"], "support");
    assert_eq!(data["caller"], CALLER);
    assert_eq!(data["ended_by"], "limit");
    let event_ms = data["duration_ms"].as_i64().context("duration_ms")?;
    assert_eq!(event_ms, ms, "the event tells the WAV's length");

    // Store: the message row, the CDR and the queue log.
    let store = rig.store().await?;
    let row = store
        .voicemail_get(&end.call_id)
        .await?
        .context("message row")?;
    assert_eq!(row.mailbox, "support-box");
    assert_eq!(row.queue.as_deref(), Some("support"));
    assert_eq!(row.caller, CALLER);
    assert_eq!(row.ended_by, "limit");
    assert_eq!(row.duration_ms, ms);
    assert_eq!(Path::new(&row.path), wav);
    let cdr = store.call(&end.call_id).await?.context("CDR")?;
    assert_eq!(cdr.result, CallResult::Voicemail, "{cdr:?}");
    assert_eq!(cdr.hangup_side, HangupSide::System);
    assert_eq!(cdr.recording.as_deref().map(Path::new), Some(wav.as_path()));
    assert_eq!(cdr.queue.as_deref(), Some("support"));
    let log: Vec<_> = store
        .queue_log(0, i64::MAX)
        .await?
        .into_iter()
        .filter(|e| e.call_id == end.call_id)
        .collect();
    let line = log
        .iter()
        .find(|e| e.event == QueueEventKind::Voicemail)
        .with_context(|| format!("VOICEMAIL line in {log:?}"))?;
    assert_eq!(line.data, format!("support-box,{},limit", ms / 1000));
    assert!(
        log.iter().any(|e| e.event == QueueEventKind::Fallback),
        "{log:?}"
    );

    // The customer's service trail has the message.
    let crm = rig.h.crm.as_ref().context("[crm]")?;
    let entry = crm
        .interaction_by_call_id(&end.call_id)
        .await?
        .context("trail entry")?;
    assert_eq!(entry.channel, "voicemail");
    assert_eq!(entry.queue.as_deref(), Some("support"));
    assert_eq!(
        entry.recording_path.as_deref().map(Path::new),
        Some(wav.as_path())
    );

    // HTTP: list, fetch the audio, mark listened, delete.
    let list = http::get(rig.cti, "/api/voicemail", &bearer(&token)).await?;
    assert_eq!(list.status, 200, "{}", list.body);
    let listed: Value = list.json()?;
    let messages = listed["messages"].as_array().context("messages")?;
    assert_eq!(messages.len(), 1, "{listed}");
    assert_eq!(messages[0]["call_id"], end.call_id.as_str());
    assert_eq!(messages[0]["listened_at"], Value::Null);
    let unauth = http::get(rig.cti, "/api/voicemail", &[]).await?;
    assert_eq!(unauth.status, 401);
    let path = format!("/api/voicemail/{}", end.call_id);
    let (status, headers, body) =
        http::request(rig.cti, "GET", &format!("{path}/audio"), &bearer(&token)).await?;
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "audio/wav"),
        "{headers:?}"
    );
    let stored = std::fs::read(&wav)?;
    assert_eq!(body, stored, "the WAV as stored");
    let header = |hs: &[(String, String)], name: &str| {
        hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(&headers, "content-length"),
        Some(stored.len().to_string())
    );
    assert_eq!(header(&headers, "accept-ranges").as_deref(), Some("bytes"));
    // A player seeking: one byte range, then one past the end.
    let mut ranged = bearer(&token);
    ranged.push("Range: bytes=44-99".into());
    let (status, headers, body) =
        http::request(rig.cti, "GET", &format!("{path}/audio"), &ranged).await?;
    assert_eq!(status, 206);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 44-99/{}", stored.len()))
    );
    assert_eq!(body, stored[44..100], "the range of the WAV");
    let mut past = bearer(&token);
    past.push(format!("Range: bytes={}-", stored.len()));
    let (status, headers, _) =
        http::request(rig.cti, "GET", &format!("{path}/audio"), &past).await?;
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes */{}", stored.len()))
    );
    let (status, _, body) = http::request(
        rig.cti,
        "POST",
        &format!("{path}/listened"),
        &bearer(&token),
    )
    .await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let marked: Value = serde_json::from_slice(&body)?;
    assert!(marked["listened_at"].as_i64().is_some(), "{marked}");
    let (status, _, _) = http::request(rig.cti, "DELETE", &path, &bearer(&token)).await?;
    assert_eq!(status, 204);
    assert!(!wav.exists(), "the audio is removed with the message");
    let after = http::get(rig.cti, "/api/voicemail", &bearer(&token)).await?;
    assert_eq!(after.json()?["messages"], Value::Array(Vec::new()));
    let (status, _, _) =
        http::request(rig.cti, "GET", &format!("{path}/audio"), &bearer(&token)).await?;
    assert_eq!(status, 410, "a deleted message's audio is gone");
    store.close().await;
    rig.done().await
}

/// The caller talks about 2.5 s after the beep and presses `#` (SIP INFO): the message
/// ends there, Hotline says goodbye and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_key_ends_the_message() -> anyhow::Result<()> {
    let mut rig = rig("key", 60, 0).await?;
    caller_audio()?;
    // 1 s in the queue, the greeting, the beep (250 ms), then ~2.5 s of message.
    let talk_ms = 1000 + GREETING_MS + 250 + 2500;
    SippBuilder::new(
        "vm-key-caller",
        "uac_talk_key_info_hung_up_on.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4700", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-key", "dtmf",
        "#", "-d",
    ])
    .arg(talk_ms.to_string())
    .spawn(Some(rig.server))?
    .expect_success()
    .await?;
    let end = rig.next_end().await?;
    assert_eq!(end.reason, EndReason::Voicemail, "{end:?}");
    let wav = end.recording.clone().context("the message's WAV")?;
    let (len, loudness) = wav_facts(&wav)?;
    assert!(
        len >= Duration::from_millis(1000) && len <= Duration::from_millis(talk_ms),
        "the message runs from the beep to the key: {len:?}"
    );
    assert!(loudness > 1000, "not silence: {loudness}");
    let store = rig.store().await?;
    let row = store.voicemail_get(&end.call_id).await?.context("row")?;
    assert_eq!(row.ended_by, "key");
    assert_eq!(row.caller, "alice");
    let cdr = store.call(&end.call_id).await?.context("CDR")?;
    assert_eq!(cdr.result, CallResult::Voicemail);
    store.close().await;
    rig.done().await
}

/// Two callers: one hangs up during the 4 s greeting of `long-box` (nothing recorded:
/// CDR `abandoned`, the route ends in the box, no message), one hangs up during their
/// message in `support-box` (about 2.5 s: kept: CDR `voicemail`, hung up by the caller).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_in_the_greeting_leaves_nothing_and_after_it_a_message() -> anyhow::Result<()> {
    let mut rig = rig("hangup", 60, 0).await?;
    caller_audio()?;
    // sales: 1 s of queue (a little more on a busy machine), then 2.5 s into the 4 s
    // greeting.
    SippBuilder::new(
        "vm-greeting-hangup",
        "uac_call_audio_long.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4701", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d", "3500",
    ])
    .spawn(Some(rig.server))?
    .expect_success()
    .await?;
    let end = rig.next_end().await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert_eq!(end.route, "queue:sales>voicemail:long-box");
    assert_eq!(end.recording, None);
    let store = rig.store().await?;
    let cdr = store.call(&end.call_id).await?.context("CDR")?;
    assert_eq!(cdr.result, CallResult::Abandoned, "{cdr:?}");
    assert_eq!(cdr.hangup_side, HangupSide::Caller);
    assert_eq!(cdr.route, "queue:sales>voicemail:long-box");
    assert_eq!(store.voicemail_get(&end.call_id).await?, None);
    assert_eq!(
        rig.messages_on_disk(),
        0,
        "no file for a message never started"
    );

    // support: 1 s of queue, the 1 s greeting and the beep, ~2.5 s of message, BYE.
    let talk_ms = 1000 + GREETING_MS + 250 + 2500;
    SippBuilder::new(
        "vm-message-hangup",
        "uac_call_audio_long.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4700", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d",
    ])
    .arg(talk_ms.to_string())
    .spawn(Some(rig.server))?
    .expect_success()
    .await?;
    let end = rig.next_end().await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    let wav = end.recording.clone().context("kept message")?;
    let (len, loudness) = wav_facts(&wav)?;
    assert!(
        len >= Duration::from_millis(1200) && len <= Duration::from_millis(talk_ms),
        "{len:?}"
    );
    assert!(loudness > 1000, "not silence: {loudness}");
    let cdr = store.call(&end.call_id).await?.context("CDR")?;
    assert_eq!(cdr.result, CallResult::Voicemail, "{cdr:?}");
    assert_eq!(cdr.hangup_side, HangupSide::Caller);
    let row = store.voicemail_get(&end.call_id).await?.context("row")?;
    assert_eq!(row.ended_by, "hangup");
    assert_eq!(rig.messages_on_disk(), 1);
    store.close().await;
    rig.done().await
}

/// Writes `talk-then-quiet.wav` (4 s of tone, then 5 s of silence, µ-law) into SIPp's
/// working directory, atomically.
fn talk_then_quiet() -> anyhow::Result<()> {
    let dir = out_dir();
    let tmp = dir.join(format!("talk-then-quiet.wav.{}.tmp", std::process::id()));
    let samples: Vec<i16> = (0..32_000)
        .map(|i| ((i as f64 * 0.1).sin() * 8000.0) as i16)
        .chain(std::iter::repeat_n(0, 40_000))
        .collect();
    hotline_media::wav::write_wav(&tmp, hotline_media::wav::WavEncoding::Ulaw, &samples)?;
    std::fs::rename(&tmp, dir.join("talk-then-quiet.wav"))?;
    Ok(())
}

/// The caller talks 4 s from the answer (through the queue and the greeting into the
/// message), then sends only silence: 2 s after the last voice the message ends, Hotline
/// says goodbye and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_ends_the_message() -> anyhow::Result<()> {
    let mut rig = rig("silence", 60, 2).await?;
    talk_then_quiet()?;
    SippBuilder::new(
        "vm-silent-caller",
        "uac_talk_once_hung_up_on.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4700", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(rig.server))?
    .expect_success()
    .await?;
    let end = rig.next_end().await?;
    assert_eq!(end.reason, EndReason::Voicemail, "{end:?}");
    let wav = end.recording.clone().context("the message's WAV")?;
    let (len, loudness) = wav_facts(&wav)?;
    let store = rig.store().await?;
    let row = store.voicemail_get(&end.call_id).await?.context("row")?;
    assert_eq!(row.ended_by, "silence", "{row:?}");
    // The tone ends 4 s into the stream; the queue (1 s) and the greeting with the beep
    // (1.25 s) took some of it; the message runs 2 s past the last voice.
    assert!(
        len >= Duration::from_millis(2500) && len <= Duration::from_millis(5000),
        "last voice + 2 s of silence: {len:?}"
    );
    assert!(loudness > 50, "the tone is in it: {loudness}");
    let samples: Vec<i16> = hound::WavReader::open(&wav)?
        .samples::<i16>()
        .collect::<Result<_, _>>()?;
    let tail = &samples[samples.len().saturating_sub(12_000)..];
    let tail_mean = tail.iter().map(|s| s.unsigned_abs() as u64).sum::<u64>() / 12_000;
    assert!(
        tail_mean < 50,
        "the last 1.5 s are the silence: {tail_mean}"
    );
    store.close().await;
    rig.done().await
}

/// A menu choice leads to a box: the caller presses 1 (SIP INFO) during the menu prompt
/// and leaves a message until the box's 3 s limit; no queue is involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_menu_choice_leads_to_a_box() -> anyhow::Result<()> {
    let mut rig = rig("menu", 3, 0).await?;
    caller_audio()?;
    SippBuilder::new(
        "vm-menu-caller",
        "uac_talk_key_info_hung_up_on.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4702", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-key", "dtmf",
        "1", "-d", "500",
    ])
    .spawn(Some(rig.server))?
    .expect_success()
    .await?;
    let end = rig.next_end().await?;
    assert_eq!(end.reason, EndReason::Voicemail, "{end:?}");
    assert_eq!(end.route, "menu:vm-menu>voicemail:support-box");
    let wav = end.recording.clone().context("the message's WAV")?;
    let (len, loudness) = wav_facts(&wav)?;
    let ms = len.as_millis();
    assert!((2700..=3700).contains(&ms), "a 3 s message: {ms} ms");
    assert!(loudness > 1000, "not silence: {loudness}");
    let store = rig.store().await?;
    let row = store.voicemail_get(&end.call_id).await?.context("row")?;
    assert_eq!(
        (row.ended_by.as_str(), row.queue.as_deref()),
        ("limit", None)
    );
    let cdr = store.call(&end.call_id).await?.context("CDR")?;
    assert_eq!(cdr.result, CallResult::Voicemail);
    store.close().await;
    rig.done().await
}
