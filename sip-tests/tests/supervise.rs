//! Supervisor monitor / whisper / barge end to end (issue #7). The caller is a scripted UA
//! on raw UDP sending RTP whose every payload byte is `MARK`; the agent's (bob's) and the
//! supervisor's (alice's) phones register with SIPp, then answer on the same port with
//! raw UDP and send their own constant bytes. A constant heard by a party tells exactly
//! whom it hears: a byte alone is one speaker relayed, the G.711 sum of two bytes is the
//! mix of those two. The supervisor drives everything from a CTI desk (`supervise.*`).

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use client::{Desk, ORIGIN};
use hotline_media::g711::Law;
use hotline_sip_tests::Proto;
use hotline_sip_tests::rawua::{Caller, Heard, MARK, RawPhone};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// Bob's (the agent's) audio.
const BOB: u8 = 0x33;
/// Alice's (the supervisor's) audio.
const SUP: u8 = 0x22;

/// The G.711 µ-law sum of two constant payloads: what a mix of those two sounds like.
fn sum(a: u8, b: u8) -> u8 {
    let u = Law::Ulaw;
    u.encode((i32::from(u.decode(a)) + i32::from(u.decode(b))).clamp(-32768, 32767) as i16)
}

fn n(h: &Heard, b: u8) -> u64 {
    h.uniform.get(&b).copied().unwrap_or(0)
}

struct Rig {
    h: hotline::Hotline,
    ended: tokio::sync::mpsc::Receiver<hotline_switch::CallEnd>,
    server: SocketAddr,
    cti: SocketAddr,
}

/// Hotline with queue `support` (4100, agent bob) and `sales` (agent carol); desk logins:
/// alice, supervisor of support (her phone is SIP user alice), dave, supervisor of sales
/// only (phone: SIP user dave), and carol, an agent.
async fn rig(ports: [u16; 2]) -> anyhow::Result<Rig> {
    let hash = hotline_cti::hash_password("desk-pw")?;
    let cfg = format!(
        "[[users]]\nname = \"dave\"\npassword = \"dave-pw\"\n\
         [media]\nrtp_ip = \"127.0.0.1\"\nrtp_ports = [{}, {}]\n\
         [[numbers]]\nnumber = \"4100\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nwrapup_secs = 60\n\
         [[acd.queue]]\nname = \"sales\"\nwrapup_secs = 60\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = {{ sales = 0 }}\n\
         [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n\
         [[cti.user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\nqueues = [\"support\"]\n\
         [[cti.user]]\nname = \"dave\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\nqueues = [\"sales\"]\n\
         [[cti.user]]\nname = \"carol\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"carol\"\n",
        ports[0], ports[1],
    );
    let mut h = hotline_sip_tests::start_hotline_with(&cfg).await?;
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
    })
}

impl Rig {
    async fn desk(&self, user: &str) -> anyhow::Result<Desk> {
        let mut d = Desk::connect(self.cti, Some(ORIGIN)).await?;
        d.login(user, "desk-pw").await;
        Ok(d)
    }

    fn queue_log(&self) -> anyhow::Result<Vec<hotline_cdr::QueueEvent>> {
        Ok(self
            .h
            .cdr
            .as_ref()
            .and_then(|c| c.memory.as_ref())
            .context("memory CDRs")?
            .events())
    }

    /// After `calls` calls have ended: no call task and no RTP port is left.
    async fn done(mut self, calls: usize) -> anyhow::Result<()> {
        for _ in 0..calls {
            tokio::time::timeout(WAIT, self.ended.recv())
                .await
                .context("a call's end within 10 s")?
                .context("switch stopped")?;
        }
        let sw = self.h.switch.as_ref().context("switch")?;
        assert_eq!(sw.stats().active_calls(), 0, "call tasks left");
        let ports = sw.ports();
        let deadline = tokio::time::Instant::now() + WAIT;
        while ports.in_use() != 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ports.in_use(), 0, "RTP ports leaked");
        self.h.shutdown().await;
        Ok(())
    }
}

