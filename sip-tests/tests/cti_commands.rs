//! The desk's call commands end to end: a caller (a scripted UA on raw UDP from the trusted
//! address, sending RTP whose payload marks it as the caller's) dials the queue, bob's
//! phone is a SIPp UAS that echoes RTP, and bob's desk is a WebSocket client. Because the
//! agent echoes what it hears, the caller's count of echoed packets tells whether the agent
//! receives caller audio; other audio packets are music; RFC 4733 packets are keys.
//! Commands from the desk: hold/resume, blind transfer, DTMF, pause/resume recording,
//! each with the error frames of bad requests (which change nothing).

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use client::{Desk, ORIGIN};
use hotline_sip_tests::calls::agent_with;
use hotline_sip_tests::rawua::{CALLER, Caller, MARK, RawPhone};
use hotline_sip_tests::{Proto, Sipp, SippBuilder, free_port, media};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// A satellite number, premium-rate fraud's favourite: outside every dial rule here.
const PREMIUM: &str = "+882161234567";
/// Agents may reach German numbers outside: the toll-fraud guard's rules for the desk.
const DIAL_RULES: &str = "[[dial_rules]]\nrole = \"agent\"\nallow = ['\\+49[1-9]\\d{6,12}']\n";

/// Waits (bounded) until the CRM's audit log has `actor`'s refused `action` to `dest`
/// (audit rows are written off the desk's path, so they land shortly after the error).
async fn refusal_audited(
    store: &hotline_crm::Store,
    actor: &str,
    action: &str,
    dest: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = store.audit_log(None, 100).await?;
        if log.iter().any(|e| {
            e.actor == actor && e.action == action && !e.allowed && e.detail.contains(dest)
        }) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no refused {action} of {actor} to {dest} in the audit log: {log:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers `user` with SIPp from a fresh port and runs `scenario` there as its phone,
/// echoing RTP.
async fn phone(server: SocketAddr, user: &str, scenario: &str) -> anyhow::Result<Sipp> {
    agent_with(server, user, scenario, |b| {
        b.arg("-rtp_echo").set("-timeout", "40s")
    })
    .await
}

struct Rig {
    h: hotline::Hotline,
    /// Reports of ended calls (a call's task is gone once its report is here).
    ended: tokio::sync::mpsc::Receiver<hotline_switch::CallEnd>,
    server: SocketAddr,
    cti: SocketAddr,
    recordings: std::path::PathBuf,
}

/// Hotline with queue `support` (4100, bob) and `sales` (4200, dave), users bob, carol
/// and dave with desks, recording into a fresh directory, on 200 RTP ports of this
/// binary's block.
async fn rig(name: &str) -> anyhow::Result<Rig> {
    rig_with(name, "", "").await
}

/// [`rig`] with more `[sip]` keys and more configuration.
async fn rig_with(name: &str, sip: &str, more: &str) -> anyhow::Result<Rig> {
    let hash = hotline_cti::hash_password("desk-pw")?;
    let recordings = std::env::temp_dir().join(format!("hotline-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&recordings)?;
    let mut desks = String::new();
    for u in ["bob", "carol", "dave"] {
        desks.push_str(&format!(
            "[[cti.user]]\nname = \"{u}\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"{u}\"\n"
        ));
    }
    let cfg = format!(
        "[[users]]\nname = \"dave\"\npassword = \"dave-pw\"\n\
         {}recordings = \"{}\"\n\
         [[numbers]]\nnumber = \"4100\"\nqueue = \"support\"\n\
         [[numbers]]\nnumber = \"4200\"\nqueue = \"sales\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nwrapup_secs = 60\n\
         [[acd.queue]]\nname = \"sales\"\nwrapup_secs = 60\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = {{ support = 0 }}\n\
         [[acd.agent]]\nid = \"dave\"\nqueues = {{ sales = 0 }}\n\
         [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n{desks}{more}",
        media(200),
        recordings.display()
    );
    let mut h = hotline_sip_tests::start_hotline_with_sip(sip, &cfg).await?;
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
        recordings,
    })
}

impl Rig {
    async fn desk(&self, user: &str, ready: bool) -> anyhow::Result<Desk> {
        let mut d = Desk::connect(self.cti, Some(ORIGIN)).await?;
        d.login(user, "desk-pw").await;
        if ready {
            d.ok(json!({"type": "agent.ready"})).await;
        }
        Ok(d)
    }

    fn cdrs(&self) -> anyhow::Result<&hotline_cdr::MemoryCdrs> {
        self.h
            .cdr
            .as_ref()
            .and_then(|c| c.memory.as_ref())
            .context("memory CDRs")
    }

    /// After `calls` calls have ended: nothing is left (call tasks, RTP ports).
    async fn done(mut self, calls: usize) -> anyhow::Result<()> {
        for _ in 0..calls {
            tokio::time::timeout(WAIT, self.ended.recv())
                .await
                .context("a call's end within 10 s")?
                .context("switch stopped")?;
        }
        let sw = self.h.switch.as_ref().context("switch")?;
        assert_eq!(sw.stats().active_calls(), 0, "call tasks left");
        assert_eq!(sw.ports().in_use(), 0, "RTP ports leaked");
        self.h.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.recordings);
        Ok(())
    }
}

/// [`rig_with`] and a trunk: outside numbers go to the raw UA `trunk` (sending `mark`)
/// as `[sip] static_route`, and agents may dial German numbers ([`DIAL_RULES`]).
async fn trunk_rig(name: &str, mark: u8, more: &str) -> anyhow::Result<(Rig, RawPhone)> {
    let mut trunk = RawPhone::trunk(SocketAddr::from(([127, 0, 0, 1], 0)), mark).await?;
    let route = format!("static_route = \"sip:127.0.0.1:{}\"\n", trunk.port()?);
    let rig = rig_with(name, &route, &format!("{DIAL_RULES}{more}")).await?;
    trunk.set_server(rig.server);
    Ok((rig, trunk))
}

/// A call from the caller to `number`, answered by the agent whose desk is `desk`:
/// returns the call id once the desk saw `call.answered` and the agent's echo arrives.
async fn answered_call(
    rig: &Rig,
    desk: &mut Desk,
    number: &str,
) -> anyhow::Result<(Caller, String)> {
    let mut caller = Caller::call(rig.server, number).await?;
    let (_, offered) = desk.event("call.offered").await;
    let call_id = offered["data"]["call_id"]
        .as_str()
        .context("call_id")?
        .to_string();
    assert_eq!(call_id, caller.call_id);
    let (_, answered) = desk.event("call.answered").await;
    assert_eq!(answered["data"]["call_id"], call_id.as_str());
    caller.until("the agent's echo", |h| h.echo >= 25).await?;
    Ok((caller, call_id))
}

/// bob consults `to` on `call_id` (the caller held) and hangs up his phone while `to`
/// still rings: the transfer goes on without him. Returns `call.transferred`.
async fn consult_and_hang_up(
    bob: &mut Desk,
    bob_phone: &mut RawPhone,
    call_id: &str,
    to: &str,
) -> anyhow::Result<Value> {
    bob.ok(json!({"type": "call.transfer", "call_id": call_id, "to": to, "attended": true}))
        .await;
    bob.event("call.held").await;
    bob_phone.hangup().await?;
    Ok(bob.event("call.transferred").await.1)
}

fn cmd(kind: &str, call_id: &str) -> Value {
    json!({"type": kind, "call_id": call_id})
}

/// Hold from the desk: the caller hears music and the agent stops hearing the caller;
/// `call.held` reaches the desk; resume brings the conversation back with `call.resumed`;
/// the hold time is in the CDR. Holding twice, resuming an unheld call, another agent's
/// hold and an unknown call are refused with codes and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_holds_and_resumes_the_caller() -> anyhow::Result<()> {
    let rig = rig("deskhold").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut carol = rig.desk("carol", false).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;

    bob.fails(cmd("call.resume", &call_id), "invalid_state")
        .await;
    carol.fails(cmd("call.hold", &call_id), "forbidden").await;
    bob.fails(cmd("call.hold", "no-such-call"), "forbidden")
        .await;
    // None of these held the call: the agent still hears the caller.
    let before = caller.heard().echo;
    caller
        .until("echo after refused commands", |h| h.echo >= before + 10)
        .await?;

    bob.ok(cmd("call.hold", &call_id)).await;
    let (_, held) = bob.event("call.held").await;
    assert_eq!(held["data"]["call_id"], call_id.as_str());
    assert_eq!(held["data"]["agent"], "bob");
    bob.fails(cmd("call.hold", &call_id), "invalid_state").await;
    let at_hold = caller.heard();
    let on_hold = caller
        .until("music while held", |h| h.other >= at_hold.other + 50)
        .await?;
    // Packets the agent echoed before the hold may still be in flight: a handful.
    assert!(
        on_hold.echo <= at_hold.echo + 5,
        "the agent heard the caller while held: {at_hold:?} → {on_hold:?}"
    );

    bob.ok(cmd("call.resume", &call_id)).await;
    let (_, resumed) = bob.event("call.resumed").await;
    assert_eq!(resumed["data"]["call_id"], call_id.as_str());
    let back = caller.heard();
    caller
        .until("the agent hears the caller again", |h| {
            h.echo >= back.echo + 25
        })
        .await?;

    bob.ok(cmd("call.hangup", &call_id)).await;
    caller.bye().await?;
    bob_phone.expect_success().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.call_id, call_id);
    assert!(
        (900..=8000).contains(&cdr.hold_ms),
        "about a second on hold (50 packets of music): {cdr:?}"
    );
    bob.close().await;
    carol.close().await;
    rig.done(1).await
}

