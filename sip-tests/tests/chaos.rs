//! Chaos (issue #8): 30 agents with CTI desks and SIP phones take 150 queue calls from SIPp
//! while a seeded RNG drops desk connections — a desk closing its socket abruptly, or a
//! "site" (a `CutProxy` in front of six desks) losing its network for a moment. Every desk
//! reconnects and resumes with its token; right after each resume, and once more when all
//! calls are over, its view (state, version, current call) is compared with the ACD's own
//! agent state, read from the switch: zero divergence allowed. Every call must be accounted
//! for: one CDR each (answered or abandoned), no call or RTP port left, no agent stuck.
//!
//! Desks that stay connected are spot-checked the same way while calls flow. Desks also
//! end some wrap-ups early and take a short break on some offers, so states churn.
//!
//! `CHAOS_SEED=N` replays a run (the seed is printed). `CHAOS_INJECT=1` makes desk a01
//! ignore its resume replies and go on with the view it had before the drop (a desk that
//! does not resynchronise): the test must then fail with a divergence, showing the check
//! bites (the checker's unit tests are in `sip-tests/src/deskview.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use hotline_sip_tests::deskview::{AgentView, DeskView, divergence};
use hotline_sip_tests::{CutProxy, Proto, SippBuilder, TRUSTED_IP, free_port};
use hotline_switch::SwitchHandle;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ORIGIN: &str = "http://desk.test";
const AGENTS: usize = 30;
const CALLS: usize = 150;
/// Desks behind each site's proxy; the rest connect directly.
const SITES: usize = 3;
const PER_SITE: usize = 6;
/// How long a desk's view may take to catch up with the ACD after a resume (events in
/// flight) before a difference counts as a divergence.
const SETTLE: Duration = Duration::from_secs(3);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the desks report.
#[derive(Default, Debug)]
struct Tally {
    /// Checks that agreed, by the ACD state at the time.
    agreed: std::collections::BTreeMap<String, u32>,
    /// Spot checks of connected desks while calls flow, by ACD state.
    spot: std::collections::BTreeMap<String, u32>,
    divergences: Vec<String>,
    resumes: u32,
}

enum Cmd {
    /// Close the socket abruptly (no close frame) and reconnect a little later.
    Drop,
    /// Compare the view with the ACD now (all quiet) and report.
    Check(oneshot::Sender<Result<String, String>>),
}

struct Desk {
    agent: String,
    addr: SocketAddr,
    switch: SwitchHandle,
    tally: Arc<Mutex<Tally>>,
    connected: watch::Sender<bool>,
    rng: StdRng,
    /// `CHAOS_INJECT`: this desk ignores resume replies (see the module doc).
    inject: bool,
    /// The view as it was when the socket dropped (for the injected bug).
    kept: Option<DeskView>,
}

/// The socket closed under the desk.
struct Closed;

async fn connect(addr: SocketAddr) -> Option<Ws> {
    let mut req = format!("ws://{addr}/cti").into_client_request().ok()?;
    req.headers_mut().insert("Origin", ORIGIN.parse().ok()?);
    let (ws, _) = timeout(
        Duration::from_secs(2),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .ok()?
    .ok()?;
    Some(ws)
}

/// The next JSON frame within `wait` (`Ok(None)`: nothing came); server pings answered.
async fn frame(ws: &mut Ws, wait: Duration) -> Result<Option<Value>, Closed> {
    let deadline = Instant::now() + wait;
    loop {
        let m = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Ok(None),
            Ok(Some(Ok(m))) => m,
            Ok(_) => return Err(Closed),
        };
        let Message::Text(t) = m else {
            if matches!(m, Message::Close(_)) {
                return Err(Closed);
            }
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        if v["type"] == "ping" {
            let pong = json!({"v": 1, "type": "pong"}).to_string();
            ws.send(Message::text(pong)).await.map_err(|_| Closed)?;
            continue;
        }
        return Ok(Some(v));
    }
}

/// Sends a request and waits for its reply; events that come first are returned too (to
/// be applied after the reply, which is authoritative for what came before it).
async fn request(ws: &mut Ws, id: &str, mut req: Value) -> Result<(Value, Vec<Value>), Closed> {
    req["v"] = json!(1);
    req["id"] = json!(id);
    ws.send(Message::text(req.to_string()))
        .await
        .map_err(|_| Closed)?;
    let mut early = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match frame(ws, Duration::from_millis(200)).await? {
            Some(f) if f["id"] == id => return Ok((f, early)),
            Some(f) if f["type"] != "reply" && f["type"] != "error" => early.push(f),
            _ => {}
        }
    }
    Err(Closed)
}