/// The caller dials support; bob's phone answers; returns once the caller hears bob.
async fn talking(rig: &Rig) -> anyhow::Result<(Caller, RawPhone)> {
    let mut bob = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut caller = Caller::call(rig.server, "4100").await?;
    bob.answer().await?;
    caller.until("bob's audio", |h| n(h, BOB) >= 25).await?;
    bob.until("the caller's audio", |h| n(h, MARK) >= 25)
        .await?;
    Ok((caller, bob))
}

fn start(agent: &str, mode: &str) -> Value {
    json!({"type": "supervise.start", "agent": agent, "mode": mode})
}

fn mode(mode: &str) -> Value {
    json!({"type": "supervise.mode", "mode": mode})
}

/// Alice supervises bob's call from her desk, her SIP phone rings and answers; then mode
/// by mode, switched live: monitor (alice hears caller + bob, nobody hears alice), whisper
/// (bob hears caller + alice, the caller still bob alone), barge (all three), back to
/// monitor (alice is silent again for both). Stop hangs up alice's phone only: caller and
/// bob go on. Each step is a SUPERVISE queue-log line. Bad requests change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_monitors_whispers_barges_live() -> anyhow::Result<()> {
    let rig = rig(hotline_sip_tests::rtp_ports(200)).await?;
    let mut alice = rig.desk("alice").await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", SUP).await?;
    alice.fails(start("bob", "listen"), "bad_request").await;
    alice.fails(start("bob", "monitor"), "invalid_state").await; // no call yet
    let (mut caller, mut bob) = talking(&rig).await?;
    alice.fails(start("nobody", "monitor"), "not_found").await;
    alice.fails(mode("whisper"), "invalid_state").await; // not supervising yet
    alice.ok(start("bob", "monitor")).await;
    alice_phone.answer().await?;

    // Monitor: alice hears both; caller and bob hear only each other.
    alice_phone
        .until("caller + bob", |h| n(h, sum(MARK, BOB)) >= 25)
        .await?;
    let (c0, b0) = (caller.heard(), bob.heard().context("bob")?);
    caller
        .until("bob, 25 more", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    bob.until("caller, 25 more", |h| n(h, MARK) >= n(&b0, MARK) + 25)
        .await?;
    let c = caller.heard();
    assert_eq!(
        n(&c, SUP) + n(&c, sum(BOB, SUP)),
        0,
        "the caller hears bob only: {c:?}"
    );
    assert!(c.echo == 0 && n(&c, sum(MARK, BOB)) == 0, "{c:?}");
    let b = bob.heard().context("bob")?;
    assert_eq!(
        n(&b, SUP) + n(&b, sum(MARK, SUP)),
        0,
        "bob hears the caller only: {b:?}"
    );

    // Whisper: bob hears caller + alice, the caller still bob alone.
    alice.ok(mode("whisper")).await;
    bob.until("caller + alice", |h| n(h, sum(MARK, SUP)) >= 25)
        .await?;
    let c0 = caller.heard();
    caller
        .until("bob, 25 more", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    let c = caller.heard();
    assert_eq!(
        n(&c, SUP) + n(&c, sum(BOB, SUP)),
        0,
        "the caller never hears alice: {c:?}"
    );
    alice_phone
        .until("still caller + bob", |h| n(h, sum(MARK, BOB)) >= 75)
        .await?;

    // Barge: all three.
    alice.ok(mode("barge")).await;
    caller
        .until("bob + alice", |h| n(h, sum(BOB, SUP)) >= 25)
        .await?;
    bob.until("caller + alice", |h| {
        n(h, sum(MARK, SUP)) >= n(&b, sum(MARK, SUP)) + 50
    })
    .await?;

    // Back to monitor: alice's voice stops reaching the caller.
    alice.ok(mode("monitor")).await;
    caller
        .until("bob alone again", |h| n(h, BOB) >= n(&c, BOB) + 25)
        .await?;
    let settled = n(&caller.heard(), sum(BOB, SUP));
    let c0 = caller.heard();
    caller
        .until("bob, 25 more", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    assert!(
        n(&caller.heard(), sum(BOB, SUP)) <= settled + 1,
        "alice still heard by the caller in monitor: {:?}",
        caller.heard()
    );

    // Stop: alice's phone gets BYE; caller and bob keep talking.
    alice.ok(json!({"type": "supervise.stop"})).await;
    alice_phone.bye().await?;
    alice.fails(mode("barge"), "invalid_state").await;
    let c0 = caller.heard();
    caller
        .until("bob after stop", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;

    let log: Vec<String> = rig
        .queue_log()?
        .into_iter()
        .filter(|e| e.event == hotline_cdr::QueueEventKind::Supervise)
        .map(|e| format!("{} {}", e.agent.unwrap_or_default(), e.data))
        .collect();
    assert_eq!(
        log,
        [
            "alice monitor bob",
            "alice whisper bob",
            "alice barge bob",
            "alice monitor bob",
            "alice stop bob"
        ],
        "SUPERVISE lines"
    );
    caller.hangup().await?;
    bob.bye().await?;
    alice.close().await;
    rig.done(1).await
}

/// Who may not supervise: an agent, a supervisor of other queues; nobody supervises an
/// agent who is not talking. The refusals change nothing (no phone rings). When the call
/// ends, the supervisor's leg ends with it and every port is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_the_call_end_ends_the_supervisor() -> anyhow::Result<()> {
    let rig = rig(hotline_sip_tests::rtp_ports(200)).await?;
    let mut alice = rig.desk("alice").await?;
    let mut dave = rig.desk("dave").await?;
    let mut carol = rig.desk("carol").await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", SUP).await?;
    let (mut caller, bob) = talking(&rig).await?;
    carol.fails(start("bob", "monitor"), "forbidden").await;
    dave.fails(start("bob", "monitor"), "forbidden").await;
    alice
        .fails(start("carol", "monitor"), "invalid_state")
        .await;
    alice.ok(start("bob", "barge")).await;
    alice_phone.answer().await?;
    caller
        .until("bob + alice", |h| n(h, sum(BOB, SUP)) >= 25)
        .await?;
    // The caller hangs up: bob and alice both get BYE.
    caller.hangup().await?;
    bob.bye().await?;
    alice_phone.bye().await?;
    for d in [alice, dave, carol] {
        d.close().await;
    }
    rig.done(1).await
}

/// The supervisor's phone hangs up in whisper: only that leg ends; the caller and bob hear
/// each other as before (the relay, nothing mixed), and the desk's next mode change is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_hanging_up_leaves_the_call_as_it_was() -> anyhow::Result<()> {
    let rig = rig(hotline_sip_tests::rtp_ports(200)).await?;
    let mut alice = rig.desk("alice").await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", SUP).await?;
    let (mut caller, mut bob) = talking(&rig).await?;
    alice.ok(start("bob", "whisper")).await;
    alice_phone.answer().await?;
    bob.until("caller + alice", |h| n(h, sum(MARK, SUP)) >= 25)
        .await?;
    alice_phone.hangup().await?;
    let heard = |p: &RawPhone| p.heard();
    let b0 = heard(&bob).context("bob")?;
    bob.until("the caller alone", |h| n(h, MARK) >= n(&b0, MARK) + 25)
        .await?;
    let settled = n(&heard(&bob).context("bob")?, sum(MARK, SUP));
    let b1 = heard(&bob).context("bob")?;
    bob.until("the caller, 25 more", |h| n(h, MARK) >= n(&b1, MARK) + 25)
        .await?;
    let b = heard(&bob).context("bob")?;
    assert!(n(&b, sum(MARK, SUP)) <= settled + 1, "still mixed: {b:?}");
    alice.fails(mode("barge"), "invalid_state").await;
    let c0 = caller.heard();
    caller
        .until("bob", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    caller.hangup().await?;
    bob.bye().await?;
    alice.close().await;
    rig.done(1).await
}
