//! What clients send, as it may reach the log.
//!
//! Before a client has authenticated, anything it sends is hostile input: a hello's
//! client name with a newline in it once forged a whole log line, and a thousand refused
//! hellos with 60 KiB names added 58 MiB to the log in under two seconds. So every
//! client-supplied string is escaped and cut ([`client_text`]) before it is logged, and
//! refusals are logged as a count ([`Refusals`]), not a line each.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest client-supplied text logged, in characters.
pub const MAX_LOGGED_CHARS: usize = 64;
/// How often a stream of refusals is summed up in the log.
pub const REFUSALS_EVERY: Duration = Duration::from_secs(60);

/// `text` with control characters (newlines, escapes) and quotes escaped as Rust does
/// (`\n`, `\u{1b}`), cut to [`MAX_LOGGED_CHARS`] with a note of the full length.
pub fn client_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_LOGGED_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    let total = text.chars().count();
    if total > MAX_LOGGED_CHARS {
        out.push_str(&format!("… ({total} characters)"));
    }
    out
}

/// Refusals of one kind, logged as a count: the first of a period as a line, the rest
/// counted and summed up with the next refusal after [`REFUSALS_EVERY`].
#[derive(Debug)]
pub struct Refusals {
    what: &'static str,
    state: Mutex<Option<Period>>,
}

#[derive(Debug)]
struct Period {
    since: Instant,
    unlogged: u64,
}

impl Refusals {
    /// Refusals named `what` (`instance hello refused`).
    pub const fn new(what: &'static str) -> Refusals {
        Refusals {
            what,
            state: Mutex::new(None),
        }
    }

    /// One more refusal; `detail` (already made safe with [`client_text`]) says what.
    /// True when it was logged.
    pub fn note(&self, detail: &dyn std::fmt::Display) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            Some(period) if period.since.elapsed() < REFUSALS_EVERY => {
                period.unlogged += 1;
                false
            }
            Some(period) => {
                tracing::warn!(
                    more = period.unlogged,
                    "{}: {detail} ({} more since the last line {:.0?} ago; each period's first is logged, the rest counted)",
                    self.what,
                    period.unlogged,
                    period.since.elapsed()
                );
                *state = Some(Period {
                    since: Instant::now(),
                    unlogged: 0,
                });
                true
            }
            None => {
                tracing::warn!(
                    "{}: {detail} (further ones in the next {REFUSALS_EVERY:?} are counted, not logged)",
                    self.what
                );
                *state = Some(Period {
                    since: Instant::now(),
                    unlogged: 0,
                });
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_cannot_forge_a_line_or_flood_the_log() {
        let forged = "x\n2026-12-05T00:00:00Z  INFO FAKE admin token rotated by operator";
        let safe = client_text(forged);
        assert!(!safe.contains('\n'), "{safe}");
        assert!(safe.starts_with("x\\n2026"), "{safe}");
        let huge = "a".repeat(60 * 1024);
        let safe = client_text(&huge);
        assert!(safe.len() < 100, "{safe}");
        assert!(safe.ends_with("(61440 characters)"), "{safe}");
        assert_eq!(client_text("runtara-sdk/1.0"), "runtara-sdk/1.0");
    }

    #[test]
    fn refusals_are_logged_once_a_period_and_counted_between() {
        let refusals = Refusals::new("test refused");
        assert!(refusals.note(&"first"));
        assert!(!refusals.note(&"second"));
        assert!(!refusals.note(&"third"));
        if let Some(period) = refusals.state.lock().unwrap().as_mut() {
            assert_eq!(period.unlogged, 2);
            period.since -= REFUSALS_EVERY;
        }
        assert!(refusals.note(&"after the period"));
    }
}