async fn acd_state(switch: &SwitchHandle, agent: &str) -> Option<AgentView> {
    let all = switch.agents().await.ok()?;
    let s = all.into_iter().find(|s| s.agent == agent)?;
    AgentView::from_json(&serde_json::to_value(&s).ok()?).ok()
}

impl Desk {
    /// Compares the view with the ACD, letting events in flight arrive (bounded):
    /// `Ok(state)` when they agree at the same version, `Err(why)` when they never do.
    async fn check(
        &self,
        ws: &mut Ws,
        view: &mut DeskView,
    ) -> Result<Result<String, String>, Closed> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let Some(acd) = acd_state(&self.switch, &self.agent).await else {
                return Ok(Err(format!(
                    "{}: the ACD does not know the agent",
                    self.agent
                )));
            };
            let why = if view.agent.version == acd.version {
                match divergence(view, &acd) {
                    None => return Ok(Ok(acd.state)),
                    Some(why) => why,
                }
            } else {
                format!(
                    "desk at version {} ({}), ACD at {} ({})",
                    view.agent.version, view.agent.state, acd.version, acd.state
                )
            };
            if Instant::now() > deadline {
                return Ok(Err(format!("{}: {why}", self.agent)));
            }
            if let Some(f) = frame(ws, Duration::from_millis(50)).await? {
                view.apply(&f);
            }
        }
    }

    /// Logs in (first time) or resumes, then lives until dropped; reconnects for ever.
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let mut token: Option<String> = None;
        let mut n = 0u64;
        loop {
            let Some(mut ws) = connect(self.addr).await else {
                sleep(Duration::from_millis(100)).await; // the site is cut: retry
                continue;
            };
            if let Ok(true) = self.session(&mut ws, &mut token, &mut n, &mut cmds).await {
                return;
            }
            let _ = self.connected.send(false);
        }
    }

    /// One connection: `Ok(true)` when the test is over (commands closed).
    async fn session(
        &mut self,
        ws: &mut Ws,
        token: &mut Option<String>,
        n: &mut u64,
        cmds: &mut mpsc::Receiver<Cmd>,
    ) -> Result<bool, Closed> {
        let mut id = || {
            *n += 1;
            format!("r{}", *n)
        };
        let resumed = token.is_some();
        let (reply, early) = match token.clone() {
            Some(t) => request(ws, &id(), json!({"type": "auth.resume", "token": t})).await?,
            None => {
                let login =
                    json!({"type": "auth.login", "user": self.agent, "password": "desk-pw"});
                request(ws, &id(), login).await?
            }
        };
        if reply["type"] != "reply" {
            self.fail(format!("{}: login/resume refused: {reply}", self.agent));
            return Ok(true);
        }
        *token = reply["data"]["token"].as_str().map(str::to_string);
        let mut view = match DeskView::from_login(&reply["data"]) {
            Ok(v) => v,
            Err(e) => {
                self.fail(format!("{}: {e}", self.agent));
                return Ok(true);
            }
        };
        if self.inject && resumed {
            // The injected bug: the desk ignores the resume reply and goes on with the
            // view it had before the drop (missing whatever changed meanwhile).
            if let Some(old) = self.kept.clone() {
                view = old;
            }
        }
        for f in &early {
            view.apply(f);
        }
        if !resumed {
            let (r, early) = request(ws, &id(), json!({"type": "agent.ready"})).await?;
            view.apply(&json!({"type": "agent.state", "data": r["data"]}));
            for f in &early {
                view.apply(f);
            }
        }
        let _ = self.connected.send(true);
        if resumed {
            let outcome = self.check(ws, &mut view).await?;
            let mut t = self.tally.lock().expect("tally");
            t.resumes += 1;
            match outcome {
                Ok(state) => *t.agreed.entry(state).or_default() += 1,
                Err(why) => t.divergences.push(why),
            }
        }
        // When a desk on a break (not ready) makes its agent ready again.
        let mut back: Option<Instant> = None;
        loop {
            if view.agent.state == "not_ready" && back.is_none() {
                back =
                    Some(Instant::now() + Duration::from_millis(self.rng.random_range(300..2000)));
            }
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return Ok(true),
                    Some(Cmd::Drop) => {
                        // Abrupt: the TCP connection goes without a close frame.
                        let pause = self.rng.random_range(50..1000);
                        let _ = self.connected.send(false);
                        sleep(Duration::from_millis(pause)).await;
                        return Ok(false);
                    }
                    Some(Cmd::Check(tx)) => {
                        let r = self.check(ws, &mut view).await?;
                        let _ = tx.send(r);
                    }
                },
                f = frame(ws, Duration::from_secs(1)) => {
                    let Some(f) = f? else { continue };
                    view.apply(&f);
                    if self.inject {
                        self.kept = Some(view.clone());
                    }
                    // Some agents end wrap-up early from the desk; some take a break
                    // the moment a call is offered (the offer goes back to the queue
                    // if it still rings, else the break waits for the call's end).
                    let req = if f["type"] == "wrapup.started" && self.rng.random_bool(0.3) {
                        Some(json!({"type": "agent.ready"}))
                    } else if f["type"] == "call.offered" && self.rng.random_bool(0.1) {
                        Some(json!({"type": "agent.not_ready", "reason": "break"}))
                    } else {
                        None
                    };
                    if let Some(mut req) = req {
                        req["v"] = json!(1);
                        req["id"] = json!(id());
                        ws.send(Message::text(req.to_string())).await.map_err(|_| Closed)?;
                    }
                    if view.agent.state == "not_ready" && back.is_none() {
                        back = Some(Instant::now() + Duration::from_millis(self.rng.random_range(300..2000)));
                    }
                }
                _ = tokio::time::sleep_until(back.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if back.is_some() => {
                    // The break is over.
                    back = None;
                    let req = json!({"v": 1, "id": id(), "type": "agent.ready"});
                    ws.send(Message::text(req.to_string())).await.map_err(|_| Closed)?;
                }
            }
        }
    }

    fn fail(&self, why: String) {
        self.tally.lock().expect("tally").divergences.push(why);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desks_dropping_under_load_never_diverge_and_no_call_is_lost() -> anyhow::Result<()> {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let inject = std::env::var("CHAOS_INJECT").is_ok_and(|v| v == "1");
    eprintln!(
        "chaos seed {seed} (replay with CHAOS_SEED={seed}){}",
        if inject { ", divergence injected" } else { "" }
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let agents: Vec<String> = (1..=AGENTS).map(|i| format!("a{i:02}")).collect();
    let hash = hotline_cti::hash_password("desk-pw")?;
    let mut cfg = hotline_sip_tests::media(1000)
        + "record = false\n\
         [[numbers]]\nnumber = \"4100\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nwrapup_secs = 2\n";
    for a in &agents {
        cfg.push_str(&format!(
            "[[acd.agent]]\nid = \"{a}\"\nqueues = {{ support = 0 }}\n"
        ));
    }
    cfg.push_str(&format!(
        "[cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n"
    ));
    for a in &agents {
        cfg.push_str(&format!(
            "[[cti.user]]\nname = \"{a}\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"{a}\"\n"
        ));
    }
    let h = hotline_sip_tests::start_hotline_with(&cfg).await?;
    let server = Proto::Udp.server_addr(&h);
    let sw = h.switch.as_ref().context("switch")?;
    let switch = sw.handle();
    let cti = h.cti.as_ref().context("[cti]")?.local_addr();

    // The agents' phones: all 30 AORs registered to one SIPp UAS (from the trusted address).
    let phones_port = free_port();
    let csv = hotline_sip_tests::out_dir().join(format!("chaos-agents-{}.csv", std::process::id()));
    std::fs::write(&csv, format!("SEQUENTIAL\n{}\n", agents.join("\n")))?;
    SippBuilder::new(
        "chaos-register",
        "register_csv.xml",
        Proto::Udp,
        phones_port,
    )
    .set("-i", TRUSTED_IP)
    .set("-m", AGENTS.to_string())
    .args(["-inf", &csv.display().to_string(), "-r", "50"])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    let phones = SippBuilder::new(
        "chaos-phones",
        "uas_ring_then_answer.xml",
        Proto::Udp,
        phones_port,
    )
    .set("-i", TRUSTED_IP)
    .set("-m", "100000")
    .set("-timeout", "300s")
    .spawn_bound()
    .await?;

    // Desks: the first SITES × PER_SITE behind their site's proxy, the rest direct.
    let mut sites = Vec::new();
    for _ in 0..SITES {
        sites.push(Arc::new(CutProxy::start(cti).await?));
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut ctl = Vec::new();
    let mut up = Vec::new();
    for (idx, agent) in agents.iter().enumerate() {
        let addr = match sites.get(idx / PER_SITE) {
            Some(p) => p.addr(),
            None => cti,
        };
        let (tx, rx) = mpsc::channel(8);
        let (connected, seen) = watch::channel(false);
        let desk = Desk {
            agent: agent.clone(),
            addr,
            switch: switch.clone(),
            tally: tally.clone(),
            connected,
            rng: StdRng::seed_from_u64(seed ^ (idx as u64 + 1)),
            inject: inject && idx == 0,
            kept: None,
        };
        tokio::spawn(desk.run(rx));
        ctl.push(tx);
        up.push(seen);
    }
    all_connected(&mut up).await?;
    // Every agent logged in and ready before the first call.
    for a in &agents {
        let s = acd_state(&switch, a).await.context("agent state")?;
        ensure!(s.state == "ready", "{a} is {s:?} before the calls");
    }

    // 150 calls at 4/s, each 5 s in all (waiting, then talking), from the trusted address.
    let calls = SippBuilder::new(
        "chaos-callers",
        "uac_queue_talk.xml",
        Proto::Udp,
        free_port(),
    )
    .set("-i", TRUSTED_IP)
    .set("-m", CALLS.to_string())
    .args(["-s", "4100", "-r", "4", "-d", "5000"])
    .set("-timeout", "200s")
    .spawn(Some(server))?;
    let calls = tokio::spawn(calls.expect_success_within(Duration::from_secs(200)));

    let (mut drops, mut blips) = (0u32, 0u32);
    let (mut restores, mut spots) = (Vec::new(), Vec::new());
    while !calls.is_finished() {
        sleep(Duration::from_millis(rng.random_range(100..400))).await;
        if rng.random_bool(0.2) {
            let site = sites[rng.random_range(0..SITES)].clone();
            let outage = Duration::from_millis(rng.random_range(200..1500));
            site.cut();
            blips += 1;
            restores.push(tokio::spawn(async move {
                sleep(outage).await;
                site.restore();
            }));
        } else if rng.random_bool(0.3) {
            // A spot check of a desk that has been connected a while (if it is).
            let (otx, orx) = oneshot::channel();
            if ctl[rng.random_range(0..AGENTS)]
                .try_send(Cmd::Check(otx))
                .is_ok()
            {
                let tally = tally.clone();
                spots.push(tokio::spawn(async move {
                    let r = timeout(Duration::from_secs(10), orx).await;
                    let mut t = tally.lock().expect("tally");
                    match r {
                        Ok(Ok(Ok(state))) => *t.spot.entry(state).or_default() += 1,
                        Ok(Ok(Err(why))) => t.divergences.push(why),
                        _ => {} // the desk dropped meanwhile: its resume is checked
                    }
                }));
            }
        } else {
            let _ = ctl[rng.random_range(0..AGENTS)].try_send(Cmd::Drop);
            drops += 1;
        }
    }
    for s in spots {
        s.await?;
    }
    calls.await??;
    for r in restores {
        r.await?;
    }
    for s in &sites {
        s.restore();
    }

    // Every call accounted for: one CDR each, nothing left up.
    let cdrs = h
        .cdr
        .as_ref()
        .and_then(|c| c.memory.as_ref())
        .context("memory CDRs")?
        .wait_calls(CALLS, Duration::from_secs(30))
        .await;
    ensure!(cdrs.len() == CALLS, "{} CDRs for {CALLS} calls", cdrs.len());
    let ids: std::collections::HashSet<_> = cdrs.iter().map(|c| c.sip_call_id.clone()).collect();
    ensure!(
        ids.len() == CALLS,
        "{} distinct calls in {CALLS} CDRs",
        ids.len()
    );
    let answered = cdrs
        .iter()
        .filter(|c| c.result == hotline_cdr::CallResult::Answered)
        .count();
    let abandoned = cdrs
        .iter()
        .filter(|c| c.result == hotline_cdr::CallResult::Abandoned)
        .count();
    ensure!(
        answered + abandoned == CALLS,
        "results other than answered/abandoned: {:?}",
        cdrs.iter().map(|c| c.result.clone()).collect::<Vec<_>>()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sw.stats().active_calls() > 0 || sw.ports().in_use() > 0 {
        if Instant::now() > deadline {
            bail!(
                "stuck: {} calls, {} RTP ports still held",
                sw.stats().active_calls(),
                sw.ports().in_use()
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    // No agent left on a call; every desk (reconnected) agrees with the ACD.
    all_connected(&mut up).await?;
    let mut finals = std::collections::BTreeMap::<String, u32>::new();
    for (a, tx) in agents.iter().zip(&ctl) {
        let (otx, orx) = oneshot::channel();
        tx.send(Cmd::Check(otx)).await.context("desk task gone")?;
        match timeout(Duration::from_secs(10), orx).await {
            Ok(Ok(Ok(state))) => *finals.entry(state).or_default() += 1,
            Ok(Ok(Err(why))) => tally.lock().expect("tally").divergences.push(why),
            _ => tally
                .lock()
                .expect("tally")
                .divergences
                .push(format!("{a}: no final check")),
        }
    }
    for s in switch.agents().await? {
        let v = serde_json::to_value(&s)?;
        ensure!(
            !matches!(v["state"].as_str(), Some("reserved" | "on_call")),
            "{} stuck in {v}",
            s.agent
        );
    }
    drop(ctl);
    drop(phones);
    let t = tally.lock().expect("tally");
    eprintln!(
        "chaos seed {seed}: {CALLS} calls ({answered} answered, {abandoned} abandoned), \
         {drops} abrupt drops, {blips} site blips, {} resumes checked {:?}, spot checks {:?}, \
         final {:?}, {} divergences",
        t.resumes,
        t.agreed,
        t.spot,
        finals,
        t.divergences.len()
    );
    ensure!(
        t.divergences.is_empty(),
        "desk views diverged from the ACD (seed {seed}):\n{}",
        t.divergences.join("\n")
    );
    ensure!(t.resumes > 0, "no desk resumed");
    ensure!(
        t.agreed.keys().any(|s| s == "on_call"),
        "no resume happened during a call: {:?}",
        t.agreed
    );
    let _ = std::fs::remove_file(&csv);
    Ok(())
}

/// Waits (bounded) until every desk is connected and logged in.
async fn all_connected(up: &mut [watch::Receiver<bool>]) -> anyhow::Result<()> {
    for (i, u) in up.iter_mut().enumerate() {
        timeout(Duration::from_secs(30), u.wait_for(|c| *c))
            .await
            .with_context(|| format!("desk {i} not connected within 30 s"))??;
    }
    Ok(())
}