/// Hold from the agent's phone (re-INVITE sendonly, then sendrecv) is reported to the
/// desk as `call.held` and `call.resumed` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_hold_is_published_to_the_desk() -> anyhow::Result<()> {
    let rig = rig("phonehold").await?;
    let mut bob = rig.desk("bob", true).await?;
    let bob_phone = phone(rig.server, "bob", "uas_hold_resume.xml").await?;
    let (caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;
    let (_, held) = bob.event("call.held").await;
    assert_eq!(held["data"]["call_id"], call_id.as_str());
    let (_, resumed) = bob.event("call.resumed").await;
    assert_eq!(resumed["data"]["call_id"], call_id.as_str());
    bob.ok(cmd("call.hangup", &call_id)).await;
    caller.bye().await?;
    bob_phone.expect_success().await?;
    bob.close().await;
    rig.done(1).await
}

/// Waits for an `agent.state` event with `state` and returns its data.
async fn state(desk: &mut Desk, want: &str) -> Value {
    loop {
        let (_, ev) = desk.event("agent.state").await;
        if ev["data"]["state"] == want {
            return ev["data"].clone();
        }
    }
}

/// Blind transfers from the desk: bob sends the caller to the sales queue, where dave's
/// desk is offered the call and his phone answers; dave sends it on to carol (a user,
/// rung as an extension). Each transferring agent's phone gets BYE, their desk
/// `call.transferred` and wrap-up, and loses control of the call; the caller stays
/// connected throughout and ends up talking to carol. Bad targets are refused with
/// codes while the call stays as it was. The CDR counts two transfers, agent carol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_transfers_blind_to_a_queue_and_an_agent() -> anyhow::Result<()> {
    let rig = rig("desktransfer").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut dave = rig.desk("dave", true).await?;
    // Not ready: the ACD offers her nothing, but a transfer to her phone reaches her desk.
    let mut carol = rig.desk("carol", false).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    let dave_phone = phone(rig.server, "dave", "uas_call.xml").await?;
    let carol_phone = phone(rig.server, "carol", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;

    let transfer = |to: &str| json!({"type": "call.transfer", "call_id": call_id, "to": to});
    bob.fails(transfer("nobody"), "not_found").await;
    bob.fails(transfer("queue:carol"), "not_found").await;
    bob.fails(transfer("bob"), "invalid_state").await;
    // alice is a user but has no phone registered.
    bob.fails(transfer("alice"), "invalid_state").await;
    dave.fails(transfer("sales"), "forbidden").await;
    let before = caller.heard().echo;
    caller
        .until("bob still talking after refused transfers", |h| {
            h.echo >= before + 10
        })
        .await?;

    bob.ok(transfer("sales")).await;
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["call_id"], call_id.as_str());
    assert_eq!(t["data"]["to"], "queue:sales");
    bob_phone.expect_success().await?;
    let wrap = state(&mut bob, "wrap_up").await;
    assert_eq!(wrap["call_id"], call_id.as_str());
    bob.fails(cmd("call.hold", &call_id), "forbidden").await;
    let (_, offered) = dave.event("call.offered").await;
    assert_eq!(offered["data"]["call_id"], call_id.as_str());
    assert_eq!(offered["data"]["queue"], "sales");
    dave.event("call.answered").await;
    let at = caller.heard().echo;
    caller
        .until("dave hears the caller", |h| h.echo >= at + 25)
        .await?;

    dave.ok(json!({"type": "call.transfer", "call_id": call_id, "to": "agent:carol"}))
        .await;
    let (_, t) = dave.event("call.transferred").await;
    assert_eq!(t["data"]["to"], "extension:carol");
    dave_phone.expect_success().await?;
    let at = caller.heard().echo;
    caller
        .until("carol hears the caller", |h| h.echo >= at + 25)
        .await?;
    // carol's desk shows the call she took: offered (with the caller) and answered, and
    // the call is hers to control and to end.
    let (_, offered) = carol.event("call.offered").await;
    assert_eq!(offered["data"]["call_id"], call_id.as_str(), "{offered}");
    assert_eq!(offered["data"]["agent"], "carol", "{offered}");
    let (_, answered) = carol.event("call.answered").await;
    assert_eq!(answered["data"]["call_id"], call_id.as_str(), "{answered}");
    carol.ok(cmd("call.hold", &call_id)).await;
    carol.ok(cmd("call.resume", &call_id)).await;
    dave.fails(cmd("call.hold", &call_id), "forbidden").await;

    caller.hangup().await?;
    carol_phone.expect_success().await?;
    let (_, ended) = carol.event("call.ended").await;
    assert_eq!(ended["data"]["call_id"], call_id.as_str(), "{ended}");
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.call_id, call_id);
    assert_eq!(cdr.transfers, 2, "{cdr:?}");
    assert_eq!(cdr.agent.as_deref(), Some("carol"), "{cdr:?}");
    // One TRANSFER queue-log line per transfer: who sent the call where.
    let lines: Vec<(Option<String>, String)> = transfer_lines(&rig)?
        .into_iter()
        .map(|e| {
            (
                e.agent,
                e.data.split(',').next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (Some("bob".to_string()), "queue:sales".to_string()),
            (Some("dave".to_string()), "extension:carol".to_string()),
        ]
    );
    bob.close().await;
    dave.close().await;
    carol.close().await;
    rig.done(1).await
}

