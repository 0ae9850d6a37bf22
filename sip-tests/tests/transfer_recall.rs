//! A blind transfer whose target does not answer never drops the caller (SIPp peers, a
//! desk over WebSocket for the desk's `call.transfer`):
//! bob, answering, REFERs the caller to carol, who refuses (486), cannot be reached (her
//! phone registered and went away) or rings until Hotline gives up (`[[extensions]]
//! ring_timeout_secs`). The caller, on
//! music meanwhile, goes to carol's no-answer destination if she has one (a voicemail
//! box), else back to the head of the queue the call came from, else to bob again; only
//! when none of them takes the caller does the call end (`TransferNotAnswered`, CDR
//! result `failed`). A transfer to a queue nobody can serve follows that queue's
//! fallback. Checked: who the caller talks to at the end, the CDR's route, result and
//! transfer count, the queue log (`RINGNOANSWER` by carol, `ENTERQUEUE transfer_back`),
//! the desks' events, the customer's trail (each agent's part with the call's recording)
//! and that nothing is left over.

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::time::Duration;

use anyhow::Context;
use hotline_cdr::{CallResult, HangupSide, QueueEventKind as K};
use hotline_sip_tests::calls::{
    agent, caller, cdr_row as row, memory, next_end, nothing_left, queue_log, start_for_calls,
};
use hotline_sip_tests::{Proto, SippBuilder, TRUSTED_IP, free_port, out_dir};
use hotline_switch::{EndReason, SwitchEvent};

/// dave: a fourth user, the queue's second agent.
const DAVE: &str = "[[users]]\nname = \"dave\"\npassword = \"dave-pw\"\n";

/// Queue `support` (number 4801): bob first (linear), then dave; bob's wrap-up keeps him
/// out of the queue after he transferred the call.
const SUPPORT: &str = "[[numbers]]\nnumber = \"4801\"\nqueue = \"support\"\n\
    [acd]\n[[acd.queue]]\nname = \"support\"\nstrategy = \"linear\"\nwrapup_secs = 30\n\
    [[acd.agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
    [[acd.agent]]\nid = \"dave\"\nqueues = { support = 0 }\n";

/// A voicemail box `name` (a short spoken greeting, no silence limit) in a fresh
/// directory: the directory and its `[[voicemail]]` entry.
fn voicemail_box(name: &str) -> (std::path::PathBuf, String) {
    let dir = out_dir().join(format!("recall-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = format!(
        "[[voicemail]]\nname = \"{name}\"\ndir = \"{}\"\nsilence_secs = 0\n\
         greeting_say = \"Hello.\"\n",
        dir.display()
    );
    (dir, cfg)
}

/// bob answers with `scenario`, REFERs the caller to `target` and takes `calls` calls.
async fn bob(
    server: std::net::SocketAddr,
    scenario: &str,
    target: &str,
    calls: u32,
) -> anyhow::Result<hotline_sip_tests::Sipp> {
    let calls = calls.to_string();
    let args = ["-key", "target", target, "-rtp_echo", "-m", &calls];
    agent(server, "bob", scenario, &args).await
}

/// The desk events of `call_id` received so far, as short strings.
fn desk_events(
    rx: &mut tokio::sync::broadcast::Receiver<SwitchEvent>,
    call_id: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            SwitchEvent::CallOffered(o) if o.call_id == call_id => {
                out.push(format!("offered:{}", o.agent));
            }
            SwitchEvent::CallAnswered {
                call_id: c, agent, ..
            } if c == call_id => out.push(format!("answered:{agent}")),
            SwitchEvent::CallTransferred {
                call_id: c,
                agent,
                to,
            } if c == call_id => out.push(format!("transferred:{agent}>{to}")),
            SwitchEvent::CallEnded {
                call_id: c, agent, ..
            } if c == call_id => out.push(format!("ended:{}", agent.unwrap_or_default())),
            _ => {}
        }
    }
    out
}

