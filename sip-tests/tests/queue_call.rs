//! A SIPp caller dialling a queue number that Hotline answers itself (the B2BUA): 200 with
//! Hotline's SDP, music on hold from Hotline's RTP port, BYE; afterwards no call task, no
//! SIP dialog and no RTP port is left behind.

use anyhow::Context;
use hotline_sip_tests::calls::{
    agent, caller, device, next_end, nothing_left, register, start_for_calls,
};
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port, media, start_hotline_with};
use hotline_switch::EndReason;

const QUEUE: &str = "[[numbers]]\nnumber = \"4000\"\nqueue = \"support\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hears_music_in_queue_then_hangs_up_udp() -> anyhow::Result<()> {
    music_in_queue(Proto::Udp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hears_music_in_queue_then_hangs_up_tcp() -> anyhow::Result<()> {
    music_in_queue(Proto::Tcp).await
}

async fn music_in_queue(proto: Proto) -> anyhow::Result<()> {
    let mut h = start_hotline_with(&(media(100) + QUEUE)).await?;
    let server = proto.server_addr(&h);
    let switch = h
        .switch
        .as_mut()
        .context("numbers configured: switch runs")?;
    let mut ended = switch.take_ended().context("ended reports")?;
    SippBuilder::new("queue-caller", "uac_queue_call.xml", proto, free_port())
        .args([
            "-s", "4000", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert_eq!(end.status, 200);
    let media = end.media.context("answered call has media counters")?;
    // 2 s of music at 20 ms per packet is 100 packets; allow for a loaded machine.
    assert!(
        media.a.tx_packets >= 50,
        "music packets sent to the caller: {}",
        media.a.tx_packets
    );
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.stats().total_calls(), 1);
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(switch.sip_dialogs().await?, 0, "SIP dialogs left behind");
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacceptable_offer_is_488_and_leaves_nothing_udp() -> anyhow::Result<()> {
    let mut h = start_hotline_with(&(media(100) + QUEUE)).await?;
    let server = Proto::Udp.server_addr(&h);
    let switch = h.switch.as_mut().context("switch")?;
    let mut ended = switch.take_ended().context("ended reports")?;
    SippBuilder::new(
        "queue-bad-sdp",
        "uac_queue_bad_sdp.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4000", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!((end.status, end.reason), (488, EndReason::Rejected));
    assert!(end.media.is_none());
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(switch.sip_dialogs().await?, 0);
    h.shutdown().await;
    Ok(())
}

/// Number → extension: the caller is answered (music), Hotline INVITEs bob's registered
/// contact (a SIPp UAS echoing RTP) with its own SDP, bob answers and the legs are bridged:
/// the caller's RTP goes to bob and bob's echo comes back through Hotline. The caller's BYE
/// is answered and passed on to bob as Hotline's BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_extension_is_bridged_and_released_on_both_legs_udp() -> anyhow::Result<()> {
    Bridged {
        config: "[[numbers]]\nnumber = \"4001\"\nextension = \"bob\"\n",
        number: "4001",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        relayed: 30,
        shared_rtp: false,
        kernel: Kernel::Off,
    }
    .run()
    .await
}

const ACD: &str = "[[numbers]]\nnumber = \"4002\"\nqueue = \"support\"\n\
                   [acd]\n[[acd.queue]]\nname = \"support\"\n\
                   [[acd.agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
                   [[acd.agent]]\nid = \"carol\"\nqueues = { support = 1 }\n";

/// Number → queue with the ACD: the caller enters the queue, the ACD offers the call to
/// bob (first tier, logged in and ready), Hotline INVITEs bob's registered contact and
/// bridges on answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_call_is_offered_to_the_agent_and_bridged_udp() -> anyhow::Result<()> {
    Bridged {
        config: ACD,
        number: "4002",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        relayed: 30,
        shared_rtp: false,
        kernel: Kernel::Off,
    }
    .run()
    .await
}

/// The same with `[media] shared_rtp_port`: the caller's and the agent's RTP come and go
/// on the one shared port (each one's SDP names the address its signalling came from),
/// and the call's end leaves no leg on the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_call_with_both_legs_on_the_shared_rtp_port_udp() -> anyhow::Result<()> {
    Bridged {
        config: ACD,
        number: "4002",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        relayed: 30,
        shared_rtp: true,
        kernel: Kernel::Off,
    }
    .run()
    .await
}

/// With `[media] kernel_relay = ["lo"]` (and no recording): once bridged, the caller's
/// audio and the agent's echo are forwarded by the in-kernel relay, with the same counts
/// at the call's end as if Hotline had relayed them, and nothing left in the kernel.
/// Needs root (CAP_BPF, CAP_NET_ADMIN) and a build with clang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_call_bridged_through_the_kernel_relay_udp() -> anyhow::Result<()> {
    Bridged {
        config: ACD,
        number: "4002",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        relayed: 30,
        shared_rtp: false,
        kernel: Kernel::Unrecorded,
    }
    .run()
    .await
}