/// DTMF from the desk reaches the caller as RFC 4733 events, in order; malformed keys
/// are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_sends_dtmf_to_the_caller() -> anyhow::Result<()> {
    let rig = rig("deskdtmf").await?;
    let mut bob = rig.desk("bob", true).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;
    let dtmf = |d: &str| json!({"type": "call.dtmf", "call_id": call_id, "digits": d});
    bob.fails(dtmf("12x"), "bad_request").await;
    bob.fails(dtmf(""), "bad_request").await;
    bob.ok(dtmf("12#")).await;
    bob.ok(dtmf("9")).await;
    let heard = caller.until("four keys", |h| h.keys.len() >= 4).await?;
    assert_eq!(
        heard.keys, "12#9",
        "keys in order, none from the refused requests"
    );
    bob.ok(cmd("call.hangup", &call_id)).await;
    caller.bye().await?;
    bob_phone.expect_success().await?;
    bob.close().await;
    rig.done(1).await
}

/// Pausing the recording (card numbers) writes silence on both channels for as long as
/// it lasts, then the conversation again: the file keeps the call's timeline, and the
/// CDR keeps its path. Pausing twice or resuming an unpaused recording is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_pauses_and_resumes_the_recording() -> anyhow::Result<()> {
    let rig = rig("deskrec").await?;
    let mut bob = rig.desk("bob", true).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;
    bob.fails(cmd("recording.resume", &call_id), "invalid_state")
        .await;
    let at = caller.heard().echo;
    caller
        .until("talk before the pause", |h| h.echo >= at + 25)
        .await?;
    bob.ok(cmd("recording.pause", &call_id)).await;
    bob.fails(cmd("recording.pause", &call_id), "invalid_state")
        .await;
    let at = caller.heard().echo;
    // The conversation goes on while paused (about 1.2 s of it).
    caller
        .until("talk while paused", |h| h.echo >= at + 60)
        .await?;
    bob.ok(cmd("recording.resume", &call_id)).await;
    let at = caller.heard().echo;
    caller
        .until("talk after the pause", |h| h.echo >= at + 25)
        .await?;
    bob.ok(cmd("call.hangup", &call_id)).await;
    caller.bye().await?;
    bob_phone.expect_success().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    let path = cdr
        .recording
        .as_deref()
        .context("recording path in the CDR")?;
    let mut wav = hound::WavReader::open(path)?;
    let samples: Vec<i16> = wav.samples::<i16>().collect::<Result<_, _>>()?;
    let frames: Vec<(i16, i16)> = samples.chunks(2).map(|c| (c[0], c[1])).collect();
    // The longest stretch where both channels are silent is the pause.
    let (mut run, mut longest, mut end) = (0usize, 0usize, 0usize);
    for (i, &(l, r)) in frames.iter().enumerate() {
        run = if l == 0 && r == 0 { run + 1 } else { 0 };
        if run > longest {
            (longest, end) = (run, i);
        }
    }
    let start = end + 1 - longest;
    assert!(
        longest >= 8000,
        "at least a second of silence while paused: {longest} frames"
    );
    let loud = |f: &[(i16, i16)]| f.iter().filter(|(l, r)| *l != 0 && *r != 0).count();
    assert!(
        loud(&frames[..start]) >= 2000,
        "conversation before the pause"
    );
    assert!(loud(&frames[end..]) >= 2000, "conversation after the pause");
    bob.close().await;
    rig.done(1).await
}

/// Attended transfer from the desk: bob consults carol while the caller hears music
/// (and bob no longer hears the caller), cancels (carol gets BYE, bob talks to the caller
/// again), then consults dave and completes: bob's phone gets BYE and his desk
/// `call.transferred`, the caller talks to dave. Completing with no consultation, and an
/// attended transfer to a queue, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_transfers_attended_with_cancel_and_complete() -> anyhow::Result<()> {
    let rig = rig("deskattended").await?;
    let mut bob = rig.desk("bob", true).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    let carol_phone = phone(rig.server, "carol", "uas_call.xml").await?;
    let dave_phone = phone(rig.server, "dave", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;
    let consult =
        |to: &str| json!({"type": "call.transfer", "call_id": call_id, "to": to, "attended": true});
    bob.fails(cmd("call.transfer.complete", &call_id), "invalid_state")
        .await;
    bob.fails(cmd("call.transfer.cancel", &call_id), "invalid_state")
        .await;
    bob.fails(consult("sales"), "invalid_state").await;

    bob.ok(consult("carol")).await;
    bob.event("call.held").await;
    let at = caller.heard();
    let during = caller
        .until("music during the consultation", |h| {
            h.other >= at.other + 50
        })
        .await?;
    assert!(
        during.echo <= at.echo + 5,
        "bob heard the caller while consulting: {at:?} → {during:?}"
    );
    bob.fails(consult("dave"), "invalid_state").await;
    bob.ok(cmd("call.transfer.cancel", &call_id)).await;
    bob.event("call.resumed").await;
    carol_phone.expect_success().await?;
    let at = caller.heard().echo;
    caller
        .until("bob talks to the caller again", |h| h.echo >= at + 25)
        .await?;

    bob.ok(consult("dave")).await;
    // dave's phone answers at once; completing before that is refused, after it works.
    let done = loop {
        let r = bob.request(cmd("call.transfer.complete", &call_id)).await;
        if r["type"] == "reply" {
            break r;
        }
        assert_eq!(r["code"], "invalid_state", "{r}");
        let before = caller.heard().other;
        caller.until("more music", |h| h.other > before).await?;
    };
    assert_eq!(done["data"]["call_id"], call_id.as_str());
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["to"], "extension:dave");
    bob_phone.expect_success().await?;
    let at = caller.heard().echo;
    caller
        .until("dave hears the caller", |h| h.echo >= at + 25)
        .await?;
    caller.hangup().await?;
    dave_phone.expect_success().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.transfers, 1, "{cdr:?}");
    assert_eq!(cdr.agent.as_deref(), Some("dave"), "{cdr:?}");
    bob.close().await;
    rig.done(1).await
}

/// A desk that stops reading is disconnected rather than buffered without bound: it
/// sends bad frames (each answered by an error frame of a few hundred bytes) and reads
/// nothing until it has sent them all. Then it gets fewer answers than it asked for and
/// the server's end of the socket is closed. A new socket logs in as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_that_stops_reading_is_disconnected() -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let rig = rig("slowdesk").await?;
    let mut req = format!("ws://{}/cti", rig.cti).into_client_request()?;
    req.headers_mut().insert("Origin", ORIGIN.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    const SENT: usize = 50_000;
    let bad = json!({"v": 1, "type": "no.such.request"}).to_string();
    for _ in 0..SENT {
        if ws.send(Message::text(bad.clone())).await.is_err() {
            break; // already disconnected
        }
    }
    let (mut answers, mut closed) = (0usize, false);
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => answers += 1,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                closed = true;
                break;
            }
            Ok(Some(Ok(_))) => {}
            Err(_) => break, // still open, nothing more to read
        }
    }
    assert!(closed, "the socket stayed open ({answers} answers read)");
    assert!(
        answers < SENT,
        "every answer was buffered for the desk: {answers}"
    );
    let mut d = rig.desk("bob", false).await?;
    d.ok(json!({"type": "agent.ready"})).await;
    d.close().await;
    rig.done(0).await
}

