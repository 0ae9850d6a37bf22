//! Agent devices that vanish (`[qualify]`): Hotline probes registered agent contacts with
//! OPTIONS. An agent without a registration, or whose device stops answering, is
//! not-ready "unreachable" (published like any state change) and returns when the device
//! answers; a call offered to a dead device goes back to the queue and to the next agent
//! long before the queue's ring timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotline_acd::{AgentState, NotReadyReason};
use hotline_sip_tests::{
    Proto, Sipp, SippBuilder, caller_audio, calls, free_port, start_hotline_with,
};
use hotline_switch::{AgentStatus, EndReason, Switch, SwitchEvent};

const UNREACHABLE: AgentState =
    AgentState::NotReady(NotReadyReason::Code(Switch::UNREACHABLE_CODE));

/// Waits (bounded) until the ACD says `user` is in `want`. The state is polled: it may
/// have changed before the test could subscribe to the event bus.
async fn wait_state(sw: &Switch, user: &str, want: AgentState) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = sw.agent_state(user).await;
        if got == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{user} is {got:?}, not {want:?}, after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers `user` from `port` (once) and starts its UAS there: answers calls with an
/// RTP echo, auto-answers OPTIONS (`-aa`), takes many "calls" (each probe counts as one).
async fn device(server: SocketAddr, user: &str, port: u16, register: bool) -> anyhow::Result<Sipp> {
    if register {
        calls::register(server, user, port).await?;
    }
    calls::device(user, port, "uas_call.xml", |b| {
        b.args(["-rtp_echo", "-aa"])
            .set("-m", "10000")
            .set("-timeout", "60s")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_device_loses_its_offer_to_the_next_agent_and_comes_back() -> anyhow::Result<()> {
    let mut h = start_hotline_with(
        &(hotline_sip_tests::media(200)
            + "\
         [[numbers]]\nnumber = \"4950\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nring_timeout_secs = 20\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = { support = 1 }\n\
         [qualify]\ninterval_secs = 1\ntimeout_ms = 400\nmisses = 2\n"),
    )
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let sw = h.switch.as_mut().context("switch")?;
    let mut ended = sw.take_ended().context("ended reports")?;
    // Nobody has registered yet: both agents leave the ready pool.
    wait_state(sw, "bob", UNREACHABLE).await?;
    wait_state(sw, "carol", UNREACHABLE).await?;
    // They register and their devices answer the probes: ready again.
    let (bob_port, carol_port) = (free_port(), free_port());
    let bob = device(server, "bob", bob_port, true).await?;
    let _carol = device(server, "carol", carol_port, true).await?;
    wait_state(sw, "bob", AgentState::Available).await?;
    wait_state(sw, "carol", AgentState::Available).await?;

    // bob's phone dies (still registered); a call comes in at once and is offered to bob
    // first (tier 0), whose device no longer answers.
    let mut bus = sw.subscribe();
    drop(bob);
    caller_audio()?;
    let call = SippBuilder::new(
        "q-caller",
        "uac_call_audio_long.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4950", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .args(["-d", "8000"])
    .spawn(Some(server))?;
    call.expect_success().await?;
    let end = tokio::time::timeout(Duration::from_secs(15), ended.recv())
        .await
        .context("no call end")?
        .context("switch stopped")?;
    // Bridged to carol within the caller's 8 s, so not by bob's 20 s ring timeout.
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.agent.as_deref(), Some("carol"), "{end:?}");
    let media = end.media.context("media")?;
    assert!(
        media.b.context("carol's leg")?.rx_packets >= 50,
        "carol talked with the caller for seconds: {media:?}"
    );
    assert_eq!(sw.agent_state("bob").await, Some(UNREACHABLE));
    // Desks were told: bob was offered the call, then went not-ready "unreachable".
    let mut bob_states = Vec::new();
    while let Ok(ev) = bus.try_recv() {
        if let SwitchEvent::AgentState(s) = ev
            && s.agent == "bob"
        {
            bob_states.push(s.status);
        }
    }
    assert!(
        matches!(bob_states.first(), Some(AgentStatus::Reserved { .. })),
        "the call was offered to bob first: {bob_states:?}"
    );
    assert!(
        bob_states.contains(&AgentStatus::NotReady {
            reason: "unreachable".into()
        }),
        "{bob_states:?}"
    );

    // bob's phone comes back on the same contact: ready again without re-registering.
    let _bob = device(server, "bob", bob_port, false).await?;
    wait_state(sw, "bob", AgentState::Available).await?;
    h.shutdown().await;
    Ok(())
}
