//! Screen-pop latency: a call's caller id → CRM lookup (360° view) → `call.offered`
//! written to the agent's WebSocket (the switch's ack), with many customers, many agent
//! sockets and calls arriving at a steady rate. Prints p50/p90/p99/max of the server-side
//! path (what the switch waits for before ringing) and of arrival at the desk client.
//!
//! ```sh
//! cargo run --release -p hotline-cti --example pop_bench -- \
//!     --store /tmp/pop.sqlite --customers 1000000 --agents 1000 --rate 100 --calls 3000
//! ```
//! (`--store postgres://postgres@127.0.0.1:5432/test` for PostgreSQL; customers are
//! generated once per store.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hotline_crm::generate::{GenerateConfig, mobile_number};
use hotline_crm::{Store, StoreConfig};
use hotline_cti::{CtiConfig, CtiServer, CtiUser, Role};
use hotline_switch::{DeskConfig, SwitchHandle};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Args {
    store: String,
    customers: u64,
    agents: usize,
    rate: u64,
    calls: usize,
}

fn args() -> Args {
    let mut a = Args {
        store: std::env::temp_dir()
            .join("hotline_pop_bench.sqlite")
            .display()
            .to_string(),
        customers: 100_000,
        agents: 1000,
        rate: 100,
        calls: 2000,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for w in v.chunks(2) {
        let val = w.get(1).cloned().unwrap_or_default();
        match w[0].as_str() {
            "--store" => a.store = val,
            "--customers" => a.customers = val.parse().expect("--customers N"),
            "--agents" => a.agents = val.parse().expect("--agents N"),
            "--rate" => a.rate = val.parse().expect("--rate N"),
            "--calls" => a.calls = val.parse().expect("--calls N"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        d.len(),
        pct(&d, 0.5),
        pct(&d, 0.9),
        pct(&d, 0.99),
        pct(&d, 1.0)
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let store = Store::open(&a.store, &StoreConfig::default())
        .await
        .expect("open store");
    let (have, ..) = store.counts().await.expect("counts");
    if (have as u64) < a.customers {
        println!("generating {} customers …", a.customers);
        let t = Instant::now();
        store
            .generate(
                &GenerateConfig {
                    customers: a.customers,
                    ..GenerateConfig::default()
                },
                |_, _| {},
            )
            .await
            .expect("generate");
        println!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    // Cheap password hashes: logging in 1,000 desks is not what is measured.
    let hash = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(8, 1, 1, None).expect("params");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"pop-bench-salt!!").expect("salt");
        argon.hash_password(b"pw", &salt).expect("hash").to_string()
    };
    let mut acd = String::from("[[queue]]\nname = \"support\"\n");
    let mut users = Vec::new();
    for i in 0..a.agents {
        acd.push_str(&format!(
            "[[agent]]\nid = \"a{i}\"\nqueues = {{ support = 0 }}\n"
        ));
        users.push(CtiUser {
            name: format!("a{i}"),
            password_hash: hash.clone(),
            role: Role::Agent,
            agent: Some(format!("a{i}")),
            queues: Vec::new(),
        });
    }
    let acd = hotline_acd::AcdConfig::from_toml(&acd).expect("acd");
    let mut cfg: CtiConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0", "allowed_origins": ["*"], "outbound_queue": 1024
    }))
    .expect("cti config");
    cfg.users = users;
    let switch = SwitchHandle::standalone(
        &acd,
        DeskConfig {
            store: Some(store.clone()),
            desk_login: cfg.desk_agents(),
            offer_ack_timeout: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(5),
            ..DeskConfig::default()
        },
    )
    .expect("switch");
    let server = CtiServer::start(cfg, switch.clone()).await.expect("cti");
    let addr = server.local_addr();
    // Desk clients: each logs in, then notes when each call.offered arrives.
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t = Instant::now();
    let mut desks = Vec::new();
    for i in 0..a.agents {
        let mut req = format!("ws://{addr}/cti")
            .into_client_request()
            .expect("url");
        req.headers_mut()
            .insert("Origin", "http://bench".parse().expect("origin"));
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connect");
        ws.send(Message::text(
            json!({"v":1,"id":1,"type":"auth.login","user":format!("a{i}"),"password":"pw"})
                .to_string(),
        ))
        .await
        .expect("login");
        let arrivals = arrivals.clone();
        desks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                if v["type"] == "call.offered"
                    && let Some(id) = v["data"]["call_id"].as_str()
                {
                    arrivals
                        .lock()
                        .expect("lock")
                        .insert(id.to_string(), Instant::now());
                } else if v["type"] == "ping" {
                    let _ = ws
                        .send(Message::text(json!({"v":1,"type":"pong"}).to_string()))
                        .await;
                }
            }
        }));
    }
    println!(
        "{} desks connected and logged in in {:.1} s",
        a.agents,
        t.elapsed().as_secs_f64()
    );
    // Calls at a steady rate, callers drawn from the generated customers.
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / a.rate.max(1)));
    let mut calls = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..a.calls {
        tick.tick().await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let caller = mobile_number(rng % a.customers.max(1));
        let agent = format!("a{}", i % a.agents);
        let sw = switch.clone();
        calls.push(tokio::spawn(async move {
            let call_id = format!("bench-{i}");
            let start = Instant::now();
            sw.pop_and_offer(&call_id, &caller, "support", &agent).await;
            (call_id, start, start.elapsed())
        }));
    }
    let mut written = Vec::new();
    let mut starts = Vec::new();
    for c in calls {
        let (id, start, d) = c.await.expect("call task");
        written.push(d);
        starts.push((id, start));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let arr = arrivals.lock().expect("lock").clone();
    let at_desk: Vec<Duration> = starts
        .iter()
        .filter_map(|(id, s)| arr.get(id).map(|t| t.duration_since(*s)))
        .collect();
    println!(
        "backend {:?}, {} customers, {} agent sockets, {} calls at {}/s",
        store.backend(),
        a.customers,
        a.agents,
        a.calls,
        a.rate
    );
    report("caller id -> call.offered written (switch ack)", written);
    report("caller id -> call.offered read by the desk", at_desk);
    server.shutdown().await;
    for d in desks {
        d.abort();
    }
}