/// The same on the shared RTP port (the kernel keys flows by the peer's address too),
/// recorded: the kernel copies the audio to the recorder, and the call's WAV has both
/// sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_call_on_the_shared_port_bridged_through_the_kernel_relay_udp() -> anyhow::Result<()>
{
    Bridged {
        config: ACD,
        number: "4002",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        relayed: 30,
        shared_rtp: true,
        kernel: Kernel::Recorded,
    }
    .run()
    .await
}

/// With `[media] shared_rtp_port`, an agent whose answer names a media address other than
/// the one its signalling comes from (SIPp's media on 127.0.0.2, as a phone behind NAT
/// gives its private one) would not be heard on the shared port: Hotline moves it to a
/// pair of its own with a re-INVITE (which the first UAS scenario requires), the call's
/// media flows both ways, and the phone's next call is offered a pair at once (the plain
/// UAS scenario fails on a re-INVITE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_whose_media_does_not_fit_the_shared_port_is_moved_to_a_pair_udp()
-> anyhow::Result<()> {
    let config = format!("shared_rtp_port = {}\n{ACD}", free_port());
    let (h, server, mut ended) = start_for_calls("", 100, &config).await?;
    let port = free_port();
    register(server, "bob", port).await?;
    let mut caller_rx = 0;
    for scenario in ["uas_call_moved.xml", "uas_call.xml"] {
        let uas = device("bob", port, scenario, |b| {
            b.args(["-rtp_echo", "-mi", "127.0.0.2"])
        })
        .await?;
        caller(server, "4002", "uac_call_with_audio.xml", &[])?
            .expect_success()
            .await?;
        uas.expect_success().await?;
        let end = next_end(&mut ended).await?;
        assert_eq!(end.reason, EndReason::CallerHangup, "{scenario}: {end:?}");
        assert!(end.bridged, "{scenario}: {end:?}");
        let media = end.media.context("media counters")?;
        let b = media.b.context("agent leg attached")?;
        assert!(
            b.tx_packets >= 30,
            "{scenario}: caller RTP to the agent: {media:?}"
        );
        assert!(
            b.rx_packets >= 15,
            "{scenario}: the agent's echo: {media:?}"
        );
        caller_rx += media.a.rx_packets;
    }
    let port = h
        .switch
        .as_ref()
        .and_then(|s| s.shared_rtp())
        .context("shared port")?;
    // The callers were heard there; the agent's echo answers the port Hotline sends
    // from, so it reached Hotline (b.rx above) only because the leg left the shared port.
    assert!(port.routed >= caller_rx, "{port:?}");
    assert_eq!((port.legs, port.overflow), (0, 0), "{port:?}");
    nothing_left(&h).await?;
    h.shutdown().await;
    Ok(())
}

/// bob declines (486): the ACD requeues the call and offers it to carol, who answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_offer_goes_to_the_next_agent_udp() -> anyhow::Result<()> {
    Bridged {
        config: ACD,
        number: "4002",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_reject.xml"), ("carol", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        relayed: 30,
        shared_rtp: false,
        kernel: Kernel::Off,
    }
    .run()
    .await
}

/// bob lets the offer ring past the queue's ring timeout (1 s): the ACD withdraws it
/// (Hotline CANCELs bob's INVITE, bob answers 487) and offers the call to carol, who answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_offer_times_out_and_goes_to_the_next_agent_udp() -> anyhow::Result<()> {
    Bridged {
        config: "[[numbers]]\nnumber = \"4003\"\nqueue = \"sales\"\n\
                 [acd]\n[[acd.queue]]\nname = \"sales\"\nring_timeout_secs = 1\n\
                 [[acd.agent]]\nid = \"bob\"\nqueues = { sales = 0 }\n\
                 [[acd.agent]]\nid = \"carol\"\nqueues = { sales = 1 }\n",
        number: "4003",
        caller: "uac_call_with_audio.xml",
        agents: &[("bob", "uas_cancel.xml"), ("carol", "uas_call.xml")],
        reason: EndReason::CallerHangup,
        // Bridged after the 1 s ring timeout: about 1 s of the caller's 2 s of audio.
        relayed: 15,
        shared_rtp: false,
        kernel: Kernel::Off,
    }
    .run()
    .await
}

