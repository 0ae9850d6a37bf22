//! The call task's side of a voicemail box: plays the greeting and the beep, records the
//! caller (mono WAV, written off the relay's path) and, when the message ends, stores it
//! (message row, CDR fields, queue log, `voicemail.left`). The decisions are
//! [`crate::voicemail::Run`]'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_cdr::{QueueEventKind, VoicemailMessage};
use hotline_media::Prompt;
use hotline_media::recorder::{RecordingJob, VoiceActivity, start_mono_recording};

use super::{Call, EndReason, Phase, State};
use crate::incall::Outcome;
use crate::voicemail::{Action, EndedBy, Input, Run, VoicemailBox};

/// A caller in a box.
pub(super) struct InBox {
    vm: Arc<VoicemailBox>,
    run: Run,
    /// The running recording, its voice activity and its start (Unix ms).
    rec: Option<(RecordingJob, VoiceActivity, i64)>,
}

/// Sends the call to box `name`: greeting then beep; the recording starts when they end.
pub(super) async fn enter(call: &Call, name: String, st: &mut State) -> Option<EndReason> {
    let Some(vm) = call.cfg.voicemail.get(&name).cloned() else {
        // Config validation refuses unknown boxes; a live edit could still race.
        tracing::warn!(call_id = %call.call_id, mailbox = %name, "unknown voicemail box");
        return Some(EndReason::Failed);
    };
    st.deadline = None;
    let beep = Prompt::from_samples(hotline_media::prompts::beep());
    let greeting = vec![vm.greeting.clone(), beep];
    st.phase = Phase::Voicemail(Box::new(InBox {
        run: Run::new(&vm),
        vm,
        rec: None,
    }));
    tracing::info!(call_id = %call.call_id, mailbox = %name, "caller in voicemail");
    call.play(st, greeting).await
}

/// The greeting and beep have played.
pub(super) async fn greeting_played(call: &Call, st: &mut State) -> Outcome {
    step(call, Input::GreetingPlayed, st).await
}

/// A key from the caller.
pub(super) async fn key(call: &Call, d: char, st: &mut State) -> Outcome {
    step(call, Input::Key(d), st).await
}

/// The box's deadline (limit or silence) passed.
pub(super) async fn tick(call: &Call, st: &mut State) -> Outcome {
    let last_voice = match &st.phase {
        Phase::Voicemail(b) => b.rec.as_ref().and_then(|(_, a, _)| a.last_voice()),
        _ => None,
    };
    step(call, Input::Tick { last_voice }, st).await
}

/// The call ends while in the box (the caller hung up, or Hotline stops): what was
/// recorded is kept as the message if long enough.
pub(super) async fn hangup(call: &Call, st: &mut State) {
    if matches!(st.phase, Phase::Voicemail(_)) {
        step(call, Input::Hangup, st).await;
    }
}

async fn step(call: &Call, input: Input, st: &mut State) -> Outcome {
    let Phase::Voicemail(b) = &mut st.phase else {
        return Outcome::Continue;
    };
    match b.run.handle(input, Instant::now()) {
        Action::Nothing => {
            st.deadline = b.run.deadline().map(tokio::time::Instant::from_std);
            Outcome::Continue
        }
        Action::Record => {
            if let Err(e) = start(call, st).await {
                tracing::warn!(call_id = %call.call_id, error = %e, "cannot record voicemail");
                return Outcome::End(EndReason::Failed);
            }
            Outcome::Continue
        }
        Action::End { by, recorded, keep } => {
            st.deadline = None;
            let saved = recorded && stop(call, st, by, keep).await;
            if by == EndedBy::Hangup {
                return Outcome::Continue;
            }
            // Ended by Hotline (key, limit, silence): goodbye, then BYE.
            let then = if saved {
                EndReason::Voicemail
            } else {
                EndReason::Hangup
            };
            st.phase = Phase::Message { then };
            st.trace.settled = Some(then);
            let goodbye = match call.cfg.voice.as_ref() {
                Some(v) => v.goodbye.clone(),
                None => Prompt::from_samples(hotline_media::prompts::beep()),
            };
            call.play(st, vec![goodbye])
                .await
                .map_or(Outcome::Continue, Outcome::End)
        }
    }
}

/// Opens the message's file and feeds the caller's audio to it.
async fn start(call: &Call, st: &mut State) -> Result<(), hotline_media::MediaError> {
    let Phase::Voicemail(b) = &mut st.phase else {
        return Ok(());
    };
    std::fs::create_dir_all(&b.vm.dir)?;
    let name = super::file_safe(&call.call_id);
    let at = call.now_ms();
    let path = b.vm.dir.join(format!("{}-{at}-{name}.wav", b.vm.name));
    let (tap, job, activity) = start_mono_recording(&path, 200, Instant::now())?;
    st.media.record(Some(tap)).await?;
    b.rec = Some((job, activity, at));
    st.deadline = b.run.deadline().map(tokio::time::Instant::from_std);
    tracing::debug!(call_id = %call.call_id, path = %path.display(), "recording voicemail");
    Ok(())
}

/// Stops the recording; stores the message when `keep` (else removes the file). True if
/// a message was stored.
async fn stop(call: &Call, st: &mut State, by: EndedBy, keep: bool) -> bool {
    let Phase::Voicemail(b) = &mut st.phase else {
        return false;
    };
    let Some((job, _, recorded_at)) = b.rec.take() else {
        return false;
    };
    let vm = b.vm.clone();
    // The call's own recording (a transferred call) goes on where it was.
    let resume = st.recording_tap.clone().filter(|_| !st.recording_paused);
    let _ = st.media.record(resume).await;
    let rec = match job.finish().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, error = %e, "voicemail recording failed");
            return false;
        }
    };
    if !keep {
        tracing::info!(call_id = %call.call_id, mailbox = %vm.name, "voicemail too short; discarded");
        let _ = std::fs::remove_file(&rec.path);
        return false;
    }
    let duration_ms = i64::try_from(rec.duration.as_millis()).unwrap_or(i64::MAX);
    let t = &st.trace;
    let msg = VoicemailMessage {
        call_id: call.call_id.clone(),
        mailbox: vm.name.clone(),
        queue: t.queue.clone(),
        caller: t.caller.clone(),
        caller_name: t.caller_name.clone(),
        recorded_at,
        duration_ms,
        path: rec.path.display().to_string(),
        ended_by: by.as_str().into(),
        listened_at: None,
        deleted_at: None,
    };
    if let Err(e) = call.cfg.cdr.voicemail(msg).await {
        tracing::warn!(call_id = %call.call_id, error = %e, "voicemail message not stored");
    }
    call.queue_log(
        t,
        QueueEventKind::Voicemail,
        None,
        format!("{},{},{}", vm.name, duration_ms / 1000, by.as_str()),
    );
    // Supervisors who see the event can list the message: wait (bounded) for the commit.
    let _ = tokio::time::timeout(Duration::from_secs(2), call.cfg.cdr.flush()).await;
    call.desk.voicemail_left(crate::VoicemailLeft {
        call_id: call.call_id.clone(),
        mailbox: vm.name.clone(),
        queue: t.queue.clone(),
        caller: t.caller.clone(),
        caller_name: t.caller_name.clone(),
        duration_ms,
        ended_by: by.as_str().into(),
    });
    tracing::info!(call_id = %call.call_id, mailbox = %vm.name, duration_ms, ended_by = by.as_str(), "voicemail left");
    st.trace.recording = Some(rec.path);
    st.trace.settled = Some(EndReason::Voicemail);
    true
}
