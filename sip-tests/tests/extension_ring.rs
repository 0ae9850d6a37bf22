//! A number routed straight to an extension (no transfer) rings it for its
//! `[[extensions]] ring_timeout_secs`, then Hotline CANCELs (SIPp peers): the caller, on
//! music meanwhile, goes to the extension's `no_answer` destination, or without one is
//! hung up on with the CDR written. No-answer destinations that lead back round through
//! a queue's fallback (a cycle the config check cannot see) stop after
//! `hotline_switch::MAX_RECALLS` recalls instead of ringing until the caller gives up.

use anyhow::Context;
use hotline_cdr::{CallResult, HangupSide, QueueEventKind as K};
use hotline_sip_tests::calls::{
    agent, caller, cdr_row, next_end, nothing_left, queue_log, start_for_calls,
};
use hotline_switch::{EndReason, MAX_RECALLS};

/// dave: a fourth user, who answers where carol does not.
const DAVE: &str = "[[users]]\nname = \"dave\"\npassword = \"dave-pw\"\n";

/// Number 4820 rings carol directly.
const CAROL: &str = "[[numbers]]\nnumber = \"4820\"\nextension = \"carol\"\n";

/// carol rings out after 1 s (Hotline CANCELs) and her no-answer destination, dave,
/// answers and talks with the caller until the caller hangs up; route and CDR say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_that_rings_out_goes_to_the_no_answer_destination() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        40,
        &format!(
            "{DAVE}{CAROL}[[extensions]]\nuser = \"carol\"\nring_timeout_secs = 1\n\
             no_answer = {{ extension = \"dave\" }}\n"
        ),
    )
    .await?;
    let carol = agent(server, "carol", "uas_cancel.xml", &[]).await?;
    let dave = agent(server, "dave", "uas_call.xml", &["-rtp_echo"]).await?;
    caller(server, "4820", "uac_call_audio_long.xml", &["-d", "3000"])?
        .expect_success()
        .await?;
    carol.expect_success().await?;
    dave.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.agent.as_deref(), Some("dave"), "{end:?}");
    assert_eq!(end.route, "extension:carol>extension:dave", "{end:?}");
    let b = end.media.context("media")?.b.context("dave's leg")?;
    assert!(b.rx_packets >= 15, "dave's echo reached the caller: {b:?}");
    let r = cdr_row(&h, &end.call_id)?;
    assert_eq!(
        (&r.result, r.agent.as_deref(), r.route.as_str(), r.transfers),
        (
            &CallResult::Answered,
            Some("dave"),
            "extension:carol>extension:dave",
            0
        ),
        "{r:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// carol rings out after 1 s and has no no-answer destination: Hotline hangs up on the
/// caller (who was answered for music) and the CDR says the call failed, ended by the
/// system, routed to carol only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_that_rings_out_without_no_answer_ends_with_its_cdr() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        40,
        &format!("{CAROL}[[extensions]]\nuser = \"carol\"\nring_timeout_secs = 1\n"),
    )
    .await?;
    let carol = agent(server, "carol", "uas_cancel.xml", &[]).await?;
    caller(server, "4820", "uac_call_hung_up_on.xml", &[])?
        .expect_success()
        .await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::Failed, "{end:?}");
    assert!(!end.bridged, "{end:?}");
    assert_eq!(end.route, "extension:carol", "{end:?}");
    let r = cdr_row(&h, &end.call_id)?;
    assert_eq!(
        (
            &r.result,
            &r.hangup_side,
            r.route.as_str(),
            r.answered_at,
            r.transfers
        ),
        (
            &CallResult::Failed,
            &HangupSide::System,
            "extension:carol",
            None,
            0
        ),
        "{r:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// carol's no-answer destination is queue `loop`, which nobody serves and whose
/// fallback rings carol again: a cycle through a queue, which the config check does not
/// follow. The call stops after `MAX_RECALLS` recalls (carol rang `MAX_RECALLS + 1`
/// times), ending as a transfer nobody takes back does: Hotline hangs up, the CDR says
/// `failed` by the system, the queue log has each visit's `FALLBACK`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_destinations_that_lead_back_stop_after_the_recall_bound() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        40,
        &format!(
            "{CAROL}[acd]\n[[acd.queue]]\nname = \"loop\"\njoin_when_empty = false\n\
             fallback = {{ number = \"carol\" }}\n\
             [[extensions]]\nuser = \"carol\"\nring_timeout_secs = 1\n\
             no_answer = {{ queue = \"loop\" }}\n"
        ),
    )
    .await?;
    let rings = MAX_RECALLS + 1;
    // carol's UAS takes exactly the rings the bound allows; without the bound the next
    // INVITE finds nobody, the call goes on and the caller's SIPp (20 s) fails.
    let carol = agent(
        server,
        "carol",
        "uas_cancel.xml",
        &["-m", &rings.to_string()],
    )
    .await?;
    caller(server, "4820", "uac_call_hung_up_on.xml", &[])?
        .expect_success()
        .await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::TransferNotAnswered, "{end:?}");
    let want = std::iter::once("extension:carol")
        .chain((0..MAX_RECALLS).flat_map(|_| ["queue:loop", "extension:carol"]))
        .collect::<Vec<_>>()
        .join(">");
    assert_eq!(end.route, want, "{end:?}");
    let r = cdr_row(&h, &end.call_id)?;
    assert_eq!(
        (&r.result, &r.hangup_side, r.route.as_str()),
        (&CallResult::Failed, &HangupSide::System, want.as_str()),
        "{r:?}"
    );
    let log = queue_log(&h, &end.call_id)?;
    let fallbacks = log.iter().filter(|(k, _, _)| *k == K::Fallback).count();
    assert_eq!(fallbacks, MAX_RECALLS as usize, "{log:?}");
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}
