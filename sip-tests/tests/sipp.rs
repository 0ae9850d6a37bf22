//! Hotline against SIPp over UDP and TCP: registration with digest auth, calls between
//! registered users, CANCEL while ringing. Each test starts its own Hotline on ephemeral
//! ports and asserts SIPp's exit status (0 = every call of the scenario succeeded).

use hotline_sip_tests::{Proto, SippBuilder, free_port, start_hotline};

async fn register_refresh_unregister(proto: Proto) -> anyhow::Result<()> {
    let h = start_hotline().await?;
    let server = proto.server_addr(&h);
    SippBuilder::new("register", "register_auth.xml", proto, free_port())
        .args(["-s", "alice", "-au", "alice", "-ap", "alice-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_digest_refresh_and_unregister_udp() -> anyhow::Result<()> {
    register_refresh_unregister(Proto::Udp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_digest_refresh_and_unregister_tcp() -> anyhow::Result<()> {
    register_refresh_unregister(Proto::Tcp).await
}

async fn wrong_password(proto: Proto) -> anyhow::Result<()> {
    let h = start_hotline().await?;
    let server = proto.server_addr(&h);
    SippBuilder::new("wrongpw", "register_wrong_password.xml", proto, free_port())
        .args(["-s", "alice", "-au", "alice", "-ap", "not-the-password"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_wrong_password_is_403_udp() -> anyhow::Result<()> {
    wrong_password(Proto::Udp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_wrong_password_is_403_tcp() -> anyhow::Result<()> {
    wrong_password(Proto::Tcp).await
}

/// Registers bob from `port` with SIPp (digest auth), then runs `uas` on that port and
/// `uac` as alice calling bob through Hotline.
async fn call(proto: Proto, uac: &str, uas: &str) -> anyhow::Result<()> {
    let h = start_hotline().await?;
    let server = proto.server_addr(&h);
    let bob_port = free_port();
    SippBuilder::new("bob-register", "register_once.xml", proto, bob_port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let callee = SippBuilder::new("bob-uas", uas, proto, bob_port)
        .args(["-s", "bob"])
        .spawn_bound()
        .await?;
    let caller = SippBuilder::new("alice-uac", uac, proto, free_port())
        .args([
            "-s", "bob", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .spawn(Some(server))?;
    caller.expect_success().await?;
    callee.expect_success().await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_between_registered_users_udp() -> anyhow::Result<()> {
    call(Proto::Udp, "uac_call.xml", "uas_call.xml").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_between_registered_users_tcp() -> anyhow::Result<()> {
    call(Proto::Tcp, "uac_call.xml", "uas_call.xml").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_while_ringing_udp() -> anyhow::Result<()> {
    call(Proto::Udp, "uac_cancel.xml", "uas_cancel.xml").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_while_ringing_tcp() -> anyhow::Result<()> {
    call(Proto::Tcp, "uac_cancel.xml", "uas_cancel.xml").await
}
