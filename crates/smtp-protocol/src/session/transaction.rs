//! The mail transaction inside the session: MAIL, RCPT and DATA, the
//! policy's verdicts on each, and the end of the message.

use super::{
    Action, Delivery, HEAD_KEPT, RecipientCheck, SenderCheck, Session, State, Transaction,
    TransactionRecord, replies,
};
use super::{Envelope, HeloVerb, Verdict};
use crate::address::{ForwardPath, ReversePath};
use crate::command::MailParams;
use crate::data::{DataDecoder, DataOutcome};
use crate::received;
use crate::reply::Reply;

impl Session {
    pub(super) fn mail(&mut self, from: ReversePath, params: MailParams) -> Action {
        let Some(greeting) = &self.info.greeting else {
            self.replies.push(replies::need_helo());
            return Action::Continue;
        };
        if self.transaction.is_some() {
            self.replies.push(replies::nested_mail());
            return Action::Continue;
        }
        if let Some(reply) = self.check_mail_params(greeting.verb, &from, &params) {
            self.replies.push(reply);
            return Action::Continue;
        }
        self.state = State::AwaitingSender;
        Action::CheckSender(Box::new(SenderCheck { from, params }))
    }

    pub(super) fn check_mail_params(
        &self,
        verb: HeloVerb,
        from: &ReversePath,
        params: &MailParams,
    ) -> Option<Reply> {
        let has_params = params.size.is_some()
            || params.body.is_some()
            || params.smtputf8
            || params.auth.is_some()
            || params.ret.is_some()
            || params.envid.is_some()
            || params.requiretls
            || !params.other.is_empty();
        if has_params && verb == HeloVerb::Helo {
            return Some(replies::parameters_need_ehlo());
        }
        if let Some((name, _)) = params.other.first() {
            return Some(replies::bad_parameters(&format!(
                "Unsupported parameter {name}"
            )));
        }
        if params.auth.is_some() && self.auth_mechanisms.is_empty() {
            return Some(replies::bad_parameters("Unsupported parameter AUTH"));
        }
        if params.smtputf8 && !self.config.smtputf8 {
            return Some(replies::bad_parameters("Unsupported parameter SMTPUTF8"));
        }
        if params.requiretls {
            if !self.config.requiretls {
                return Some(replies::bad_parameters("Unsupported parameter REQUIRETLS"));
            }
            // RFC 8689 §2: the option only means something in a TLS session;
            // it is advertised only there.
            if self.info.tls.is_none() {
                return Some(replies::requiretls_needs_tls());
            }
        }
        if params
            .size
            .is_some_and(|size| size > self.config.max_message_bytes as u64)
        {
            return Some(replies::message_too_big());
        }
        if let ReversePath::Mailbox(mailbox) = from
            && mailbox.is_utf8()
            && !params.smtputf8
        {
            return Some(replies::needs_smtputf8());
        }
        None
    }

    /// The policy's answer to [`Action::CheckSender`].
    pub fn sender_verdict(&mut self, check: SenderCheck, verdict: Verdict) -> Action {
        let State::AwaitingSender = std::mem::replace(&mut self.state, State::Command) else {
            return self.driver_bug();
        };
        let SenderCheck { from, params } = check;
        match verdict {
            Verdict::Accept(reply) => {
                self.transactions_started += 1;
                let id = format!("{}.{}", self.info.conn_id, self.transactions_started);
                self.replies
                    .push(reply.unwrap_or_else(|| replies::sender_ok(&from.to_string())));
                self.transaction = Some(Box::new(Transaction {
                    envelope: Envelope {
                        id,
                        from,
                        params,
                        recipients: Vec::new(),
                        recipient_params: Vec::new(),
                    },
                    rcpt_attempts: 0,
                    message: Vec::new(),
                    head: Vec::new(),
                    head_complete: false,
                    data_size: 0,
                }));
            }
            Verdict::Reject(reply) => self.replies.push(reply),
        }
        Action::Continue
    }

    pub(super) fn rcpt(&mut self, to: ForwardPath, params: crate::command::RcptParams) -> Action {
        let smtputf8_allowed = self.config.smtputf8;
        let Some(txn) = &mut self.transaction else {
            self.replies.push(replies::need_mail_before_rcpt());
            return Action::Continue;
        };
        txn.rcpt_attempts += 1;
        if let Some((name, _)) = params.other.first() {
            let reply = replies::bad_parameters(&format!("Unsupported parameter {name}"));
            self.replies.push(reply);
            return Action::Continue;
        }
        if txn.envelope.recipients.len() >= self.config.max_recipients {
            self.replies.push(replies::too_many_recipients());
            return Action::Continue;
        }
        if let ForwardPath::Mailbox(mailbox) = &to
            && mailbox.is_utf8()
            && !(smtputf8_allowed && txn.envelope.params.smtputf8)
        {
            self.replies.push(replies::needs_smtputf8());
            return Action::Continue;
        }
        let Some(transaction) = self.transaction.take() else {
            return self.driver_bug();
        };
        self.state = State::AwaitingRecipient;
        Action::CheckRecipient(RecipientCheck {
            transaction,
            recipient: to,
            params,
        })
    }

