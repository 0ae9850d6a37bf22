//! In-call features of the B2BUA with real SIPp peers: hold and resume from the agent's
//! phone, blind transfer (REFER) to an extension and to a queue, session timers (RFC
//! 4028) expiring and refreshed, and the no-RTP timeout. Every test also checks that
//! nothing is left over (call tasks, RTP ports, SIP dialogs).

use std::time::{Duration, Instant};

use anyhow::Context;
use hotline_sip_tests::calls::{agent, caller, next_end, nothing_left, start_for_calls};

/// Session timers this short need a Min-SE below the RFC's 90 s.
const MIN_SE: &str = "min_se_secs = 2\n";
use hotline_switch::EndReason;

/// The agent puts the caller on hold (re-INVITE sendonly → Hotline answers recvonly) and
/// takes them back (sendrecv). Meanwhile the caller keeps receiving RTP (music while
/// held), the caller's audio is not relayed to the agent, and the hold time is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_holds_and_resumes_caller_hears_music_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4101\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_hold_resume.xml", &["-rtp_echo"]).await?;
    // 5 s of caller audio; bob holds from about 1 s to 2.5 s after answering.
    caller(server, "4101", "uac_call_audio_long.xml", &["-d", "5000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert!(
        (1200..=4000).contains(&end.hold_ms),
        "about 1.5 s on hold: {end:?}"
    );
    let media = end.media.context("media")?;
    let b = media.b.context("agent leg")?;
    // The caller heard RTP all along: echo while bridged, music while held (~50/s).
    assert!(
        media.a.tx_packets >= 150,
        "RTP to the caller throughout: {media:?}"
    );
    // While held, the caller's packets arrive but are not relayed to the agent.
    let not_relayed = media.a.rx_packets.saturating_sub(b.tx_packets);
    assert!(
        not_relayed >= 50,
        "caller audio withheld from the agent while on hold: {media:?}"
    );
    assert!(
        b.tx_packets >= 50,
        "relayed before and after the hold: {media:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// bob transfers the caller blind to carol (a registered user): REFER → 202, NOTIFY 100
/// and 200 (sipfrag) to bob, BYE to bob; Hotline calls carol, the caller (who stayed
/// connected) is bridged to her, and the caller's BYE releases carol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer_to_an_extension_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4102\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(
        server,
        "bob",
        "uas_refer_blind.xml",
        &["-key", "target", "carol", "-rtp_echo"],
    )
    .await?;
    let carol = agent(server, "carol", "uas_call.xml", &["-rtp_echo"]).await?;
    caller(server, "4102", "uac_call_audio_long.xml", &["-d", "5000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    let media = end.media.context("media")?;
    // Leg B is now carol's: she got the caller's audio and echoed it back.
    let b = media.b.context("carol's leg")?;
    assert!(
        b.tx_packets >= 30,
        "caller audio relayed to carol: {media:?}"
    );
    assert!(b.rx_packets >= 15, "carol's echo back: {media:?}");
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// bob (support queue) transfers the caller to the sales queue's number: the call
/// re-enters the ACD there and is offered to carol, who answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer_to_a_queue_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4103\"\nqueue = \"support\"\n\
         [[numbers]]\nnumber = \"4104\"\nqueue = \"sales\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\n[[acd.queue]]\nname = \"sales\"\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = { sales = 0 }\n",
    )
    .await?;
    let bob = agent(
        server,
        "bob",
        "uas_refer_blind.xml",
        &["-key", "target", "4104", "-rtp_echo"],
    )
    .await?;
    let carol = agent(server, "carol", "uas_call.xml", &["-rtp_echo"]).await?;
    caller(server, "4103", "uac_call_audio_long.xml", &["-d", "5000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    let b = end.media.context("media")?.b.context("carol's leg")?;
    assert!(b.tx_packets >= 30, "caller audio relayed to carol: {b:?}");
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// The caller asks for a 4 s session timer and refreshes nothing: Hotline sends BYE to
/// both legs before the interval is over (RFC 4028 §10: 4 s - min(32 s, 4/3 s)).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timer_expiry_ends_both_legs_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        MIN_SE,
        200,
        "[[numbers]]\nnumber = \"4105\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_call.xml", &["-rtp_echo"]).await?;
    let start = Instant::now();
    caller(
        server,
        "4105",
        "uac_session_expires.xml",
        &["-key", "se", "4"],
    )?
    .expect_success()
    .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::SessionExpired, "{end:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "expired after {took:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// A caller asking for less than `min_se_secs` (here 1 s < 2 s) gets 422 with Min-SE
/// before anything is set up (RFC 4028 §6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_interval_below_min_se_is_422_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        MIN_SE,
        100,
        "[[numbers]]\nnumber = \"4109\"\nqueue = \"support\"\n",
    )
    .await?;
    caller(
        server,
        "4109",
        "uac_session_too_small.xml",
        &["-key", "se", "1"],
    )?
    .expect_success()
    .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(
        (end.status, end.reason),
        (422, EndReason::Rejected),
        "{end:?}"
    );
    assert!(end.media.is_none(), "no media for a refused call");
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// The caller asks Hotline to refresh (refresher=uas, 4 s): Hotline re-INVITEs it at
/// half the interval, the caller answers, and the call outlives the first interval
/// until the caller hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timer_refreshed_by_hotline_keeps_the_call_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        MIN_SE,
        200,
        "[[numbers]]\nnumber = \"4106\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_call.xml", &["-rtp_echo"]).await?;
    let start = Instant::now();
    // The refresh comes 2 s after answer (half the interval); the caller then stays
    // 1.5 s more, past the first interval's expiry (4 s - 4/3 s after answer) but before
    // the next refresh, and hangs up.
    caller(
        server,
        "4106",
        "uac_session_refreshed.xml",
        &["-key", "se", "4", "-d", "1500"],
    )?
    .expect_success()
    .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "outlived the first interval's expiry: {took:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// Hotline offers the agent's phone a session timer; the phone answers 4 s with itself
/// as refresher and never refreshes: Hotline ends both legs (as UAC of that dialog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_session_timer_expiry_ends_both_legs_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        MIN_SE,
        200,
        "[[numbers]]\nnumber = \"4108\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(
        server,
        "bob",
        "uas_session_expires.xml",
        &["-key", "se", "4", "-rtp_echo"],
    )
    .await?;
    let start = Instant::now();
    caller(server, "4108", "uac_call_hung_up_on.xml", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::SessionExpired, "{end:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "expired after {took:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// The agent's phone sends no RTP (no echo): after `no_rtp_timeout_secs` (2 s) Hotline
/// hangs up both legs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rtp_from_the_agent_ends_both_legs_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "no_rtp_timeout_secs = 2\n[[numbers]]\nnumber = \"4107\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_call.xml", &[]).await?;
    caller(server, "4107", "uac_call_hung_up_on.xml", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::NoRtp, "{end:?}");
    let media = end.media.context("media")?;
    assert_eq!(
        media.b.context("agent leg")?.rx_packets,
        0,
        "the agent sent nothing: {media:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}
