//! Toll-fraud guard on the transfer path: an agent's phone that REFERs the caller to an
//! outside number no `[[dial_rules]]` pattern allows gets 403, the call stays as it was
//! (the agent then hangs up, which releases the caller).

use std::time::Duration;

use anyhow::Context;
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port, start_hotline_with};
use hotline_switch::EndReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refer_to_a_number_outside_the_dial_rules_is_403() -> anyhow::Result<()> {
    let mut h = start_hotline_with(
        &(hotline_sip_tests::media(200)
            + "\
         [[numbers]]\nnumber = \"4960\"\nextension = \"bob\"\n\
         [[dial_rules]]\nrole = \"agent\"\nallow = ['\\+49[1-9]\\d{6,12}']\n"),
    )
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let sw = h.switch.as_mut().context("switch")?;
    let mut ended = sw.take_ended().context("ended reports")?;
    let port = free_port();
    SippBuilder::new("tf-bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    // A satellite number: premium-rate fraud's favourite, not in the agent's rules.
    let bob = SippBuilder::new("tf-bob", "uas_refer_refused.xml", Proto::Udp, port)
        .args(["-s", "bob", "-rtp_echo", "-key", "target", "+88216123456"])
        .spawn_bound()
        .await?;
    caller_audio()?;
    let caller = SippBuilder::new(
        "tf-caller",
        "uac_call_hung_up_on.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4960", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(server))?;
    bob.expect_success().await?;
    caller.expect_success().await?;
    let end = tokio::time::timeout(Duration::from_secs(10), ended.recv())
        .await
        .context("no call end")?
        .context("switch stopped")?;
    // Not transferred: bob's own BYE ended the call.
    assert_eq!(end.reason, EndReason::AgentHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    assert_eq!(end.agent.as_deref(), Some("bob"), "{end:?}");
    h.shutdown().await;
    Ok(())
}