    /// The policy's answer to [`Action::CheckRecipient`].
    pub fn recipient_verdict(&mut self, check: RecipientCheck, verdict: Verdict) -> Action {
        let State::AwaitingRecipient = std::mem::replace(&mut self.state, State::Command) else {
            return self.driver_bug();
        };
        let RecipientCheck {
            mut transaction,
            recipient,
            params,
        } = check;
        match verdict {
            Verdict::Accept(reply) => {
                self.replies
                    .push(reply.unwrap_or_else(|| replies::recipient_ok(&recipient.to_string())));
                transaction.envelope.recipients.push(recipient);
                transaction.envelope.recipient_params.push(params);
            }
            Verdict::Reject(reply) => self.replies.push(reply),
        }
        self.transaction = Some(transaction);
        Action::Continue
    }

    pub(super) fn start_data(&mut self) -> Action {
        let Some(txn) = &mut self.transaction else {
            self.replies.push(replies::need_mail_before_data());
            return Action::Continue;
        };
        if txn.envelope.recipients.is_empty() {
            self.replies.push(if txn.rcpt_attempts > 0 {
                replies::no_valid_recipients()
            } else {
                replies::need_rcpt_before_data()
            });
            return Action::Continue;
        }
        if self.config.add_received {
            self.state = State::AwaitingStamp;
            return Action::StampReceived;
        }
        self.receive_data()
    }

    /// The driver's answer to [`Action::StampReceived`]: `date` is the
    /// RFC 5322 date-time that ends our `Received:` header.
    pub fn stamp_received(&mut self, date: &str) -> Action {
        let (State::AwaitingStamp, Some(txn)) = (&self.state, &mut self.transaction) else {
            return self.driver_bug();
        };
        let header = received::header(&self.config.me, &self.info, &txn.envelope, date);
        txn.message.extend_from_slice(header.as_bytes());
        self.receive_data()
    }

    fn receive_data(&mut self) -> Action {
        self.replies.push(replies::start_data());
        self.state = State::Data(DataDecoder::new(
            self.config.max_message_bytes,
            self.config.bare_newline,
        ));
        Action::ReceiveData
    }

    /// Message bytes in DATA mode. Returns how many bytes were consumed: at
    /// the end of the message the rest of `input` is the next command.
    pub fn data(&mut self, input: &[u8]) -> (usize, Action) {
        let (State::Data(decoder), Some(txn)) = (&mut self.state, &mut self.transaction) else {
            return (0, self.driver_bug());
        };
        let before = txn.message.len();
        let (consumed, outcome) = decoder.feed(input, &mut txn.message);
        if !txn.head_complete {
            let new = &txn.message[before..];
            let take = new.len().min(HEAD_KEPT - txn.head.len());
            let searched = txn.head.len();
            txn.head.extend_from_slice(&new[..take]);
            if let Some(end) = received::header_end(&txn.head, searched) {
                txn.head.truncate(end);
                txn.head.shrink_to_fit();
                txn.head_complete = true;
            } else if txn.head.len() >= HEAD_KEPT {
                txn.head_complete = true;
            }
        }
        let Some(outcome) = outcome else {
            return (consumed, Action::Continue);
        };
        txn.data_size = decoder.bytes_received();
        let rejection = match outcome {
            DataOutcome::TooBig => Some(replies::message_too_big()),
            DataOutcome::BareNewline => Some(replies::bare_newline()),
            DataOutcome::Complete => {
                let count = received::count(&txn.head);
                (count > self.config.max_received).then(|| replies::mail_loop(count))
            }
        };
        let Some(transaction) = self.transaction.take() else {
            return (consumed, self.driver_bug());
        };
        let action = match rejection {
            Some(reply) => {
                self.state = State::Command;
                self.finish_transaction(transaction, reply)
            }
            None => {
                self.state = State::AwaitingDelivery;
                Action::DeliverMessage(Delivery { transaction })
            }
        };
        (consumed, action)
    }

    /// Message bytes received and not yet taken: the driver moves them to
    /// disk past `spool_after`.
    pub fn buffered_data(&self) -> usize {
        self.transaction.as_ref().map_or(0, |t| t.message.len())
    }

    /// Takes the message bytes received so far (our `Received:` header
    /// first); the next ones continue from here, and the [`Delivery`] has
    /// the rest.
    pub fn drain_buffered_data(&mut self) -> Vec<u8> {
        self.transaction
            .as_mut()
            .map(|t| std::mem::take(&mut t.message))
            .unwrap_or_default()
    }

    /// The policy's answer to [`Action::DeliverMessage`].
    pub fn message_verdict(&mut self, delivery: Delivery, verdict: Verdict) -> Action {
        let State::AwaitingDelivery = std::mem::replace(&mut self.state, State::Command) else {
            return self.driver_bug();
        };
        let transaction = delivery.transaction;
        let reply = match verdict {
            Verdict::Accept(reply) => {
                reply.unwrap_or_else(|| replies::message_accepted(&transaction.envelope.id))
            }
            Verdict::Reject(reply) => reply,
        };
        self.finish_transaction(transaction, reply)
    }

    /// Ends the transaction with `reply`, recording it for the log. The
    /// policy has seen the whole message or rejected it; no reset needed.
    fn finish_transaction(&mut self, transaction: Box<Transaction>, reply: Reply) -> Action {
        self.finished = Some(TransactionRecord {
            envelope: transaction.envelope,
            size: transaction.data_size,
            reply: reply.clone(),
        });
        self.replies.push(reply);
        Action::Continue
    }
}
