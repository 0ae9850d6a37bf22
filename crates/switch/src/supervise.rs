//! Supervisor monitor / whisper / barge on an agent's live call (issue #7). Hotline calls
//! the supervisor's device (their registered SIP contact, or the desk's WebRTC phone) and,
//! once it answers, adds its leg to the call's media session in the mode asked for (the
//! hear-matrix in `hotline_media::mix`). The mode changes live; the supervisor leaving
//! ends only their leg; the call ending (or the agent leaving it) ends it too. Each start,
//! mode change and stop is a `SUPERVISE` queue-log line: agent = the supervisor, data =
//! `<mode|stop> <agent>`.
//!
//! A child module of `call` so that it reads the call's state without widening it.

use hotline_cdr::QueueEventKind;
use hotline_media::mix::SuperviseMode;
use hotline_sip::AppEvent;
use hotline_sip::msg::{self, Response};

use super::{AgentLeg, Call, State, event_call_id};
use crate::SwitchError as E;
use crate::incall;

/// The supervisor's leg on this call.
pub(crate) struct Supervisor {
    /// The supervisor's SIP user (who asked).
    pub user: String,
    pub mode: SuperviseMode,
    pub leg: AgentLeg,
    /// The Call-ID of the agent leg being supervised: another agent leg (transfer) ends
    /// the supervision.
    pub agent_call: String,
    /// The leg is in the media session.
    pub joined: bool,
}

impl Supervisor {
    pub(crate) fn owns(&self, ev: &AppEvent) -> bool {
        event_call_id(ev) == Some(self.leg.call_id.as_str())
    }
}

impl Call {
    /// `supervise.start`: calls `user`'s device to listen in on the agent's call in `mode`.
    pub(super) async fn supervise_start(
        &self,
        user: &str,
        mode: SuperviseMode,
        st: &mut State,
    ) -> Result<(), E> {
        if st.supervisor.is_some() {
            return Err(E::InvalidState("the call is already supervised".into()));
        }
        if st.consult.is_some() || st.third.is_some() {
            return Err(E::InvalidState(
                "the call is in a consultation or conference".into(),
            ));
        }
        let agent = match st.agent.as_ref() {
            Some(a) if a.answered && st.bridged => a,
            _ => {
                return Err(E::InvalidState(
                    "the agent is not talking on this call".into(),
                ));
            }
        };
        if agent.user == user {
            return Err(E::InvalidState(
                "an agent cannot supervise their own call".into(),
            ));
        }
        let agent_call = agent.call_id.clone();
        let agent_user = agent.user.clone();
        let Ok(Some((uri, flow))) = self.sip.contact_for(user).await else {
            return Err(E::InvalidState(format!("{user} has no registered phone")));
        };
        let leg = self
            .call_agent(&st.number, &st.host, user, &uri, flow)
            .await
            .ok_or(E::Unavailable)?;
        tracing::info!(call_id = %self.call_id, supervisor = %user, agent = %agent_user, mode = mode.as_str(), "supervisor called");
        st.supervisor = Some(Box::new(Supervisor {
            user: user.to_string(),
            mode,
            leg,
            agent_call,
            joined: false,
        }));
        Ok(())
    }

    /// `supervise.mode`: applies at once if the supervisor's phone answered, else on answer.
    pub(super) async fn supervise_mode(
        &self,
        user: &str,
        mode: SuperviseMode,
        st: &mut State,
    ) -> Result<(), E> {
        if self.own_supervision(user, st)?.joined {
            st.media.supervise_mode(mode).await?;
        }
        self.own_supervision(user, st)?.mode = mode;
        let agent = agent_of(st);
        self.queue_log(
            &st.trace,
            QueueEventKind::Supervise,
            Some(user),
            format!("{} {agent}", mode.as_str()),
        );
        Ok(())
    }

    /// `supervise.stop`: ends the supervisor's leg only.
    pub(super) async fn supervise_stop(&self, user: &str, st: &mut State) -> Result<(), E> {
        self.own_supervision(user, st)?;
        self.supervise_end(st).await;
        Ok(())
    }

