//! A real softphone as the agent: baresip registers as `bob` (digest auth), auto-answers
//! the call Hotline places for a caller (SIPp with audio), and the legs are bridged both
//! ways; the caller's BYE makes Hotline hang up baresip. `sip-tests/run-tests.sh` installs
//! baresip when it is missing.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use hotline_sip::Counters;
use hotline_sip_tests::{Proto, SippBuilder, free_port, out_dir, start_hotline_with};
use hotline_switch::EndReason;
use tokio::process::Command;

/// baresip's configuration: loopback only, G.711, no sound card: its `aubridge` device
/// plays what it hears back as its microphone (the phone echoes), the account
/// auto-answering.
fn write_config(
    dir: &Path,
    sip_port: u16,
    rtp: u16,
    server: std::net::SocketAddr,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let heard = dir.join("heard.wav");
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nsip_trans_def udp\n\
             net_interface 127.0.0.1\n\
             audio_player aubridge,hotline\naudio_source aubridge,hotline\n\
             audio_alert aufile,{}\nrtp_ports {rtp}-{}\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule aubridge.so\n\
             module_app account.so\nmodule_app menu.so\n",
            heard.display(),
            rtp + 9
        ),
    )?;
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:bob@{server}>;auth_pass=bob-pw;answermode=auto;regint=600\n"),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_agent_auto_answers_and_is_bridged_udp() -> anyhow::Result<()> {
    let mut h = start_hotline_with(
        &(hotline_sip_tests::media(200)
            + "\
         [[numbers]]\nnumber = \"4201\"\nextension = \"bob\"\n"),
    )
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let mut ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended")?;
    let dir = out_dir().join(format!("baresip-{}", std::process::id()));
    write_config(&dir, free_port(), 44000, server)?;
    // Its output (with SIP trace) stays next to SIPp's logs for a failing run.
    let log = std::fs::File::create(dir.join("baresip.log"))?;
    let mut baresip = Command::new("baresip")
        .arg("-s")
        .arg("-f")
        .arg(&dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawning baresip (sip-tests/run-tests.sh installs it)")?;
    // Registered once Hotline's registrar has accepted it (digest challenge first).
    let registered = async {
        while Counters::get(&h.sip.counters().registered) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), registered)
        .await
        .is_err()
    {
        let _ = baresip.kill().await;
        bail!(
            "baresip did not register within 10 s (see {})",
            dir.join("baresip.log").display()
        );
    }
    hotline_sip_tests::caller_audio()?;
    SippBuilder::new("caller", "uac_call_audio_long.xml", Proto::Udp, free_port())
        .args([
            "-s", "4201", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d",
            "3000",
        ])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let end = tokio::time::timeout(Duration::from_secs(20), ended.recv())
        .await
        .context("call ended in time")?
        .context("switch running")?;
    let _ = baresip.kill().await;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(end.bridged, "{end:?}");
    let media = end.media.context("media")?;
    let b = media.b.context("baresip's leg")?;
    assert!(
        b.tx_packets >= 50,
        "caller audio relayed to baresip: {media:?}"
    );
    assert!(b.rx_packets >= 50, "baresip's echo into Hotline: {media:?}");
    assert!(
        media.a.tx_packets >= 50,
        "baresip's echo relayed to the caller: {media:?}"
    );
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(switch.sip_dialogs().await?, 0, "SIP dialogs left behind");
    h.shutdown().await;
    Ok(())
}