/// Click-to-dial: bob's desk dials a customer's number; Hotline calls bob's phone first,
/// then the number through the static route (a SIPp trunk), bridges and records them; the
/// desk sees `call.answered`, hangs up, gets `call.ended` with the trail entry: outbound,
/// bob, the customer the number belongs to, the recording. Bad requests and a customer
/// outside bob's reach are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_dials_a_customer() -> anyhow::Result<()> {
    let db = std::env::temp_dir().join(format!("hotline_dial_{}.sqlite", std::process::id()));
    let loc = db.display().to_string();
    let store = hotline_crm::Store::open(&loc, &hotline_crm::StoreConfig::default()).await?;
    let weber = store
        .create_customer(
            &hotline_crm::CustomerData {
                surname: "Weber".into(),
                ..hotline_crm::CustomerData::default()
            },
            &[CALLER],
        )
        .await?;
    let other = store
        .create_customer(
            &hotline_crm::CustomerData {
                surname: "Roth".into(),
                ..hotline_crm::CustomerData::default()
            },
            &["+49307654321"],
        )
        .await?;
    let trunk_port = free_port();
    let trunk = SippBuilder::new("desk-dial-trunk", "uas_call.xml", Proto::Udp, trunk_port)
        .args(["-rtp_echo"])
        .set("-timeout", "40s")
        .spawn_bound()
        .await?;
    let rig = rig_with(
        "deskdial",
        &format!("static_route = \"sip:127.0.0.1:{trunk_port}\"\n"),
        &format!("{DIAL_RULES}[crm]\n[store]\nurl = \"{loc}\"\n"),
    )
    .await?;
    let mut bob = rig.desk("bob", false).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    // The toll-fraud guard: a satellite number is not in the agents' dial rules. Refused
    // before any phone rings (bob's phone and the trunk see one call only), and audited.
    bob.fails(json!({"type": "call.dial", "number": PREMIUM}), "forbidden")
        .await;
    refusal_audited(&store, "bob", "dial", PREMIUM).await?;
    bob.fails(json!({"type": "call.dial"}), "bad_request").await;
    bob.fails(
        json!({"type": "call.dial", "number": "12 34"}),
        "bad_request",
    )
    .await;
    bob.fails(
        json!({"type": "call.dial", "customer_id": other}),
        "forbidden",
    )
    .await;

    let placed = bob.ok(json!({"type": "call.dial", "number": CALLER})).await;
    let call_id = placed["call_id"].as_str().context("call_id")?.to_string();
    let (_, answered) = bob.event("call.answered").await;
    assert_eq!(answered["data"]["call_id"], call_id.as_str());
    assert_eq!(answered["data"]["agent"], "bob");
    bob.ok(cmd("call.hangup", &call_id)).await;
    let (_, ended) = bob.event("call.ended").await;
    assert_eq!(ended["data"]["call_id"], call_id.as_str());
    let interaction = ended["data"]["interaction_id"]
        .as_i64()
        .context("trail entry")?;
    bob_phone.expect_success().await?;
    trunk.expect_success().await?;
    let trail = store
        .interaction_by_call_id(&call_id)
        .await?
        .context("interaction in the trail")?;
    assert_eq!(trail.id, interaction);
    assert_eq!(trail.customer_id, weber);
    assert_eq!(trail.agent.as_deref(), Some("bob"));
    assert_eq!(trail.direction, hotline_crm::Direction::Outbound);
    let recording = trail
        .recording_path
        .as_deref()
        .context("recording in the trail")?;
    assert!(std::path::Path::new(recording).exists(), "{recording}");
    // The one [store] database holds the CDR next to the CRM (committed before the call
    // reports its end, which `call.ended` followed).
    let cdrs = hotline_cdr::CdrStore::open(&loc, &hotline_cdr::StoreOptions::default()).await?;
    let calls = cdrs.calls(0, i64::MAX).await?;
    cdrs.close().await;
    let cdr = calls.first().context("CDR in the [store] database")?;
    assert_eq!(
        (cdr.direction.as_str(), cdr.route.as_str()),
        ("outbound", "dial")
    );
    assert_eq!(cdr.agent.as_deref(), Some("bob"));
    assert_eq!(cdr.recording.as_deref(), Some(recording));
    assert!(cdr.answered_at.is_some(), "{cdr:?}");
    bob.close().await;
    rig.done(1).await?;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{loc}{suffix}"));
    }
    Ok(())
}

/// A blind transfer from the agent's phone (REFER) is published to the desk as
/// `call.transferred` too, and the desk loses control of the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_refer_is_published_to_the_desk() -> anyhow::Result<()> {
    let rig = rig("phonerefer").await?;
    let mut bob = rig.desk("bob", true).await?;
    let port = free_port();
    SippBuilder::new("desk-bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(rig.server))?
        .expect_success()
        .await?;
    let bob_phone = SippBuilder::new("desk-bob-refer", "uas_refer_blind.xml", Proto::Udp, port)
        .args(["-s", "bob", "-rtp_echo", "-key", "target", "carol"])
        .spawn_bound()
        .await?;
    let carol_phone = phone(rig.server, "carol", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["call_id"], call_id.as_str());
    assert_eq!(t["data"]["to"], "extension:carol");
    bob_phone.expect_success().await?;
    bob.fails(cmd("call.hold", &call_id), "forbidden").await;
    let at = caller.heard().echo;
    caller
        .until("carol hears the caller", |h| h.echo >= at + 25)
        .await?;
    caller.hangup().await?;
    carol_phone.expect_success().await?;
    bob.close().await;
    rig.done(1).await
}

/// Conference from the desk: bob adds carol; caller, bob and carol each send a constant
/// and each hears exactly the G.711 sum of the other two. Bob hangs up: carol stays with
/// the caller (relayed, no mix), and bob's desk gets `call.transferred`. Hold and a
/// second conference are refused while the three talk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_conferences_a_third_party() -> anyhow::Result<()> {
    use hotline_media::g711::Law;
    const BOB: u8 = 0x33;
    const CAROL: u8 = 0x22;
    let sum = |a: u8, b: u8| {
        let u = Law::Ulaw;
        u.encode((i32::from(u.decode(a)) + i32::from(u.decode(b))).clamp(-32768, 32767) as i16)
    };
    let rig = rig("deskconf").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut carol_phone = RawPhone::register(rig.server, "carol", CAROL).await?;
    let mut caller = Caller::call(rig.server, "4100").await?;
    let (_, offered) = bob.event("call.offered").await;
    let call_id = offered["data"]["call_id"]
        .as_str()
        .context("call_id")?
        .to_string();
    bob_phone.answer().await?;
    caller
        .until("bob's audio", |h| {
            h.uniform.get(&BOB).copied().unwrap_or(0) >= 25
        })
        .await?;

    let conf = |to: &str| json!({"type": "call.conference", "call_id": call_id, "to": to});
    bob.fails(conf("nobody"), "not_found").await;
    bob.fails(conf("sales"), "invalid_state").await;
    bob.ok(conf("carol")).await;
    carol_phone.answer().await?;
    let (to_caller, to_bob, to_carol) = (sum(BOB, CAROL), sum(MARK, CAROL), sum(MARK, BOB));
    caller
        .until("bob + carol", |h| h.of(to_caller) >= 25)
        .await?;
    bob_phone
        .until("caller + carol", |h| h.of(to_bob) >= 25)
        .await?;
    carol_phone
        .until("caller + bob", |h| h.of(to_carol) >= 25)
        .await?;
    bob.fails(cmd("call.hold", &call_id), "invalid_state").await;
    bob.fails(conf("dave"), "invalid_state").await;

    bob_phone.hangup().await?;
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["to"], "extension:carol");
    let before = caller.heard().of(CAROL);
    caller
        .until("carol alone, relayed", |h| h.of(CAROL) >= before + 25)
        .await?;
    carol_phone
        .until("the caller alone", |h| h.of(MARK) >= 25)
        .await?;
    caller.hangup().await?;
    carol_phone.bye().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.agent.as_deref(), Some("carol"), "{cdr:?}");
    bob.close().await;
    rig.done(1).await
}

