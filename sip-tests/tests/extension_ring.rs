//! No-answer destinations (`[[extensions]] no_answer`) that lead back round through a
//! queue's fallback (a cycle the config check cannot see) stop after
//! `hotline_switch::MAX_RECALLS` recalls instead of ringing until the caller gives up
//! (SIPp peers).

use hotline_cdr::{CallResult, HangupSide, QueueEventKind as K};
use hotline_sip_tests::calls::{
    agent, caller, cdr_row, next_end, nothing_left, queue_log, start_for_calls,
};
use hotline_switch::{EndReason, MAX_RECALLS};

/// Number 4820 rings carol directly.
const CAROL: &str = "[[numbers]]\nnumber = \"4820\"\nextension = \"carol\"\n";

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
