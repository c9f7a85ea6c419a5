//! SMTP AUTH (RFC 4954) inside the session: the SASL exchange line by line,
//! and the policy's verdict.

use super::{Action, AuthCheck, Session, State, replies};
use super::{AuthVerdict, HeloVerb};
use crate::sasl::{SaslError, SaslExchange, SaslMechanism, SaslStep};

impl Session {
    pub(super) fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Action {
        if self.auth_mechanisms.is_empty() {
            return self.bad_command(replies::not_implemented());
        }
        let reply = if self.info.authenticated.is_some() {
            Some(replies::auth_already_done())
        } else if self.transaction.is_some() {
            Some(replies::auth_in_transaction())
        } else if self.info.greeting.as_ref().map(|g| g.verb) != Some(HeloVerb::Ehlo) {
            Some(replies::auth_need_ehlo())
        } else {
            None
        };
        if let Some(reply) = reply {
            self.replies.push(reply);
            return Action::Continue;
        }
        let Some(mechanism) =
            SaslMechanism::parse(mechanism).filter(|m| self.auth_mechanisms.contains(m))
        else {
            self.replies.push(replies::auth_unknown_mechanism());
            return Action::Continue;
        };
        if mechanism.needs_random_challenge() {
            self.state = State::AwaitingChallenge {
                mechanism,
                initial_response: initial.map(str::to_string),
            };
            return Action::IssueChallenge;
        }
        self.start_exchange(mechanism, initial, "")
    }

    /// The driver's answer to [`Action::IssueChallenge`]: `random` is a fresh
    /// token no client can predict, made unique by the connection id.
    pub fn issue_challenge(&mut self, random: &str) -> Action {
        let State::AwaitingChallenge {
            mechanism,
            initial_response,
        } = std::mem::replace(&mut self.state, State::Command)
        else {
            return self.driver_bug();
        };
        let challenge_id = format!("{random}.{}@{}", self.info.conn_id, self.config.me);
        self.start_exchange(mechanism, initial_response.as_deref(), &challenge_id)
    }

    fn start_exchange(
        &mut self,
        mechanism: SaslMechanism,
        initial: Option<&str>,
        challenge_id: &str,
    ) -> Action {
        // RFC 4954 §4: "=" is an empty initial response.
        match SaslExchange::start(mechanism, initial, challenge_id) {
            Ok((exchange, step)) => self.sasl_step(exchange, step),
            Err(error) => self.sasl_failed(&error),
        }
    }

    pub(super) fn sasl_response(&mut self, line: &[u8]) -> Action {
        let State::Authenticating(mut exchange) =
            std::mem::replace(&mut self.state, State::Command)
        else {
            return self.driver_bug();
        };
        let text = String::from_utf8_lossy(line);
        match exchange.respond(&text) {
            Ok(step) => self.sasl_step(exchange, step),
            Err(error) => self.sasl_failed(&error),
        }
    }

    fn sasl_step(&mut self, exchange: SaslExchange, step: SaslStep) -> Action {
        match step {
            SaslStep::Challenge(challenge) => {
                self.replies.push(replies::auth_challenge(challenge));
                self.state = State::Authenticating(exchange);
                Action::Continue
            }
            SaslStep::Done(credentials) => {
                self.state = State::AwaitingAuthVerdict;
                Action::Authenticate(Box::new(AuthCheck { credentials }))
            }
        }
    }

    fn sasl_failed(&mut self, error: &SaslError) -> Action {
        self.state = State::Command;
        self.replies.push(match error {
            SaslError::Cancelled => replies::auth_cancelled(),
            other => replies::auth_bad_response(&other.to_string()),
        });
        Action::Continue
    }

    /// The policy's answer to [`Action::Authenticate`].
    pub fn auth_verdict(&mut self, check: AuthCheck, verdict: AuthVerdict) -> Action {
        let State::AwaitingAuthVerdict = std::mem::replace(&mut self.state, State::Command) else {
            return self.driver_bug();
        };
        let credentials = check.credentials;
        self.replies.push(match verdict {
            AuthVerdict::Accepted => {
                self.info.authenticated = Some(credentials.user().to_string());
                replies::auth_succeeded()
            }
            AuthVerdict::Rejected => replies::auth_failed(),
            AuthVerdict::TemporaryFailure => replies::auth_temporary_failure(),
        });
        Action::Continue
    }
}