/// Desk transfers to outside numbers go through the trunk (`[sip] static_route`) when the
/// agent role's `[[dial_rules]]` allow the number: a blind transfer of the caller to a
/// German number reaches the trunk, bob's phone gets BYE and his desk
/// `call.transferred` (his one end event: no `call.ended` later), and the caller and the
/// trunk hear each other (packet counts of each side's marked audio). Bob's part is in
/// the trail at once: his disposition is saved while the caller still talks outside. A satellite number is refused for blind and attended
/// transfers and for a conference with `forbidden`, each refusal is in the audit log, and
/// the call goes on as it was (bob still hears the caller, the trunk was never called).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_transfers_to_outside_numbers_within_the_dial_rules() -> anyhow::Result<()> {
    const TRUNK: u8 = 0x44;
    const ALLOWED: &str = "+4989123456";
    let db = std::env::temp_dir().join(format!("hotline_outside_{}.sqlite", std::process::id()));
    let loc = db.display().to_string();
    let store = hotline_crm::Store::open(&loc, &hotline_crm::StoreConfig::default()).await?;
    let (mut rig, mut trunk) = trunk_rig(
        "deskoutside",
        TRUNK,
        &format!("[crm]\n[store]\nurl = \"{loc}\"\n"),
    )
    .await?;
    let mut bob = rig.desk("bob", true).await?;
    let bob_phone = phone(rig.server, "bob", "uas_call.xml").await?;
    let (mut caller, call_id) = answered_call(&rig, &mut bob, "4100").await?;

    let transfer = |to: &str, attended: bool| json!({"type": "call.transfer", "call_id": call_id, "to": to, "attended": attended});
    bob.fails(transfer(PREMIUM, false), "forbidden").await;
    refusal_audited(&store, "bob", "transfer", PREMIUM).await?;
    bob.fails(transfer(&format!("number:{PREMIUM}"), true), "forbidden")
        .await;
    bob.fails(
        json!({"type": "call.conference", "call_id": call_id, "to": PREMIUM}),
        "forbidden",
    )
    .await;
    refusal_audited(&store, "bob", "conference", PREMIUM).await?;
    let before = caller.heard().echo;
    caller
        .until("bob still talking after refused transfers", |h| {
            h.echo >= before + 25
        })
        .await?;

    bob.ok(transfer(ALLOWED, false)).await;
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["call_id"], call_id.as_str());
    assert_eq!(t["data"]["to"], format!("number:{ALLOWED}"));
    bob_phone.expect_success().await?;
    // The trunk's first INVITE is the allowed number's: nothing was sent for the refused.
    let invite = trunk.answer().await?;
    assert!(
        invite.starts_with(&format!("INVITE sip:{ALLOWED}@")),
        "{invite}"
    );
    caller
        .until("the outside party", |h| h.of(TRUNK) >= 25)
        .await?;
    trunk.until("the caller", |h| h.of(MARK) >= 25).await?;
    // Bob's part is over: his disposition is saved while the caller talks on outside.
    bob.ok(json!({"type": "call.disposition", "call_id": call_id, "code": "done", "notes": "to the branch"}))
        .await;
    caller.hangup().await?;
    trunk.bye().await?;
    tokio::time::timeout(WAIT, rig.ended.recv())
        .await
        .context("the call's end")?
        .context("switch stopped")?;
    // One end event for bob: a state change of his after the call's end reaches his
    // desk after anything the call's end sent it, and no `call.ended` came before.
    bob.ok(json!({"type": "agent.not_ready", "reason": "break"}))
        .await;
    loop {
        let (_, s) = bob.event("agent.state").await;
        if s["data"]["state"] == "not_ready" || s["data"]["pending_not_ready"] == "break" {
            break;
        }
    }
    assert!(!bob.has_arrived("call.ended"), "a second end event for bob");
    let last = store
        .interaction_by_call_id(&call_id)
        .await?
        .context("the call's trail")?;
    let trail = store.trail(last.customer_id, 10).await?;
    let mine: Vec<_> = trail
        .iter()
        .filter(|i| i.call_id.as_deref() == Some(call_id.as_str()))
        .collect();
    assert_eq!(mine.len(), 2, "bob's part and the outside part: {trail:?}");
    let bobs = mine
        .iter()
        .find(|i| i.agent.as_deref() == Some("bob"))
        .context("bob's entry")?;
    assert_eq!(bobs.disposition.as_deref(), Some("done"), "{bobs:?}");
    assert_eq!(bobs.notes.as_deref(), Some("to the branch"), "{bobs:?}");
    bob.close().await;
    rig.done(0).await?;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{loc}{suffix}"));
    }
    Ok(())
}

/// A call to the support queue (4100) answered by `phone`, a raw phone whose desk is
/// `desk`: the caller and the call id once the caller hears the phone's `mark`.
async fn raw_answered_call(
    rig: &Rig,
    desk: &mut Desk,
    phone: &mut RawPhone,
    mark: u8,
) -> anyhow::Result<(Caller, String)> {
    let mut caller = Caller::call(rig.server, "4100").await?;
    let (_, offered) = desk.event("call.offered").await;
    let call_id = offered["data"]["call_id"]
        .as_str()
        .context("call_id")?
        .to_string();
    phone.answer().await?;
    caller
        .until("the agent's audio", |h| {
            h.uniform.get(&mark).copied().unwrap_or(0) >= 25
        })
        .await?;
    Ok((caller, call_id))
}

/// The `TRANSFER` lines of the queue log so far.
fn transfer_lines(rig: &Rig) -> anyhow::Result<Vec<hotline_cdr::QueueEvent>> {
    Ok(rig
        .cdrs()?
        .events()
        .into_iter()
        .filter(|e| e.event == hotline_cdr::QueueEventKind::Transfer)
        .collect())
}

