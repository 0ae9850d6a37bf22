//! Call-path pieces of the B2BUA with real SIPp peers: offer-less re-INVITEs (RFC 3264 §5:
//! our 2xx offers, the ACK answers) from the agent's phone and from the caller, and an
//! agent phone that answers our INVITE `422 Session Interval Too Small` (RFC 4028 §6), and
//! an agent busy on a phone-to-phone call the proxy carries (not offered queue calls).
//! Every test also checks that nothing is left over (call tasks, RTP ports, dialogs).

use std::time::{Duration, Instant};

use anyhow::Context;
use hotline_acd::{AgentState, NotReadyReason};
use hotline_sip_tests::calls::{agent, caller, next_end, nothing_left, start_for_calls};
use hotline_sip_tests::{Proto, SippBuilder, free_port};
use hotline_switch::{EndReason, Switch};

/// bob holds and resumes with re-INVITEs without SDP: Hotline's 200 offers sendrecv (the
/// scenario checks it), bob's ACK answers `sendonly` (hold: the caller hears music, the
/// caller's audio is not relayed to bob) and later `sendrecv` (talking again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_offerless_reinvite_answer_in_ack_holds_and_resumes_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4201\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_reinvite_no_sdp.xml", &["-rtp_echo"]).await?;
    // 5 s of caller audio; bob holds from about 1 s to 2.5 s after answering.
    caller(server, "4201", "uac_call_audio_long.xml", &["-d", "5000"])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert!(
        (1200..=4000).contains(&end.hold_ms),
        "about 1.5 s on hold (the ACK's answer held): {end:?}"
    );
    let media = end.media.context("media")?;
    let b = media.b.context("agent leg")?;
    assert!(
        media.a.tx_packets >= 150,
        "RTP to the caller throughout (music while held): {media:?}"
    );
    let not_relayed = media.a.rx_packets.saturating_sub(b.tx_packets);
    assert!(
        not_relayed >= 50,
        "caller audio withheld from bob while on hold: {media:?}"
    );
    assert!(
        b.tx_packets >= 50,
        "relayed before and after the hold (the second ACK resumed): {media:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// The caller holds and resumes with re-INVITEs without SDP, answering Hotline's offer in
/// the ACK (`sendonly`, then `sendrecv`): hold time is counted and nothing is sent to the
/// caller while they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_offerless_reinvite_answer_in_ack_holds_and_resumes_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4202\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_call.xml", &["-rtp_echo"]).await?;
    caller(server, "4202", "uac_reinvite_no_sdp.xml", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert!(
        (1200..=3500).contains(&end.hold_ms),
        "about 1.5 s on hold (the ACK's answer held): {end:?}"
    );
    let media = end.media.context("media")?;
    let b = media.b.context("agent leg")?;
    // While the caller holds, bob hears music and nothing goes to the caller.
    let withheld = media.a.rx_packets.saturating_sub(media.a.tx_packets);
    assert!(
        withheld >= 40,
        "nothing sent to the caller while they held: {media:?}"
    );
    assert!(
        b.tx_packets >= 150,
        "RTP to bob throughout (music while held): {media:?}"
    );
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// bob's phone answers the first INVITE 422 with Min-SE 3600: Hotline sends the INVITE
/// again (CSeq 2, Session-Expires and Min-SE 3600: the scenario checks), bob answers it,
/// the call is bridged and bob's BYE ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_422_is_retried_with_its_min_se_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4203\"\nextension = \"bob\"\n",
    )
    .await?;
    let bob = agent(server, "bob", "uas_422_then_answer.xml", &["-rtp_echo"]).await?;
    caller(server, "4203", "uac_call_hung_up_on.xml", &[])?
        .expect_success()
        .await?;
    bob.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::AgentHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.agent.as_deref(), Some("bob"), "{end:?}");
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// Polls `user`'s ACD state until `want` holds (10 s at most).
async fn wait_state(
    switch: &Switch,
    user: &str,
    want: impl Fn(&AgentState) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = switch.agent_state(user).await;
        if state.as_ref().is_some_and(&want) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{user} still {state:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// bob, the support queue's first choice, is on a direct call from alice that the SIP
/// core proxies (no B2BUA): the ACD sees him busy from its 200 on, so a queue call goes
/// to carol (a second INVITE to bob's single-call SIPp would fail it); when alice hangs
/// up (the BYE passes the proxy) bob is available again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_on_a_proxied_direct_call_is_not_offered_queue_calls_udp() -> anyhow::Result<()> {
    let (h, server, mut ended) = start_for_calls(
        "",
        200,
        "[[numbers]]\nnumber = \"4204\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = { support = 1 }\n",
    )
    .await?;
    let switch = h.switch.as_ref().context("switch")?;
    let bob = agent(server, "bob", "uas_call.xml", &["-rtp_echo"]).await?;
    let carol = agent(server, "carol", "uas_call.xml", &["-rtp_echo"]).await?;
    wait_state(switch, "bob", |s| *s == AgentState::Available).await?;
    let direct = SippBuilder::new("direct", "uac_call_stay.xml", Proto::Udp, free_port())
        .args([
            "-s", "bob", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d", "5000",
        ])
        .spawn(Some(server))?;
    let busy = AgentState::NotReady(NotReadyReason::Code(Switch::BUSY_CODE));
    wait_state(switch, "bob", |s| *s == busy).await?;
    caller(server, "4204", "uac_call_with_audio.xml", &[])?
        .expect_success()
        .await?;
    carol.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.agent.as_deref(), Some("carol"), "{end:?}");
    assert!(end.bridged, "{end:?}");
    direct.expect_success().await?;
    bob.expect_success().await?;
    wait_state(switch, "bob", |s| *s == AgentState::Available).await?;
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}