/// bob (queue support) transfers the caller to carol, who refuses with 486: the caller
/// goes back to the head of support and dave (bob is in wrap-up) answers and talks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_target_sends_the_caller_back_to_the_head_of_the_queue() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls("", 80, &format!("{DAVE}{SUPPORT}")).await?;
    let mut events = h.switch.as_ref().context("switch")?.subscribe();
    let bob = bob(server, "uas_refer_blind.xml", "carol", 1).await?;
    let carol = agent(server, "carol", "uas_reject.xml", &[]).await?;
    let dave = agent(server, "dave", "uas_call.xml", &["-rtp_echo"]).await?;
    caller(server, "4801", "uac_call_audio_long.xml", &["-d", "6000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    dave.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.agent.as_deref(), Some("dave"), "{end:?}");
    assert_eq!(
        end.route, "queue:support>extension:carol>queue:support",
        "{end:?}"
    );
    let b = end.media.context("media")?.b.context("dave's leg")?;
    assert!(b.rx_packets >= 15, "dave's echo reached the caller: {b:?}");
    let r = row(&h, &end.call_id)?;
    assert_eq!(
        (&r.result, r.agent.as_deref(), r.transfers),
        (&CallResult::Answered, Some("dave"), 1),
        "{r:?}"
    );
    let log = queue_log(&h, &end.call_id)?;
    let rna = log
        .iter()
        .position(|(k, a, d)| *k == K::RingNoAnswer && a.as_deref() == Some("carol") && d == "486")
        .context(format!("carol's RINGNOANSWER 486: {log:?}"))?;
    let back = log
        .iter()
        .position(|(k, _, d)| *k == K::EnterQueue && d == "transfer_back")
        .context(format!("ENTERQUEUE transfer_back: {log:?}"))?;
    let connect = log
        .iter()
        .rposition(|(k, a, _)| *k == K::Connect && a.as_deref() == Some("dave"))
        .context(format!("dave's CONNECT: {log:?}"))?;
    assert!(rna < back && back < connect, "{log:?}");
    // bob's desk: offered, answered, transferred; dave's: offered, answered, ended.
    let desk = desk_events(&mut events, &end.call_id);
    assert_eq!(
        desk,
        [
            "offered:bob",
            "answered:bob",
            "transferred:bob>extension:carol",
            "offered:dave",
            "answered:dave",
            "ended:dave"
        ],
        "{desk:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// carol rings out (`ring_timeout_secs = 2`, Hotline CANCELs) and has a no-answer
/// destination: her voicemail box, which comes before the queue the call came from. The
/// caller leaves a message there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_that_rings_out_goes_to_its_no_answer_destination() -> anyhow::Result<()> {
    let (dir, vm) = voicemail_box("carol-box");
    let (h, server, mut ended) = start_for_calls(
        "",
        80,
        &format!(
            "{DAVE}{SUPPORT}{vm}\
             [[extensions]]\nuser = \"carol\"\nring_timeout_secs = 2\n\
             no_answer = {{ voicemail = \"carol-box\" }}\n"
        ),
    )
    .await?;
    let bob = bob(server, "uas_refer_blind.xml", "carol", 1).await?;
    let carol = agent(server, "carol", "uas_cancel.xml", &[]).await?;
    let started = std::time::Instant::now();
    caller(server, "4801", "uac_call_audio_long.xml", &["-d", "10000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(
        end.route, "queue:support>extension:carol>voicemail:carol-box",
        "{end:?}"
    );
    let log = queue_log(&h, &end.call_id)?;
    assert!(
        log.iter().any(|(k, a, d)| *k == K::RingNoAnswer
            && a.as_deref() == Some("carol")
            && d == "timeout"),
        "carol rang out: {log:?}"
    );
    assert!(
        !log.iter()
            .any(|(k, _, d)| *k == K::EnterQueue && d == "transfer_back"),
        "the no-answer destination comes first: {log:?}"
    );
    let messages: Vec<_> = memory(&h)?
        .voicemail()
        .into_iter()
        .filter(|m| m.call_id == end.call_id)
        .collect();
    let m = messages
        .first()
        .with_context(|| format!("a message in carol's box: {end:?}"))?;
    assert_eq!(m.mailbox, "carol-box", "{m:?}");
    assert!(
        m.duration_ms >= 1000,
        "the caller spoke into the box: {m:?}"
    );
    // The call's record points at the message (the conversation with bob is in his
    // part's trail entry).
    assert_eq!(
        end.recording.as_deref().and_then(|p| p.to_str()),
        Some(m.path.as_str()),
        "{end:?}"
    );
    let r = row(&h, &end.call_id)?;
    assert_eq!(r.recording.as_deref(), Some(m.path.as_str()), "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "bob talked 1 s, carol rang 2 s"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A call straight to bob's extension: carol's phone registered and went away (nothing
/// answers her contact: Hotline's INVITE times out), so the caller goes back to bob, who
/// answers the second call and talks until the caller hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_rings_the_transferring_agent_again() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        80,
        "[[numbers]]\nnumber = \"4803\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = bob(server, "uas_refer_blind_then_answer.xml", "carol", 2).await?;
    // carol registers, then her phone is gone: the binding stays, nobody answers it.
    SippBuilder::new(
        "carol-register",
        "register_once.xml",
        Proto::Udp,
        free_port(),
    )
    .args(["-s", "carol", "-au", "carol", "-ap", "carol-pw"])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    caller(server, "4803", "uac_call_audio_long.xml", &["-d", "11000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(
        end.route, "extension:bob>extension:carol>extension:bob",
        "{end:?}"
    );
    assert_eq!(end.agent.as_deref(), Some("bob"), "{end:?}");
    let b = end.media.context("media")?.b.context("bob's second leg")?;
    assert!(b.rx_packets >= 15, "bob's echo after the recall: {b:?}");
    let log = queue_log(&h, &end.call_id)?;
    assert!(
        log.iter().any(|(k, a, d)| *k == K::RingNoAnswer
            && a.as_deref() == Some("carol")
            && d == "timeout"),
        "carol's INVITE timed out: {log:?}"
    );
    let r = row(&h, &end.call_id)?;
    assert_eq!(
        (&r.result, r.transfers),
        (&CallResult::Answered, 1),
        "{r:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// carol refuses and bob, called back, refuses too: nothing can take the caller, so
/// Hotline hangs up on them, and the CDR says the call failed (not `answered`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_to_take_the_caller_back_ends_the_call_saying_why() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        80,
        "[[numbers]]\nnumber = \"4804\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = bob(server, "uas_refer_blind_then_reject.xml", "carol", 2).await?;
    let carol = agent(server, "carol", "uas_reject.xml", &[]).await?;
    caller(server, "4804", "uac_call_hung_up_on.xml", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::TransferNotAnswered, "{end:?}");
    assert_eq!(
        end.route, "extension:bob>extension:carol>extension:bob",
        "{end:?}"
    );
    let r = row(&h, &end.call_id)?;
    assert_eq!(
        (&r.result, &r.hangup_side, r.transfers),
        (&CallResult::Failed, &HangupSide::System, 1),
        "{r:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// bob transfers the caller to the sales queue's number, which nobody can serve
/// (`join_when_empty = false`, no agents): the queue's own fallback, a voicemail box,
/// takes the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_a_queue_nobody_serves_follows_its_fallback() -> anyhow::Result<()> {
    let (dir, vm) = voicemail_box("sales-box");
    let (h, server, mut ended) = start_for_calls(
        "",
        80,
        &format!(
            "{DAVE}{SUPPORT}{vm}\
             [[acd.queue]]\nname = \"sales\"\njoin_when_empty = false\n\
             fallback = {{ voicemail = \"sales-box\" }}\n\
             [[numbers]]\nnumber = \"4805\"\nqueue = \"sales\"\n"
        ),
    )
    .await?;
    let bob = bob(server, "uas_refer_blind.xml", "4805", 1).await?;
    caller(server, "4801", "uac_call_audio_long.xml", &["-d", "6000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(
        end.route, "queue:support>queue:sales>voicemail:sales-box",
        "{end:?}"
    );
    let log = queue_log(&h, &end.call_id)?;
    assert!(
        log.iter().any(|(k, _, _)| *k == K::Fallback),
        "the sales queue's fallback: {log:?}"
    );
    let m = memory(&h)?
        .voicemail()
        .into_iter()
        .find(|m| m.call_id == end.call_id)
        .with_context(|| format!("a message in the sales box: {end:?}"))?;
    assert_eq!(m.mailbox, "sales-box", "{m:?}");
    nothing_left(&h).await?;
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The recall in the customer's service trail (SQLite store): bob's part (he transferred
/// to carol, who refused) and dave's part (the queue gave him the caller back) are two
/// entries of the call, each with its agent and the call's one recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_has_each_part_of_a_recalled_call_with_its_recording() -> anyhow::Result<()> {
    let db = out_dir().join(format!("recall-trail-{}.db", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (h, server, mut ended) = start_for_calls(
        "",
        80,
        &format!(
            "{DAVE}{SUPPORT}[crm]\n[store]\nurl = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .await?;
    let bob = bob(server, "uas_refer_blind.xml", "carol", 1).await?;
    let carol = agent(server, "carol", "uas_reject.xml", &[]).await?;
    let dave = agent(server, "dave", "uas_call.xml", &["-rtp_echo"]).await?;
    // A trunk caller (trusted address, no digest) whose number the CRM can know.
    SippBuilder::new(
        "trail-caller",
        "uac_trunk_call_bye.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-i",
        TRUSTED_IP,
        "-s",
        "4801",
        "-key",
        "caller",
        "+49301234567",
    ])
    .args(["-d", "6000"])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    dave.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.agent.as_deref(), Some("dave"), "{end:?}");
    let wav = end.recording.clone().context("the call's recording")?;
    let crm = h.crm.as_ref().context("[crm]")?;
    let last = crm
        .interaction_by_call_id(&end.call_id)
        .await?
        .context("a trail entry")?;
    let trail = crm.trail(last.customer_id, 10).await?;
    let mut parts: Vec<(Option<&str>, Option<&str>)> = trail
        .iter()
        .filter(|i| i.call_id.as_deref() == Some(end.call_id.as_str()))
        .map(|i| (i.agent.as_deref(), i.recording_path.as_deref()))
        .collect();
    parts.sort();
    let path = wav.to_str();
    assert_eq!(
        parts,
        [(Some("bob"), path), (Some("dave"), path)],
        "{trail:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    Ok(())
}

/// The desk's blind transfer (`call.transfer` to `agent:carol`) takes the same recall as
/// a phone's REFER: carol rings out (2 s, Hotline CANCELs), the caller goes back to the
/// head of support and dave answers; bob's desk got `call.transferred`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_blind_transfer_that_rings_out_goes_back_to_the_queue() -> anyhow::Result<()> {
    use client::{Desk, ORIGIN};
    use serde_json::json;
    let hash = hotline_cti::hash_password("desk-pw")?;
    let (h, server, mut ended) = start_for_calls("", 80, &format!(
            "{DAVE}{SUPPORT}[[extensions]]\nuser = \"carol\"\nring_timeout_secs = 2\n\
             [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n\
             [[cti.user]]\nname = \"bob\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"bob\"\n"
        ),
    )
    .await?;
    let cti = h.cti.as_ref().context("[cti]")?.local_addr();
    let mut desk = Desk::connect(cti, Some(ORIGIN)).await?;
    desk.login("bob", "desk-pw").await;
    desk.ok(json!({"type": "agent.ready"})).await;
    let bob = agent(server, "bob", "uas_call.xml", &["-rtp_echo"]).await?;
    let carol = agent(server, "carol", "uas_cancel.xml", &[]).await?;
    let dave = agent(server, "dave", "uas_call.xml", &["-rtp_echo"]).await?;
    let caller = caller(server, "4801", "uac_call_audio_long.xml", &["-d", "7000"])?;
    let (_, answered) = desk.event("call.answered").await;
    let call_id = answered["data"]["call_id"]
        .as_str()
        .context("call_id")?
        .to_string();
    desk.ok(json!({"type": "call.transfer", "call_id": call_id, "to": "agent:carol"}))
        .await;
    let (_, transferred) = desk.event("call.transferred").await;
    assert_eq!(
        transferred["data"]["to"], "extension:carol",
        "{transferred}"
    );
    caller.expect_success().await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    dave.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.call_id, call_id);
    assert_eq!(end.agent.as_deref(), Some("dave"), "{end:?}");
    assert_eq!(
        end.route, "queue:support>extension:carol>queue:support",
        "{end:?}"
    );
    let log = queue_log(&h, &end.call_id)?;
    assert!(
        log.iter().any(|(k, a, d)| *k == K::RingNoAnswer
            && a.as_deref() == Some("carol")
            && d == "timeout"),
        "carol rang out: {log:?}"
    );
    assert!(
        log.iter()
            .any(|(k, _, d)| *k == K::EnterQueue && d == "transfer_back"),
        "{log:?}"
    );
    desk.close().await;
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}