/// Bob consults dave from the desk (dave answers), then hangs up his phone instead of
/// completing: the transfer completes, as Asterisk's attended transfer on hangup does.
/// Bob's desk gets `call.transferred` to dave, the caller and dave hear each other (each
/// side's constant payload counted at the other), the queue log has bob's `TRANSFER`
/// line, and the CDR names dave with one transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hanging_up_while_consulting_completes_the_transfer() -> anyhow::Result<()> {
    const BOB: u8 = 0x33;
    const DAVE: u8 = 0x55;
    let rig = rig("consulthangup").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut dave_phone = RawPhone::register(rig.server, "dave", DAVE).await?;
    let (mut caller, call_id) = raw_answered_call(&rig, &mut bob, &mut bob_phone, BOB).await?;

    bob.ok(json!({"type": "call.transfer", "call_id": call_id, "to": "dave", "attended": true}))
        .await;
    bob.event("call.held").await;
    dave_phone.answer().await?;
    bob_phone
        .until("dave during the consultation", |h| h.of(DAVE) >= 25)
        .await?;
    assert!(transfer_lines(&rig)?.is_empty(), "no transfer yet");

    bob_phone.hangup().await?;
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["call_id"], call_id.as_str());
    assert_eq!(t["data"]["to"], "extension:dave");
    let at = caller.heard().of(DAVE);
    caller
        .until("dave, after bob hung up", |h| h.of(DAVE) >= at + 25)
        .await?;
    dave_phone.until("the caller", |h| h.of(MARK) >= 25).await?;
    caller.hangup().await?;
    dave_phone.bye().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.agent.as_deref(), Some("dave"), "{cdr:?}");
    assert_eq!(cdr.transfers, 1, "{cdr:?}");
    let lines = transfer_lines(&rig)?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].agent.as_deref(), Some("bob"));
    assert_eq!(lines[0].call_id, call_id);
    assert!(lines[0].data.starts_with("extension:dave,"), "{lines:?}");
    bob.close().await;
    rig.done(1).await
}

/// Every transfer ends the transferring agent's part of the call in the trail at once:
/// bob transfers blind to dave and saves his disposition while dave still rings; dave
/// answers and talks with the caller. The customer's trail has bob's entry with his
/// disposition and dave's entry (the last, named by `call.ended` on dave's desk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transferring_agent_saves_the_disposition_of_their_part() -> anyhow::Result<()> {
    const BOB: u8 = 0x33;
    const DAVE: u8 = 0x55;
    let db = std::env::temp_dir().join(format!("hotline_parts_{}.sqlite", std::process::id()));
    let loc = db.display().to_string();
    let store = hotline_crm::Store::open(&loc, &hotline_crm::StoreConfig::default()).await?;
    let mut rig = rig_with(
        "deskparts",
        "",
        &format!("[crm]\n[store]\nurl = \"{loc}\"\n"),
    )
    .await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut dave = rig.desk("dave", false).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut dave_phone = RawPhone::register(rig.server, "dave", DAVE).await?;
    let (mut caller, call_id) = raw_answered_call(&rig, &mut bob, &mut bob_phone, BOB).await?;

    bob.ok(json!({"type": "call.transfer", "call_id": call_id, "to": "agent:dave"}))
        .await;
    bob.event("call.transferred").await;
    bob_phone.bye().await?;
    bob.ok(json!({"type": "call.disposition", "call_id": call_id, "code": "done", "notes": "for dave"}))
        .await;
    dave_phone.answer().await?;
    caller.until("dave", |h| h.of(DAVE) >= 25).await?;
    caller.hangup().await?;
    dave_phone.bye().await?;
    let (_, ended) = dave.event("call.ended").await;
    let last = ended["data"]["interaction_id"]
        .as_i64()
        .context("dave's entry")?;
    tokio::time::timeout(WAIT, rig.ended.recv())
        .await
        .context("the call's end")?
        .context("switch stopped")?;
    let entry = store
        .interaction_by_call_id(&call_id)
        .await?
        .context("the call's trail")?;
    assert_eq!((entry.id, entry.agent.as_deref()), (last, Some("dave")));
    let trail = store.trail(entry.customer_id, 10).await?;
    let bobs = trail
        .iter()
        .find(|i| {
            i.call_id.as_deref() == Some(call_id.as_str()) && i.agent.as_deref() == Some("bob")
        })
        .context("bob's entry")?;
    assert_eq!(bobs.disposition.as_deref(), Some("done"), "{bobs:?}");
    assert_eq!(bobs.notes.as_deref(), Some("for dave"), "{bobs:?}");
    assert!(
        bobs.ended_at <= Some(entry.started_at),
        "{bobs:?} then {entry:?}"
    );
    bob.close().await;
    dave.close().await;
    rig.done(0).await?;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{loc}{suffix}"));
    }
    Ok(())
}

/// Bob consults dave from the desk and hangs up while dave's phone still rings (the
/// caller on music); dave then refuses (486). The caller is not dropped: back at the head
/// of the support queue, offered to carol (ready since), who answers and talks with the
/// caller. The queue log says so: bob's `TRANSFER` to dave, dave's `RING_NO_ANSWER`,
/// `ENTER_QUEUE` (`transfer_back`), carol's `CONNECT` and `COMPLETE_*`; the CDR names
/// carol, with dave and the queue again in its route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transfer_target_sends_the_caller_back_to_the_queue() -> anyhow::Result<()> {
    use hotline_cdr::QueueEventKind as K;
    const BOB: u8 = 0x33;
    const DAVE: u8 = 0x55;
    const CAROL: u8 = 0x22;
    let rig = rig("consultrefused").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let dave_phone = RawPhone::register(rig.server, "dave", DAVE).await?;
    let mut carol_phone = RawPhone::register(rig.server, "carol", CAROL).await?;
    let (mut caller, call_id) = raw_answered_call(&rig, &mut bob, &mut bob_phone, BOB).await?;
    let mut carol = rig.desk("carol", true).await?;

    let t = consult_and_hang_up(&mut bob, &mut bob_phone, &call_id, "dave").await?;
    assert_eq!(t["data"]["to"], "extension:dave");
    let at = caller.heard().other;
    caller
        .until("music while dave rings", |h| h.other >= at + 25)
        .await?;
    dave_phone.decline(486).await?;
    let (_, offered) = carol.event("call.offered").await;
    assert_eq!(offered["data"]["call_id"], call_id.as_str());
    assert_eq!(offered["data"]["queue"], "support");
    carol_phone.answer().await?;
    caller.until("carol", |h| h.of(CAROL) >= 25).await?;
    carol_phone
        .until("the caller", |h| h.of(MARK) >= 25)
        .await?;
    caller.hangup().await?;
    carol_phone.bye().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.agent.as_deref(), Some("carol"), "{cdr:?}");
    assert_eq!(
        cdr.route, "queue:support>extension:dave>queue:support",
        "{cdr:?}"
    );
    let lines: Vec<(K, Option<String>, String)> = rig
        .cdrs()?
        .events()
        .into_iter()
        .filter(|e| e.call_id == call_id)
        .map(|e| (e.event, e.agent, e.data))
        .collect();
    let kinds: Vec<(K, Option<&str>)> = lines
        .iter()
        .map(|l| (l.0.clone(), l.1.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (K::EnterQueue, None),
            (K::Offer, Some("bob")),
            (K::Connect, Some("bob")),
            (K::Transfer, Some("bob")),
            (K::RingNoAnswer, Some("dave")),
            (K::EnterQueue, None),
            (K::Offer, Some("carol")),
            (K::Connect, Some("carol")),
            (K::CompleteCaller, Some("carol")),
        ],
        "{lines:?}"
    );
    assert_eq!(lines[4].2, "486", "{lines:?}");
    assert_eq!(lines[5].2, "transfer_back", "{lines:?}");
    bob.close().await;
    carol.close().await;
    rig.done(1).await
}