/// The agent hangs up: Hotline answers the agent's BYE and sends its own BYE to the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hangup_releases_the_caller_udp() -> anyhow::Result<()> {
    Bridged {
        config: ACD,
        number: "4002",
        caller: "uac_call_hung_up_on.xml",
        agents: &[("bob", "uas_answer_then_bye.xml")],
        reason: EndReason::AgentHangup,
        relayed: 30,
        shared_rtp: false,
        kernel: Kernel::Off,
    }
    .run()
    .await
}

/// A bridged call between a SIPp caller streaming audio and registered SIPp agents (UAS
/// echoing RTP), with what must hold afterwards.
struct Bridged {
    config: &'static str,
    number: &'static str,
    caller: &'static str,
    /// (user, UAS scenario), each registered from its own port.
    agents: &'static [(&'static str, &'static str)],
    reason: EndReason,
    /// Fewest caller packets that must reach the agent (the bridge may start late).
    relayed: u64,
    /// With `[media] shared_rtp_port`: both legs' RTP must come in on the shared port
    /// (their SDP names the address their signalling came from), and leave no leg there.
    shared_rtp: bool,
    /// With `[media] kernel_relay = ["lo"]`: the bridged audio must go through the
    /// in-kernel relay, which has no flow left afterwards.
    kernel: Kernel,
}

/// Whether a [`Bridged`] call uses the in-kernel relay, and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Off,
    Unrecorded,
    Recorded,
}

impl Bridged {
    async fn run(self) -> anyhow::Result<()> {
        let mut config = match self.shared_rtp {
            true => format!("shared_rtp_port = {}\n{}", free_port(), self.config),
            false => self.config.to_string(),
        };
        let recordings = std::env::temp_dir().join(format!(
            "hotline-kr-rec-{}-{}",
            std::process::id(),
            free_port()
        ));
        match self.kernel {
            Kernel::Off => {}
            Kernel::Unrecorded => {
                config = format!("record = false\nkernel_relay = [\"lo\"]\n{config}");
            }
            Kernel::Recorded => {
                config = format!(
                    "record = true\nrecordings = \"{}\"\nkernel_relay = [\"lo\"]\n{config}",
                    recordings.display()
                );
            }
        }
        let (h, server, mut ended) = start_for_calls("", 100, &config).await?;
        let mut uas = Vec::new();
        for (user, scenario) in self.agents {
            uas.push(agent(server, user, scenario, &["-rtp_echo"]).await?);
        }
        caller(server, self.number, self.caller, &[])?
            .expect_success()
            .await?;
        for a in uas {
            a.expect_success().await?;
        }
        let end = next_end(&mut ended).await?;
        assert_eq!(end.reason, self.reason, "{end:?}");
        assert!(end.bridged, "agent leg bridged: {end:?}");
        let media = end.media.context("media counters")?;
        let b = media.b.context("agent leg attached")?;
        // 1.5-2 s of caller audio at 20 ms: 75-100 packets; allow for a loaded machine.
        assert!(
            media.a.rx_packets >= 30,
            "caller RTP into Hotline: {media:?}"
        );
        assert!(
            b.tx_packets >= self.relayed,
            "caller RTP relayed to the agent: {media:?}"
        );
        assert!(
            b.rx_packets >= self.relayed / 2,
            "agent's echo back into Hotline: {media:?}"
        );
        let kernel = h.switch.as_ref().and_then(|s| s.kernel_relay());
        assert_eq!(kernel.is_some(), self.kernel != Kernel::Off, "{kernel:?}");
        if let Some(k) = kernel {
            // All but the first packets of each direction (which set the rewrite in
            // user space) and whatever came before the bridge.
            assert!(
                k.forwarded >= self.relayed + self.relayed / 2,
                "the bridged audio went through the kernel: {k:?}, {media:?}"
            );
            assert_eq!(k.flows, 0, "the call's end took its flows back: {k:?}");
        }
        if self.kernel == Kernel::Recorded {
            let path = end
                .recording
                .as_ref()
                .context("recorded call has a recording")?;
            let wav = hound::WavReader::open(path)?;
            assert_eq!(wav.spec().channels, 2);
            let samples: Vec<i16> = wav.into_samples::<i16>().collect::<Result<_, _>>()?;
            // Both sides heard through most of the call: non-silent samples on the left
            // (the caller's audio) and the right (the agent's echo of it), at least as
            // many as the relayed packets carried (160 samples each).
            let loud = |ch: usize| {
                samples
                    .iter()
                    .skip(ch)
                    .step_by(2)
                    .filter(|s| s.abs() > 8)
                    .count()
            };
            let want = self.relayed as usize * 160;
            assert!(
                loud(0) >= want && loud(1) >= want,
                "caller {} and agent {} loud samples, want {want} each",
                loud(0),
                loud(1)
            );
            let _ = std::fs::remove_dir_all(&recordings);
        }
        let port = h.switch.as_ref().and_then(|s| s.shared_rtp());
        assert_eq!(port.is_some(), self.shared_rtp, "{port:?}");
        if let Some(port) = port {
            // What the kernel forwarded never reached the port's socket.
            let in_kernel = kernel.map_or(0, |k| k.forwarded);
            assert!(
                port.routed + in_kernel >= media.a.rx_packets + b.rx_packets,
                "both legs' RTP came in on the shared port: {port:?}, {kernel:?}, {media:?}"
            );
            let left = (port.legs, port.overflow, port.crossed);
            assert_eq!(left, (0, 0, 0), "{port:?}");
        }
        nothing_left(&h).await?;
        h.shutdown().await;
        Ok(())
    }
}

