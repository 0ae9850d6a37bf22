//! The call set-up the SIPp call tests share: Hotline with its own RTP ports, agents (a
//! SIPp UAS registered from its own port), the caller (alice), and what must hold after.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hotline::Hotline;
use hotline_cdr::{CallRecord, MemoryCdrs, QueueEventKind};
use hotline_switch::CallEnd;
use tokio::sync::mpsc::Receiver;

use crate::{Proto, Sipp, SippBuilder, caller_audio, free_port, media, start_hotline_with_sip};

/// Hotline with more `[sip]` keys, `ports` RTP ports of this test binary ([`media`]) and
/// `body` (numbers, queues, …); its UDP address and the reports of ended calls.
pub async fn start_for_calls(
    sip: &str,
    ports: u16,
    body: &str,
) -> anyhow::Result<(Hotline, SocketAddr, Receiver<CallEnd>)> {
    let mut h = start_hotline_with_sip(sip, &(media(ports) + body)).await?;
    let server = Proto::Udp.server_addr(&h);
    let ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended reports")?;
    Ok((h, server, ended))
}

/// Registers `user` (password `<user>-pw`) from a fresh port, then starts its UAS
/// `scenario` on that port with `extra` SIPp arguments (`-rtp_echo`, `-m 2`, …); bound
/// when this returns.
pub async fn agent(
    server: SocketAddr,
    user: &str,
    scenario: &str,
    extra: &[&str],
) -> anyhow::Result<Sipp> {
    agent_with(server, user, scenario, |b| b.args(extra.iter().copied())).await
}

/// [`agent`] with the UAS's command line shaped by `uas` (arguments, `-m`, `-timeout`).
pub async fn agent_with(
    server: SocketAddr,
    user: &str,
    scenario: &str,
    uas: impl FnOnce(SippBuilder) -> SippBuilder,
) -> anyhow::Result<Sipp> {
    let port = free_port();
    register(server, user, port).await?;
    device(user, port, scenario, uas).await
}

/// Registers `user` (password `<user>-pw`) once from `port` with SIPp: the contact a
/// UAS or a raw socket on that port then answers at.
pub async fn register(server: SocketAddr, user: &str, port: u16) -> anyhow::Result<()> {
    let pw = format!("{user}-pw");
    SippBuilder::new(
        &format!("{user}-register"),
        "register_once.xml",
        Proto::Udp,
        port,
    )
    .args(["-s", user, "-au", user, "-ap", &pw])
    .spawn(Some(server))?
    .expect_success()
    .await
}

/// `user`'s SIPp UAS `scenario` on `port` (registered there before), shaped by `uas`;
/// bound when this returns.
pub async fn device(
    user: &str,
    port: u16,
    scenario: &str,
    uas: impl FnOnce(SippBuilder) -> SippBuilder,
) -> anyhow::Result<Sipp> {
    let sipp = uas(
        SippBuilder::new(&format!("{user}-uas"), scenario, Proto::Udp, port).args(["-s", user]),
    )
    .spawn_bound()
    .await?;
    Ok(sipp)
}

/// Alice (authenticated) dials `number` with `scenario` and `extra` SIPp arguments, with
/// `caller.wav` in place for scenarios that stream it.
pub fn caller(
    server: SocketAddr,
    number: &str,
    scenario: &str,
    extra: &[&str],
) -> anyhow::Result<Sipp> {
    caller_audio()?;
    SippBuilder::new("caller", scenario, Proto::Udp, free_port())
        .args([
            "-s", number, "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .args(extra.iter().copied())
        .spawn(Some(server))
}

/// The next report of an ended call (bounded: a hung test fails instead).
pub async fn next_end(rx: &mut Receiver<CallEnd>) -> anyhow::Result<CallEnd> {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .context("no call ended within 20 s")?
        .context("switch stopped")
}

/// Nothing is left over after the calls: call tasks, RTP ports, SIP dialogs.
pub async fn nothing_left(h: &Hotline) -> anyhow::Result<()> {
    let switch = h.switch.as_ref().context("switch")?;
    let calls = switch.stats().active_calls();
    anyhow::ensure!(calls == 0, "{calls} call tasks left");
    let ports = switch.ports().in_use();
    anyhow::ensure!(ports == 0, "{ports} RTP port pairs leaked");
    let dialogs = switch.sip_dialogs().await?;
    anyhow::ensure!(dialogs == 0, "{dialogs} SIP dialogs left behind");
    Ok(())
}

/// The call records Hotline keeps in memory (a test config without `[store]`).
pub fn memory(h: &Hotline) -> anyhow::Result<&MemoryCdrs> {
    h.cdr
        .as_ref()
        .and_then(|c| c.memory.as_ref())
        .context("CDRs kept in memory")
}

/// The one CDR of `call_id`.
pub fn cdr_row(h: &Hotline, call_id: &str) -> anyhow::Result<CallRecord> {
    let rows: Vec<CallRecord> = memory(h)?
        .calls()
        .into_iter()
        .filter(|r| r.call_id == call_id)
        .collect();
    anyhow::ensure!(rows.len() == 1, "one CDR for {call_id}: {rows:?}");
    rows.into_iter().next().context("row")
}

/// The queue-log lines of `call_id` as (kind, agent, data).
pub fn queue_log(
    h: &Hotline,
    call_id: &str,
) -> anyhow::Result<Vec<(QueueEventKind, Option<String>, String)>> {
    Ok(memory(h)?
        .events()
        .into_iter()
        .filter(|e| e.call_id == call_id)
        .map(|e| (e.event, e.agent, e.data))
        .collect())
}