/// The same on a call that is not a queue's: bob's click-to-dial call to a customer (the
/// trunk), bob consults dave and hangs up while dave rings, dave refuses. The customer is
/// not dropped: bob, free again, is rung back (his phone gets a new INVITE); he refuses
/// too, and only then does the call end (the customer gets BYE). The CDR route shows the
/// way: `dial>extension:dave>extension:bob`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transfer_target_rings_the_transferring_agent_again() -> anyhow::Result<()> {
    const BOB: u8 = 0x33;
    const DAVE: u8 = 0x55;
    const TRUNK: u8 = 0x44;
    const CUSTOMER: &str = "+4989123456";
    let (rig, mut trunk) = trunk_rig("consultback", TRUNK, "").await?;
    let mut bob = rig.desk("bob", false).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let dave_phone = RawPhone::register(rig.server, "dave", DAVE).await?;
    let placed = bob
        .ok(json!({"type": "call.dial", "number": CUSTOMER}))
        .await;
    let call_id = placed["call_id"].as_str().context("call_id")?.to_string();
    bob_phone.answer().await?;
    trunk.answer().await?;
    trunk.until("bob", |h| h.of(BOB) >= 25).await?;

    let t = consult_and_hang_up(&mut bob, &mut bob_phone, &call_id, "dave").await?;
    assert_eq!(t["data"]["to"], "extension:dave");
    dave_phone.decline(486).await?;
    let again = bob_phone.decline(480).await?;
    assert!(again.starts_with("INVITE sip:bob@"), "{again}");
    trunk.bye().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.call_id, call_id);
    assert_eq!(cdr.route, "dial>extension:dave>extension:bob", "{cdr:?}");
    bob.close().await;
    rig.done(1).await
}

/// An attended transfer to an outside number: bob consults a German number through the
/// trunk and hangs up while it still rings. The transfer goes on blind: the caller hears
/// music until the trunk answers, then the caller and the trunk hear each other. The
/// number is `number:...` in `call.transferred` and the queue log (not an extension), and
/// never the call's agent: the CDR keeps bob, who sent the call out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hanging_up_while_an_outside_number_rings_transfers_blind() -> anyhow::Result<()> {
    const BOB: u8 = 0x33;
    const TRUNK: u8 = 0x44;
    const ALLOWED: &str = "+4989123456";
    let (rig, mut trunk) = trunk_rig("consultoutside", TRUNK, "").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let (mut caller, call_id) = raw_answered_call(&rig, &mut bob, &mut bob_phone, BOB).await?;

    let t = consult_and_hang_up(&mut bob, &mut bob_phone, &call_id, ALLOWED).await?;
    assert_eq!(t["data"]["to"], format!("number:{ALLOWED}"));
    let at = caller.heard().other;
    caller
        .until("music while the number rings", |h| h.other >= at + 25)
        .await?;
    // The trunk answers only now (its INVITE waited in its socket).
    let invite = trunk.answer().await?;
    assert!(
        invite.starts_with(&format!("INVITE sip:{ALLOWED}@")),
        "{invite}"
    );
    caller
        .until("the outside party", |h| h.of(TRUNK) >= 25)
        .await?;
    trunk.until("the caller", |h| h.of(MARK) >= 25).await?;
    caller.hangup().await?;
    trunk.bye().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.agent.as_deref(), Some("bob"), "{cdr:?}");
    assert_eq!(cdr.transfers, 1, "{cdr:?}");
    let lines = transfer_lines(&rig)?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].data.starts_with(&format!("number:{ALLOWED},")),
        "{lines:?}"
    );
    bob.close().await;
    rig.done(1).await
}

/// A conference outlives the caller (the rule of Asterisk's ConfBridge: it ends when
/// fewer than two parties remain). Caller, bob and carol send constants; while the three
/// talk, the recording has the caller left and bob + carol mixed right. The caller hangs
/// up: bob and carol go on hearing each other, the recording goes on with a silent left
/// channel. Carol hangs up: bob gets BYE, the desk `call.ended` (`ConferenceEnded`), the
/// CDR keeps bob and the recording, and it and the queue log agree that the agent's side
/// ended the call (hangup side `agent`, `COMPLETE_AGENT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_goes_on_without_the_caller_and_records_everyone() -> anyhow::Result<()> {
    use hotline_media::g711::Law;
    const BOB: u8 = 0x33;
    const CAROL: u8 = 0x22;
    let u = Law::Ulaw;
    let sum = |a: u8, b: u8| {
        u.encode((i32::from(u.decode(a)) + i32::from(u.decode(b))).clamp(-32768, 32767) as i16)
    };
    let rig = rig("confleft").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut carol_phone = RawPhone::register(rig.server, "carol", CAROL).await?;
    let (mut caller, call_id) = raw_answered_call(&rig, &mut bob, &mut bob_phone, BOB).await?;
    bob.ok(json!({"type": "call.conference", "call_id": call_id, "to": "carol"}))
        .await;
    carol_phone.answer().await?;
    caller
        .until("bob + carol", |h| h.of(sum(BOB, CAROL)) >= 50)
        .await?;
    bob_phone
        .until("caller + carol", |h| h.of(sum(MARK, CAROL)) >= 25)
        .await?;

    caller.hangup().await?;
    bob_phone
        .until("carol alone", |h| h.of(CAROL) >= 50)
        .await?;
    carol_phone.until("bob alone", |h| h.of(BOB) >= 50).await?;
    carol_phone.hangup().await?;
    bob_phone.bye().await?;
    let (_, ended) = bob.event("call.ended").await;
    assert_eq!(ended["data"]["call_id"], call_id.as_str());
    assert_eq!(ended["data"]["reason"], "ConferenceEnded");
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.agent.as_deref(), Some("bob"), "{cdr:?}");
    // Carol, on the agent's side, ended it: the CDR and the queue log say so alike.
    assert_eq!(cdr.hangup_side, hotline_cdr::HangupSide::Agent, "{cdr:?}");
    let complete = rig
        .cdrs()?
        .events()
        .into_iter()
        .filter(|e| e.call_id == call_id)
        .map(|e| e.event)
        .next_back();
    assert_eq!(complete, Some(hotline_cdr::QueueEventKind::CompleteAgent));
    let path = cdr.recording.as_deref().context("recording")?;
    let mut wav = hound::WavReader::open(path)?;
    let samples: Vec<i16> = wav.samples::<i16>().collect::<Result<_, _>>()?;
    let frames: Vec<(i16, i16)> = samples.chunks(2).map(|c| (c[0], c[1])).collect();
    let (caller_pcm, others) = (u.decode(MARK), u.decode(sum(BOB, CAROL)));
    let count = |want: (i16, i16)| frames.iter().filter(|&&f| f == want).count();
    // 50 packets of the three-way mix are 8000 frames; allow for the edges.
    assert!(
        count((caller_pcm, others)) >= 4000,
        "all three in the recording: {} frames",
        count((caller_pcm, others))
    );
    assert!(
        count((0, others)) >= 4000,
        "bob and carol after the caller left: {} frames",
        count((0, others))
    );
    bob.close().await;
    rig.done(1).await
}