/// The caller hangs up while the ACD's offer rings the agent: Hotline CANCELs the agent's
/// INVITE (the agent sees CANCEL, answers 487 and gets its ACK), and nothing is left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hangup_while_agent_rings_cancels_the_agent_udp() -> anyhow::Result<()> {
    let mut h = start_hotline_with(&(media(100) + ACD)).await?;
    let server = Proto::Udp.server_addr(&h);
    let switch = h.switch.as_mut().context("switch")?;
    let mut ended = switch.take_ended().context("ended reports")?;
    let port = free_port();
    SippBuilder::new("bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let agent = SippBuilder::new("bob-rings", "uas_cancel.xml", Proto::Udp, port)
        .args(["-s", "bob"])
        .spawn_bound()
        .await?;
    SippBuilder::new(
        "impatient-caller",
        "uac_queue_call.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4002", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    agent.expect_success().await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert!(!end.bridged, "{end:?}");
    let media = end.media.context("media counters")?;
    assert!(media.b.is_none(), "no agent leg attached: {media:?}");
    assert!(media.a.tx_packets >= 50, "music while waiting: {media:?}");
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(
        switch.ports().in_use(),
        0,
        "RTP ports leaked (agent leg's pair too)"
    );
    assert_eq!(switch.sip_dialogs().await?, 0, "SIP dialogs left behind");
    h.shutdown().await;
    Ok(())
}

/// Nobody serves the queue and its `max_wait_secs` (1 s) passes: the ACD sends the call to
/// its fallback (hang up), Hotline sends BYE to the caller after the music, and nothing is
/// left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_fallback_hangs_up_the_caller_udp() -> anyhow::Result<()> {
    let mut h = start_hotline_with(
        &(media(100)
            + "\
         [[numbers]]\nnumber = \"4004\"\nqueue = \"night\"\n\
         [acd]\n[[acd.queue]]\nname = \"night\"\nmax_wait_secs = 1\n"),
    )
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let switch = h.switch.as_mut().context("switch")?;
    let mut ended = switch.take_ended().context("ended reports")?;
    caller_audio()?;
    SippBuilder::new(
        "waiting-caller",
        "uac_call_hung_up_on.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4004", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::Fallback, "{end:?}");
    let media = end.media.context("media counters")?;
    // About 1 s of music (50 packets) before the fallback.
    assert!(media.a.tx_packets >= 25, "music while waiting: {media:?}");
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(switch.sip_dialogs().await?, 0, "SIP dialogs left behind");
    h.shutdown().await;
    Ok(())
}
