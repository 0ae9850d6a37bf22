//! The SIP guard against real SIPp peers on loopback: a flooding address is blocked while
//! another address keeps registering, wrong passwords lock their source out (no further
//! challenges), and a scanner User-Agent gets no answer at all.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{bail, ensure};
use hotline::Hotline;
use hotline_sip::Counters;
use hotline_sip_tests::{Proto, SippBuilder, free_port, start_hotline_with_sip};

/// The address legitimate SIPp instances send from (SIPp's default is 127.0.0.1).
const OTHER_IP: &str = "127.0.0.3";

fn count(h: &Hotline, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
    Counters::get(f(h.sip.counters()))
}

/// Waits (bounded) until a counter reaches `at_least`.
async fn counter_reaches(
    h: &Hotline,
    f: impl Fn(&Counters) -> &AtomicU64,
    at_least: u64,
) -> anyhow::Result<()> {
    let wait = async {
        while count(h, &f) < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        bail!("counter stayed at {} (< {at_least})", count(h, &f));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_address_is_blocked_while_another_still_registers() -> anyhow::Result<()> {
    let h = start_hotline_with_sip("[sip.guard]\nrate = 50\nburst = 100\nblock_secs = 60\n", "")
        .await?;
    let server = Proto::Udp.server_addr(&h);
    // 10 000 OPTIONS at up to 2 000/s from 127.0.0.1: several seconds of flood.
    let flood = SippBuilder::new("flood", "options_flood.xml", Proto::Udp, free_port())
        .set("-m", "10000")
        .args(["-r", "2000", "-l", "10000"])
        .spawn(Some(server))?;
    counter_reaches(&h, |c| &c.flood_blocked, 1).await?;
    let dropped_before = count(&h, |c| &c.guard_dropped);
    // Meanwhile alice registers, refreshes and unregisters 10 times from 127.0.0.3.
    SippBuilder::new("legit", "register_auth.xml", Proto::Udp, free_port())
        .set("-i", OTHER_IP)
        .set("-m", "10")
        .args(["-r", "5", "-s", "alice", "-au", "alice", "-ap", "alice-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let dropped_during = count(&h, |c| &c.guard_dropped) - dropped_before;
    flood.expect_success().await?;
    ensure!(
        dropped_during > 0,
        "the flood was not going on while alice registered"
    );
    ensure!(
        count(&h, |c| &c.flood_blocked) == 1,
        "one block, logged once"
    );
    ensure!(
        count(&h, |c| &c.registered) >= 30,
        "alice's 10 × (register, refresh, unregister) all answered 200"
    );
    let dropped = count(&h, |c| &c.guard_dropped);
    eprintln!("flood: {dropped} of 10000 dropped, {dropped_during} while alice registered");
    ensure!(
        dropped >= 10000 - 100 - 1000,
        "only {dropped} of the flood's 10 000 dropped"
    );
    h.shutdown().await;
    Ok(())
}

/// The issue's scenario: calls at 50/s from one address while another floods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_at_50_per_second_succeed_during_a_flood() -> anyhow::Result<()> {
    // A caller at 50 calls/s sends 4 requests per call (INVITE twice, ACK, BYE).
    let h = start_hotline_with_sip(
        "[sip.guard]\nrate = 300\nburst = 300\nblock_secs = 60\n",
        "",
    )
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let bob_port = free_port();
    SippBuilder::new("bob-register", "register_once.xml", Proto::Udp, bob_port)
        .set("-i", OTHER_IP)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let callee = SippBuilder::new("bob-uas", "uas_call.xml", Proto::Udp, bob_port)
        .set("-i", OTHER_IP)
        .set("-m", "200")
        .args(["-s", "bob"])
        .spawn_bound()
        .await?; // is_bound reads /proc by port only, whatever the address.
    let flood = SippBuilder::new("flood", "options_flood.xml", Proto::Udp, free_port())
        .set("-m", "12000")
        .args(["-r", "2000", "-l", "12000"])
        .spawn(Some(server))?;
    counter_reaches(&h, |c| &c.flood_blocked, 1).await?;
    let dropped_before = count(&h, |c| &c.guard_dropped);
    // 200 calls at 50/s: all must succeed (SIPp exits 0 only then).
    SippBuilder::new("alice-uac", "uac_call.xml", Proto::Udp, free_port())
        .set("-i", OTHER_IP)
        .set("-m", "200")
        .args(["-r", "50", "-s", "bob", "-au", "alice", "-ap", "alice-pw"])
        .args(["-key", "caller", "alice"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    callee.expect_success().await?;
    let dropped_during = count(&h, |c| &c.guard_dropped) - dropped_before;
    flood.expect_success().await?;
    eprintln!("calls: 200 of 200 at 50/s, {dropped_during} flood requests dropped meanwhile");
    ensure!(
        dropped_during > 0,
        "the flood was not going on during the calls"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_lock_the_source_out() -> anyhow::Result<()> {
    let h = start_hotline_with_sip(
        "[sip.guard]\nauth_failures = 3\nauth_window_secs = 60\nlockout_secs = 60\n",
        "",
    )
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let port = free_port();
    // Three guesses: each challenged (401) and refused (403).
    SippBuilder::new("guess", "register_wrong_password.xml", Proto::Udp, port)
        .set("-m", "3")
        .args(["-s", "alice", "-au", "alice", "-ap", "guess"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    ensure!(count(&h, |c| &c.lockouts) == 1);
    // The fourth try gets no 401: SIPp times out waiting for it.
    let dropped_before = count(&h, |c| &c.guard_dropped);
    let status = SippBuilder::new("locked", "register_wrong_password.xml", Proto::Udp, port)
        .set("-timeout", "3s")
        .args(["-s", "alice", "-au", "alice", "-ap", "guess"])
        .spawn(Some(server))?
        .wait()
        .await?;
    ensure!(!status.success(), "a locked-out source was answered");
    ensure!(count(&h, |c| &c.guard_dropped) > dropped_before);
    // alice herself, from another address, is not locked out.
    SippBuilder::new("alice", "register_auth.xml", Proto::Udp, free_port())
        .set("-i", OTHER_IP)
        .args(["-s", "alice", "-au", "alice", "-ap", "alice-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_user_agent_gets_no_answer() -> anyhow::Result<()> {
    let h = start_hotline_with_sip("", "").await?;
    let server = Proto::Udp.server_addr(&h);
    let status = SippBuilder::new("scanner", "options_user_agent.xml", Proto::Udp, free_port())
        .set("-timeout", "3s")
        .args(["-s", "friendly-scanner"])
        .spawn(Some(server))?
        .wait()
        .await?;
    ensure!(!status.success(), "the scanner was answered");
    ensure!(count(&h, |c| &c.scanners_dropped) >= 1);
    // The same request with an ordinary agent is answered.
    SippBuilder::new("probe", "options_user_agent.xml", Proto::Udp, free_port())
        .args(["-s", "SIPp"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    h.shutdown().await;
    Ok(())
}
