//! Routing with real peers (SIPp callers and registered SIPp agents): IVR menus chosen by
//! SIP INFO and by RFC 4733 key presses, business hours, queue announcements, the leave
//! key and queue fallbacks, agents busy on extension calls, call recording.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hotline::Hotline;
use hotline_acd::{AgentState, NotReadyReason};
use hotline_cdr::{CallRecord, CallResult, HangupSide, MemoryCdrs, QueueEventKind};
use hotline_sip_tests::calls::{self, next_end};
use hotline_sip_tests::{
    Proto, Sipp, SippBuilder, caller_audio, free_port, out_dir, start_hotline_with,
};
use hotline_switch::{CallCommand, CallEnd, EndReason, Switch, SwitchEvent};

/// `[media]` for a test: its own RTP range and recordings directory; the spoken prompts
/// are cached for all tests in `out/prompts`.
fn media(name: &str) -> anyhow::Result<(String, PathBuf)> {
    let rec = out_dir().join(format!("rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rec);
    let prompts = out_dir().join("prompts");
    Ok((
        format!(
            "{}recordings = \"{}\"\nprompt_cache = \"{}\"\n",
            hotline_sip_tests::media(100),
            rec.display(),
            prompts.display()
        ),
        rec,
    ))
}

/// Writes `dtmf-<digit>.pcap`: one RFC 4733 key press (payload type 101, three packets
/// while the key is held, then the three end packets) as Ethernet/IPv4/UDP frames that
/// SIPp's `play_pcap_audio` replays to Hotline's RTP port.
fn dtmf_pcap(digit: u8) -> anyhow::Result<()> {
    let mut out = Vec::new();
    // Global header: magic, v2.4, UTC, accuracy, snaplen, Ethernet.
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    let durations: [(u16, bool); 6] = [
        (160, false),
        (320, false),
        (480, false),
        (640, true),
        (640, true),
        (640, true),
    ];
    for (i, (dur, end)) in durations.iter().enumerate() {
        let mut rtp = vec![0x80, if i == 0 { 0x80 | 101 } else { 101 }];
        rtp.extend((1000 + i as u16).to_be_bytes());
        rtp.extend(8000u32.to_be_bytes());
        rtp.extend(0x1234_5678u32.to_be_bytes());
        rtp.extend([digit, if *end { 0x80 | 10 } else { 10 }]);
        rtp.extend(dur.to_be_bytes());
        let udp_len = 8 + rtp.len() as u16;
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend([
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ]);
        frame.extend([127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend(4000u16.to_be_bytes());
        frame.extend(5000u16.to_be_bytes());
        frame.extend(udp_len.to_be_bytes());
        frame.extend([0, 0]);
        frame.extend(&rtp);
        let usec = i as u32 * 20_000;
        out.extend(0u32.to_le_bytes());
        out.extend(usec.to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    let dir = out_dir();
    let tmp = dir.join(format!("dtmf-{digit}.pcap.{}.tmp", std::process::id()));
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, dir.join(format!("dtmf-{digit}.pcap")))?;
    Ok(())
}

/// Registers `user` from a fresh port and starts its UAS scenario there (echoing RTP).
async fn agent(h: &Hotline, user: &str, scenario: &str) -> anyhow::Result<Sipp> {
    calls::agent(Proto::Udp.server_addr(h), user, scenario, &["-rtp_echo"]).await
}

/// Alice calls `number` with `scenario` (extra SIPp args appended).
fn caller(
    h: &Hotline,
    name: &str,
    scenario: &str,
    number: &str,
    extra: &[&str],
) -> anyhow::Result<Sipp> {
    let mut b = SippBuilder::new(name, scenario, Proto::Udp, free_port()).args([
        "-s", number, "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ]);
    for e in extra {
        b = b.arg(*e);
    }
    b.spawn(Some(Proto::Udp.server_addr(h)))
}

/// The CDR row of `call_id` (written before the call's report, so it is there already).
fn row(h: &Hotline, call_id: &str) -> anyhow::Result<CallRecord> {
    let cdrs: &MemoryCdrs = h
        .cdr
        .as_ref()
        .and_then(|c| c.memory.as_ref())
        .context("CDRs kept in memory")?;
    let rows: Vec<CallRecord> = cdrs
        .calls()
        .into_iter()
        .filter(|r| r.call_id == call_id)
        .collect();
    assert_eq!(rows.len(), 1, "exactly one CDR for {call_id}: {rows:?}");
    rows.into_iter().next().context("row")
}

/// The queue-log kinds of `call_id`, in order.
fn queue_log(h: &Hotline, call_id: &str) -> Vec<QueueEventKind> {
    h.cdr
        .as_ref()
        .and_then(|c| c.memory.as_ref())
        .map(|c| c.events())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.call_id == call_id)
        .map(|e| e.event)
        .collect()
}

fn switch(h: &mut Hotline) -> anyhow::Result<&mut Switch> {
    h.switch.as_mut().context("numbers configured: switch runs")
}

/// Nothing left behind: no call task, RTP port or SIP dialog.
async fn assert_clean(h: &Hotline) -> anyhow::Result<()> {
    let s = h.switch.as_ref().context("switch")?;
    assert_eq!(s.stats().active_calls(), 0);
    assert_eq!(s.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(s.sip_dialogs().await?, 0, "SIP dialogs left behind");
    Ok(())
}

/// The recording is a stereo 8 kHz WAV whose length is the bridged time (the caller's
/// 2 s of audio after the key, give or take the set-up).
fn assert_recording(end: &CallEnd, dir: &Path) -> anyhow::Result<()> {
    let path = end
        .recording
        .as_ref()
        .context("recording path in the report")?;
    assert!(path.starts_with(dir), "{path:?} under {dir:?}");
    let r = hound::WavReader::open(path).with_context(|| format!("{path:?}"))?;
    let spec = r.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
    let secs = r.duration() as f64 / 8000.0;
    assert!((1.0..=3.5).contains(&secs), "recording lasts {secs:.2} s");
    Ok(())
}

const MENU_ACD: &str = "[[menus]]\nname = \"main\"\nsay = \"For sales, press one. For support, press two.\"\n\
    timeout_secs = 5\nretries = 1\nchoices = { \"1\" = { queue = \"sales\" }, \"2\" = { queue = \"support\" } }\n\
    default = { hangup = true }\n\
    [acd]\n[[acd.queue]]\nname = \"sales\"\n[[acd.queue]]\nname = \"support\"\n\
    [[acd.agent]]\nid = \"bob\"\nqueues = { sales = 0 }\n\
    [[acd.agent]]\nid = \"carol\"\nqueues = { support = 0 }\n";

/// Number → menu; the caller presses 1 by SIP INFO (application/dtmf-relay): the call goes
/// to the sales queue, whose agent bob answers; the bridged call is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_choice_by_sip_info_reaches_the_queue_and_is_recorded() -> anyhow::Result<()> {
    let (m, rec) = media("ivr-info")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5000\"\nmenu = \"main\"\n{MENU_ACD}"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let bob = agent(&h, "bob", "uas_call.xml").await?;
    caller_audio()?;
    caller(
        &h,
        "ivr-info",
        "uac_key_info.xml",
        "5000",
        &["-key", "dtmf", "1"],
    )?
    .expect_success()
    .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.route, "menu:main>queue:sales");
    assert_eq!(end.agent.as_deref(), Some("bob"));
    let b = end.media.and_then(|m| m.b).context("agent leg")?;
    assert!(b.tx_packets >= 30, "caller audio relayed to bob: {b:?}");
    assert_recording(&end, &rec)?;
    let r = row(&h, &end.call_id)?;
    assert_eq!(r.result, CallResult::Answered);
    assert_eq!(
        (r.direction.as_str(), r.caller.as_str(), r.dialed.as_str()),
        ("inbound", "alice", "5000")
    );
    assert_eq!(r.route, "menu:main>queue:sales");
    assert_eq!(
        (r.queue.as_deref(), r.agent.as_deref()),
        (Some("sales"), Some("bob"))
    );
    assert_eq!((r.sip_status, r.hangup_side), (200, HangupSide::Caller));
    assert_eq!(
        r.recording.as_deref(),
        end.recording.as_ref().and_then(|p| p.to_str())
    );
    let (q, o, a) = (
        r.queued_at.context("queued")?,
        r.offered_at.context("offered")?,
        r.answered_at.context("answered")?,
    );
    assert!(
        r.arrived_at <= q && q <= o && o <= a && a <= r.ended_at,
        "{r:?}"
    );
    assert_eq!(r.wait_ms, a - q);
    // The caller streams 2 s after the key; the bridge follows the key within a second.
    assert!((1000..=3000).contains(&r.talk_ms), "{r:?}");
    assert_eq!(
        queue_log(&h, &end.call_id),
        [
            QueueEventKind::EnterQueue,
            QueueEventKind::Offer,
            QueueEventKind::Connect,
            QueueEventKind::CompleteCaller
        ]
    );
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// Number → menu; the caller presses 2 as RFC 4733 telephone-events (replayed by SIPp
/// from a pcap this test writes): the call goes to support, answered by carol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_choice_by_rfc4733_reaches_the_other_queue() -> anyhow::Result<()> {
    let (m, _) = media("ivr-4733")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5000\"\nmenu = \"main\"\n{MENU_ACD}"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let carol = agent(&h, "carol", "uas_call.xml").await?;
    caller_audio()?;
    dtmf_pcap(2)?;
    caller(&h, "ivr-4733", "uac_key_rfc4733.xml", "5000", &[])?
        .expect_success()
        .await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.route, "menu:main>queue:support");
    assert_eq!(end.agent.as_deref(), Some("carol"));
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// A number with business hours that are never open (no opening range) plays the closed
/// message and Hotline hangs up; the same number shape with hours open all day queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_hours_play_the_closed_message_then_hang_up() -> anyhow::Result<()> {
    let (m, _) = media("closed")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5001\"\nqueue = \"support\"\nhours = \"never\"\n\
         [[numbers]]\nnumber = \"5002\"\nqueue = \"support\"\nhours = \"always\"\n\
         closed = {{ say = \"Closed.\" }}\n\
         [[hours]]\nname = \"never\"\ntimezone = \"Europe/Berlin\"\n\
         [[hours]]\nname = \"always\"\ntimezone = \"+02:00\"\n\
         open = [{{ days = \"daily\", from = \"00:00\", to = \"24:00\" }}]\n"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    caller_audio()?;
    caller(&h, "closed", "uac_call_hung_up_on.xml", "5001", &[])?
        .expect_success()
        .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::Closed, "{end:?}");
    assert_eq!(end.route, "closed");
    let media = end.media.context("media")?;
    // The spoken closed message is several seconds long (or a beep without espeak-ng).
    assert!(media.a.tx_packets >= 10, "closed message played: {media:?}");
    let r = row(&h, &end.call_id)?;
    assert_eq!(
        (r.result.clone(), r.route.as_str()),
        (CallResult::Closed, "closed")
    );
    assert_eq!(r.hangup_side, HangupSide::System);
    // An unacceptable offer: rejected with 488 before anything else, still one row.
    caller(&h, "bad-sdp", "uac_queue_bad_sdp.xml", "5002", &[])?
        .expect_success()
        .await?;
    let end = next_end(&mut ended).await?;
    let r = row(&h, &end.call_id)?;
    assert_eq!(
        (r.result.clone(), r.sip_status),
        (CallResult::Rejected, 488),
        "{r:?}"
    );
    assert_eq!((r.queued_at, r.answered_at), (None, None));
    caller(&h, "open", "uac_queue_call.xml", "5002", &[])?
        .expect_success()
        .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert_eq!(end.route, "queue:support");
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// Waiting in a queue with `announce_secs = 1` and nobody to answer: the caller hears
/// position/wait announcements over the music.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_announcements_are_played_while_waiting() -> anyhow::Result<()> {
    let (m, _) = media("announce")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5003\"\nqueue = \"slow\"\n\
         [acd]\n[[acd.queue]]\nname = \"slow\"\nannounce_secs = 1\n"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    caller_audio()?;
    caller(&h, "announce", "uac_call_with_audio.xml", "5003", &[])?
        .expect_success()
        .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.announcements >= 1, "announcements: {end:?}");
    let r = row(&h, &end.call_id)?;
    assert_eq!(r.result, CallResult::Abandoned);
    assert_eq!(
        (r.hangup_side, r.queue.as_deref(), r.agent.as_deref()),
        (HangupSide::Caller, Some("slow"), None)
    );
    assert_eq!(r.answered_at, None);
    // Waited the caller's 2 s in the queue.
    assert!(r.wait_ms >= 1500 && r.talk_ms == 0, "{r:?}");
    assert_eq!(
        queue_log(&h, &end.call_id),
        [QueueEventKind::EnterQueue, QueueEventKind::Abandon]
    );
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

const TWO_QUEUES: &str = "[acd]\n[[acd.queue]]\nname = \"first\"\n{FIRST}\n\
    [[acd.queue]]\nname = \"second\"\n\
    [[acd.agent]]\nid = \"bob\"\nqueues = { second = 0 }\n";

/// The caller presses the queue's leave key (`*`, by INFO): out of the first queue (nobody
/// serves it) to its fallback, the second queue, where bob answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_key_takes_the_caller_to_the_queue_fallback() -> anyhow::Result<()> {
    let (m, _) = media("leave")?;
    let acd = TWO_QUEUES.replace("{FIRST}", "fallback = { queue = \"second\" }");
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5004\"\nqueue = \"first\"\n\
         [[queues]]\nname = \"first\"\nleave_key = \"*\"\n{acd}"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let bob = agent(&h, "bob", "uas_call.xml").await?;
    caller_audio()?;
    caller(
        &h,
        "leave",
        "uac_key_info.xml",
        "5004",
        &["-key", "dtmf", "*"],
    )?
    .expect_success()
    .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.route, "queue:first>queue:second");
    assert_eq!(end.queue.as_deref(), Some("second"));
    assert_eq!(end.agent.as_deref(), Some("bob"));
    let log = queue_log(&h, &end.call_id);
    assert_eq!(
        log[..3],
        [
            QueueEventKind::EnterQueue,
            QueueEventKind::Fallback,
            QueueEventKind::EnterQueue
        ],
        "{log:?}"
    );
    assert_eq!(row(&h, &end.call_id)?.result, CallResult::Answered);
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// `max_wait_secs = 1` in the first queue with `fallback = { queue = "second" }`: the call
/// moves on by itself and bob answers it there. A whisper plays to bob before the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_fallback_to_another_queue_with_whisper() -> anyhow::Result<()> {
    let (m, _) = media("fallback")?;
    let acd = TWO_QUEUES.replace(
        "{FIRST}",
        "max_wait_secs = 1\nfallback = { queue = \"second\" }",
    );
    // A 300 ms whisper (15 packets): short enough to end well within the caller's 2 s.
    let whisper = out_dir().join(format!("whisper-{}.wav", std::process::id()));
    hotline_media::wav::write_wav(
        &whisper,
        hotline_media::wav::WavEncoding::Ulaw,
        &[3000i16; 2400],
    )?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5005\"\nqueue = \"first\"\n\
         [[queues]]\nname = \"second\"\nwhisper = \"{}\"\n{acd}",
        whisper.display()
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let bob = agent(&h, "bob", "uas_call.xml").await?;
    caller_audio()?;
    caller(&h, "fallback", "uac_call_with_audio.xml", "5005", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.route, "queue:first>queue:second");
    assert_eq!(end.agent.as_deref(), Some("bob"));
    let b = end.media.and_then(|m| m.b).context("agent leg")?;
    // bob heard the whisper (15 packets) and then the caller (bridged after it).
    assert!(b.tx_packets >= 15 + 10, "{b:?}");
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// bob (an agent of the queue) is called as an extension: while on that call the ACD has
/// him not-ready (busy), so a queued call is offered to carol; afterwards bob is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_busy_on_an_extension_call_is_not_offered_queue_calls() -> anyhow::Result<()> {
    let (m, _) = media("busy")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5006\"\nextension = \"bob\"\n\
         [[numbers]]\nnumber = \"5007\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = {{ support = 1 }}\n"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let bob = agent(&h, "bob", "uas_call.xml").await?;
    let carol = agent(&h, "carol", "uas_call.xml").await?;
    caller_audio()?;
    let first = caller(&h, "to-bob", "uac_call_with_audio.xml", "5006", &[])?;
    let busy = AgentState::NotReady(NotReadyReason::Code(Switch::BUSY_CODE));
    wait_state(&h, "bob", &busy).await?;
    caller(&h, "queued", "uac_call_with_audio.xml", "5007", &[])?
        .expect_success()
        .await?;
    first.expect_success().await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    let mut ends = [next_end(&mut ended).await?, next_end(&mut ended).await?];
    ends.sort_by_key(|e| e.route.clone());
    assert_eq!(ends[0].route, "extension:bob");
    assert_eq!(ends[0].agent.as_deref(), Some("bob"));
    assert_eq!(ends[1].route, "queue:support");
    assert_eq!(ends[1].agent.as_deref(), Some("carol"), "{:?}", ends[1]);
    wait_state(&h, "bob", &AgentState::Available).await?;
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// Polls the ACD until `user` is in `want` (bounded to 10 s).
async fn wait_state(h: &Hotline, user: &str, want: &AgentState) -> anyhow::Result<()> {
    let s = h.switch.as_ref().context("switch")?;
    let mut last = None;
    for _ in 0..1000 {
        last = s.agent_state(user).await;
        if last.as_ref() == Some(want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("{user} never reached {want:?} (last {last:?})")
}

/// Callback: bob (the only agent) is busy on an extension call, so alice's queued call has
/// a long expected wait and hears the callback offer; she presses `#` (INFO) and Hotline
/// hangs up, keeping her place. When bob's call ends, Hotline calls bob first (his desk
/// gets alice's pop), then alice (her registered phone), and bridges them; the desk holds
/// the call; alice hangs up after 1.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_keeps_the_place_and_calls_agent_then_customer() -> anyhow::Result<()> {
    let (m, _) = media("callback")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5006\"\nextension = \"bob\"\n\
         [[numbers]]\nnumber = \"5007\"\nqueue = \"support\"\n\
         [[queues]]\nname = \"support\"\ncallback_key = \"#\"\ncallback_min_ewt_secs = 60\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let mut events = switch(&mut h)?.subscribe();
    let handle = switch(&mut h)?.handle();
    // bob takes two calls: the extension call, then the callback.
    let bob = calls::agent(
        Proto::Udp.server_addr(&h),
        "bob",
        "uas_call.xml",
        &["-rtp_echo", "-m", "2"],
    )
    .await?;
    let alice_phone = agent(&h, "alice", "uas_answer_then_bye.xml").await?;
    caller_audio()?;
    let first = caller(&h, "to-bob", "uac_call_with_audio.xml", "5006", &[])?;
    let busy = AgentState::NotReady(NotReadyReason::Code(Switch::BUSY_CODE));
    wait_state(&h, "bob", &busy).await?;
    caller(
        &h,
        "wants-callback",
        "uac_key_info_hung_up_on.xml",
        "5007",
        &["-key", "dtmf", "#"],
    )?
    .expect_success()
    .await?;
    first.expect_success().await?;
    // bob's desk gets the callback like an offered call: the pop of alice's number before
    // his phone rings, then answered once alice picks up; then it is a call like an
    // inbound one, with the desk's call control (hold).
    let offered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            // (The extension call to bob before it is offered too.)
            if let Ok(SwitchEvent::CallOffered(o)) = events.recv().await
                && o.call_id.starts_with("callback-")
            {
                break o;
            }
        }
    })
    .await
    .context("callback offered to the desk")?;
    assert_eq!(
        (
            offered.agent.as_str(),
            offered.caller.as_str(),
            offered.queue.as_str()
        ),
        ("bob", "alice", "support"),
        "{offered:?}"
    );
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(SwitchEvent::CallAnswered { call_id, agent, .. }) = events.recv().await
                && call_id.starts_with("callback-")
            {
                break (call_id, agent);
            }
        }
    })
    .await
    .map(|(call_id, agent)| assert_eq!((call_id, agent.as_str()), (offered.call_id.clone(), "bob")))
    .context("callback answered on the desk")?;
    handle
        .call_command(&offered.call_id, CallCommand::Hold)
        .await
        .context("hold the callback from the desk")?;
    alice_phone.expect_success().await?;
    bob.expect_success().await?;
    let mut ends = [
        next_end(&mut ended).await?,
        next_end(&mut ended).await?,
        next_end(&mut ended).await?,
    ];
    ends.sort_by_key(|e| e.route.clone());
    assert_eq!(ends[0].route, "callback:support", "{:?}", ends[0]);
    assert!(ends[0].bridged, "{:?}", ends[0]);
    assert_eq!(ends[0].agent.as_deref(), Some("bob"));
    assert_eq!(ends[0].reason, EndReason::CallerHangup, "alice hung up");
    assert_eq!(ends[1].route, "extension:bob");
    assert_eq!(ends[2].route, "queue:support");
    assert_eq!(ends[2].reason, EndReason::Callback, "{:?}", ends[2]);
    assert!(!ends[2].bridged);
    let request = row(&h, &ends[2].call_id)?;
    assert_eq!(request.result, CallResult::Callback);
    assert!(queue_log(&h, &ends[2].call_id).contains(&QueueEventKind::Callback));
    let cb = row(&h, &ends[0].call_id)?;
    assert_eq!(
        (cb.result.clone(), cb.direction.as_str()),
        (CallResult::Answered, "outbound")
    );
    assert_eq!(
        (cb.caller.as_str(), cb.agent.as_deref()),
        ("alice", Some("bob"))
    );
    assert_eq!(cb.route, "callback:support");
    wait_state(&h, "bob", &AgentState::Available).await?;
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// `fallback = { number = "5008" }` where 5008 is a configured number routed to an
/// extension: after `max_wait_secs` the caller is put through to bob's phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_fallback_to_a_number_reaches_its_route() -> anyhow::Result<()> {
    let (m, _) = media("fallback-number")?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5005\"\nqueue = \"night\"\n\
         [[numbers]]\nnumber = \"5008\"\nextension = \"bob\"\n\
         [acd]\n[[acd.queue]]\nname = \"night\"\nmax_wait_secs = 1\n\
         fallback = {{ number = \"5008\" }}\n"
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let bob = agent(&h, "bob", "uas_call.xml").await?;
    caller_audio()?;
    caller(&h, "to-number", "uac_call_with_audio.xml", "5005", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.route, "queue:night>extension:bob");
    assert_eq!(end.agent.as_deref(), Some("bob"));
    let r = row(&h, &end.call_id)?;
    assert_eq!(r.result, CallResult::Answered);
    assert!(queue_log(&h, &end.call_id).contains(&QueueEventKind::Fallback));
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// A caller who presses nothing: after the (short) prompt and `timeout_secs` of silence,
/// with no retries left, the menu's default route (the support queue) takes the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_silence_leads_to_the_menu_default() -> anyhow::Result<()> {
    let (m, _) = media("ivr-default")?;
    let prompt = out_dir().join(format!("menu-short-{}.wav", std::process::id()));
    hotline_media::wav::write_wav(
        &prompt,
        hotline_media::wav::WavEncoding::Ulaw,
        &[2000i16; 1600],
    )?;
    let mut h = start_hotline_with(&format!(
        "{m}[[numbers]]\nnumber = \"5000\"\nmenu = \"quick\"\n\
         [[menus]]\nname = \"quick\"\nprompt = \"{}\"\ntimeout_secs = 1\nretries = 0\n\
         choices = {{ \"1\" = {{ queue = \"sales\" }} }}\ndefault = {{ queue = \"support\" }}\n\
         [acd]\n[[acd.queue]]\nname = \"sales\"\n[[acd.queue]]\nname = \"support\"\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = {{ support = 0 }}\n",
        prompt.display()
    ))
    .await?;
    let mut ended = switch(&mut h)?.take_ended().context("ended")?;
    let carol = agent(&h, "carol", "uas_call.xml").await?;
    caller_audio()?;
    caller(&h, "silent", "uac_call_with_audio.xml", "5000", &[])?
        .expect_success()
        .await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.route, "menu:quick>queue:support");
    assert_eq!(end.agent.as_deref(), Some("carol"));
    assert_clean(&h).await?;
    h.shutdown().await;
    Ok(())
}