/// A click-to-dial call has the inbound call's controls. Bob dials a German number (the
/// trunk, a raw UA) from the desk; once both answered, bob's desk holds (the customer
/// hears music, bob nothing of the customer) and resumes, adds carol to a conference
/// (everyone hears the G.711 sum of the other two; carol leaves, the two talk on),
/// consults alice and cancels, then transfers blind to dave: bob's phone gets BYE, his
/// desk `call.transferred`, the customer talks to dave. The CDR is the dial's (route
/// `dial`, outbound) with dave as agent, one transfer and the recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_dial_call_has_hold_transfer_and_conference() -> anyhow::Result<()> {
    use hotline_media::g711::Law;
    const BOB: u8 = 0x33;
    const CAROL: u8 = 0x22;
    const ALICE: u8 = 0x66;
    const DAVE: u8 = 0x55;
    const TRUNK: u8 = 0x44;
    const CUSTOMER: &str = "+4989123456";
    let u = Law::Ulaw;
    let sum = |a: u8, b: u8| {
        u.encode((i32::from(u.decode(a)) + i32::from(u.decode(b))).clamp(-32768, 32767) as i16)
    };
    let (rig, mut trunk) = trunk_rig("dialcontrol", TRUNK, "").await?;
    let mut bob = rig.desk("bob", false).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut carol_phone = RawPhone::register(rig.server, "carol", CAROL).await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", ALICE).await?;
    let mut dave_phone = RawPhone::register(rig.server, "dave", DAVE).await?;

    let placed = bob
        .ok(json!({"type": "call.dial", "number": CUSTOMER}))
        .await;
    let call_id = placed["call_id"].as_str().context("call_id")?.to_string();
    bob_phone.answer().await?;
    let invite = trunk.answer().await?;
    assert!(
        invite.starts_with(&format!("INVITE sip:{CUSTOMER}@")),
        "{invite}"
    );
    let (_, answered) = bob.event("call.answered").await;
    assert_eq!(answered["data"]["call_id"], call_id.as_str());
    bob_phone
        .until("the customer", |h| h.of(TRUNK) >= 25)
        .await?;
    trunk.until("bob", |h| h.of(BOB) >= 25).await?;

    // Hold and resume.
    bob.ok(cmd("call.hold", &call_id)).await;
    bob.event("call.held").await;
    let at_hold = bob_phone.heard().context("heard")?;
    let music = trunk.heard().context("heard")?.other;
    trunk
        .until("music while held", |h| h.other >= music + 50)
        .await?;
    let held = bob_phone.heard().context("heard")?;
    assert!(
        held.of(TRUNK) <= at_hold.of(TRUNK) + 5,
        "bob heard the customer while held: {at_hold:?} → {held:?}"
    );
    bob.ok(cmd("call.resume", &call_id)).await;
    bob.event("call.resumed").await;
    let at = bob_phone.heard().context("heard")?.of(TRUNK);
    bob_phone
        .until("the customer again", |h| h.of(TRUNK) >= at + 25)
        .await?;

    // Conference with carol, who then leaves.
    bob.ok(json!({"type": "call.conference", "call_id": call_id, "to": "carol"}))
        .await;
    carol_phone.answer().await?;
    trunk
        .until("bob + carol", |h| h.of(sum(BOB, CAROL)) >= 25)
        .await?;
    carol_phone
        .until("customer + bob", |h| h.of(sum(TRUNK, BOB)) >= 25)
        .await?;
    bob_phone
        .until("customer + carol", |h| h.of(sum(TRUNK, CAROL)) >= 25)
        .await?;
    carol_phone.hangup().await?;
    let at = trunk.heard().context("heard")?.of(BOB);
    trunk
        .until("bob alone again", |h| h.of(BOB) >= at + 25)
        .await?;

    // Consult alice, then back to the customer.
    let transfer = |to: &str, attended: bool| json!({"type": "call.transfer", "call_id": call_id, "to": to, "attended": attended});
    bob.ok(transfer("alice", true)).await;
    alice_phone.answer().await?;
    alice_phone
        .until("bob consulting", |h| h.of(BOB) >= 25)
        .await?;
    bob.ok(cmd("call.transfer.cancel", &call_id)).await;
    alice_phone.bye().await?;
    let at = trunk.heard().context("heard")?.of(BOB);
    trunk
        .until("bob back with the customer", |h| h.of(BOB) >= at + 25)
        .await?;

    // Blind to dave.
    bob.ok(transfer("agent:dave", false)).await;
    let (_, t) = bob.event("call.transferred").await;
    assert_eq!(t["data"]["call_id"], call_id.as_str());
    assert_eq!(t["data"]["to"], "extension:dave");
    bob_phone.bye().await?;
    dave_phone.answer().await?;
    trunk.until("dave", |h| h.of(DAVE) >= 25).await?;
    dave_phone
        .until("the customer", |h| h.of(TRUNK) >= 25)
        .await?;
    trunk.hangup().await?;
    dave_phone.bye().await?;
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.call_id, call_id);
    assert_eq!(
        (cdr.direction.as_str(), cdr.route.as_str()),
        ("outbound", "dial>extension:dave"),
        "{cdr:?}"
    );
    assert_eq!(cdr.agent.as_deref(), Some("dave"), "{cdr:?}");
    assert_eq!(cdr.transfers, 1, "{cdr:?}");
    assert!(cdr.recording.is_some(), "{cdr:?}");
    bob.close().await;
    rig.done(1).await
}

/// The other way out of a conference the caller left: bob hangs up, so carol, the last
/// party, gets BYE and the call ends with bob's hangup (queue log `COMPLETE_AGENT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_without_the_caller_ends_when_the_agent_leaves() -> anyhow::Result<()> {
    const BOB: u8 = 0x33;
    const CAROL: u8 = 0x22;
    let rig = rig("confagentleft").await?;
    let mut bob = rig.desk("bob", true).await?;
    let mut bob_phone = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut carol_phone = RawPhone::register(rig.server, "carol", CAROL).await?;
    let (caller, call_id) = raw_answered_call(&rig, &mut bob, &mut bob_phone, BOB).await?;
    bob.ok(json!({"type": "call.conference", "call_id": call_id, "to": "carol"}))
        .await;
    carol_phone.answer().await?;
    let u = hotline_media::g711::Law::Ulaw;
    let caller_and_bob = u
        .encode((i32::from(u.decode(MARK)) + i32::from(u.decode(BOB))).clamp(-32768, 32767) as i16);
    carol_phone
        .until("caller + bob", |h| h.of(caller_and_bob) >= 25)
        .await?;
    caller.hangup().await?;
    carol_phone.until("bob alone", |h| h.of(BOB) >= 25).await?;
    bob_phone.hangup().await?;
    carol_phone.bye().await?;
    let (_, ended) = bob.event("call.ended").await;
    assert_eq!(ended["data"]["call_id"], call_id.as_str());
    assert_eq!(ended["data"]["reason"], "AgentHangup");
    let cdr = rig.cdrs()?.wait_calls(1, WAIT).await;
    let cdr = cdr.first().context("CDR")?;
    assert_eq!(cdr.agent.as_deref(), Some("bob"), "{cdr:?}");
    let complete = rig
        .cdrs()?
        .events()
        .into_iter()
        .filter(|e| e.call_id == call_id)
        .map(|e| e.event)
        .next_back();
    assert_eq!(complete, Some(hotline_cdr::QueueEventKind::CompleteAgent));
    bob.close().await;
    rig.done(1).await
}