    fn own_supervision<'a>(&self, user: &str, st: &'a mut State) -> Result<&'a mut Supervisor, E> {
        match st.supervisor.as_mut() {
            Some(s) if s.user == user => Ok(s),
            Some(_) => Err(E::Forbidden("another supervisor is on the call".into())),
            None => Err(E::InvalidState("the call is not supervised".into())),
        }
    }

    /// Ends the supervisor's leg (BYE, or CANCEL while it rings) and takes it out of the
    /// media; the caller and the agent go on as before.
    pub(super) async fn supervise_end(&self, st: &mut State) {
        let Some(mut s) = st.supervisor.take() else {
            return;
        };
        if s.joined {
            drop(st.media.end_supervise().await);
        }
        if s.leg.answered {
            self.bye_agent(&mut s.leg).await;
        } else if !s.leg.failed {
            let _ = self.sip.cancel(s.leg.tx).await;
        }
        tracing::info!(call_id = %self.call_id, supervisor = %s.user, "supervisor left");
        if s.joined {
            let agent = agent_of(st);
            self.queue_log(
                &st.trace,
                QueueEventKind::Supervise,
                Some(&s.user),
                format!("stop {agent}"),
            );
        }
    }

    /// After each step of the call: a supervisor whose agent is no longer on the call
    /// (hung up, transferred, consulting) leaves too.
    pub(super) async fn supervise_check(&self, st: &mut State) {
        let Some(s) = st.supervisor.as_ref() else {
            return;
        };
        let same_agent = st
            .agent
            .as_ref()
            .is_some_and(|a| a.answered && a.call_id == s.agent_call);
        if !same_agent || st.consult.is_some() {
            self.supervise_end(st).await;
        }
    }

    /// An event of the supervisor's dialog: the answer joins the media in the chosen
    /// mode; a refusal or the supervisor's BYE ends the supervision only.
    pub(super) async fn supervisor_event(&self, ev: AppEvent, st: &mut State) -> incall::Outcome {
        let Some(s) = st.supervisor.as_mut() else {
            return incall::Outcome::Continue;
        };
        let initial = |r: &Response| {
            msg::cseq(&r.headers).is_some_and(|(n, m)| n == 1 && m.eq_ignore_ascii_case("INVITE"))
        };
        let mut gone = false;
        match ev {
            AppEvent::Response { response, .. } if initial(&response) && !s.leg.answered => {
                let status = u16::from(response.status_code.clone());
                if (200..300).contains(&status) {
                    match self.ack_answer(&mut s.leg, &response).await {
                        Some(Some(leg)) => match st.media.supervise(leg, s.mode).await {
                            Ok(()) => {
                                s.joined = true;
                                let (user, mode) = (s.user.clone(), s.mode);
                                let agent = agent_of(st);
                                tracing::info!(call_id = %self.call_id, supervisor = %user, mode = mode.as_str(), "supervisor joined");
                                self.queue_log(
                                    &st.trace,
                                    QueueEventKind::Supervise,
                                    Some(&user),
                                    format!("{} {agent}", mode.as_str()),
                                );
                            }
                            Err(e) => {
                                tracing::info!(call_id = %self.call_id, error = %e, "supervisor refused by media");
                                self.bye_agent(&mut s.leg).await;
                                gone = true;
                            }
                        },
                        Some(None) => {
                            self.bye_agent(&mut s.leg).await;
                            gone = true;
                        }
                        None => {}
                    }
                } else if status >= 300 {
                    tracing::info!(call_id = %self.call_id, status, "supervisor's phone refused");
                    s.leg.failed = true;
                    gone = true;
                }
            }
            AppEvent::Timeout { .. } if !s.leg.answered => {
                s.leg.failed = true;
                gone = true;
            }
            ev => {
                if self.uac_event(&mut s.leg, ev).await {
                    // Their BYE is answered: nothing left to send.
                    s.leg.answered = false;
                    s.leg.failed = true;
                    gone = true;
                }
            }
        }
        if gone {
            self.supervise_end(st).await;
        }
        incall::Outcome::Continue
    }
}

fn agent_of(st: &State) -> String {
    st.agent
        .as_ref()
        .map(|a| a.user.clone())
        .unwrap_or_default()
}
