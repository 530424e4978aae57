//! Error reporting for callbacks (asyncio's `call_exception_handler` and its context dict).
//!
//! A panic in a callback never unwinds through the loop: the loop catches it, builds an
//! [`ExceptionContext`] and hands it to the exception handler. The default handler logs it
//! through `tracing` at error level, with the place where the callback was scheduled.

use std::any::Any;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use crate::EventLoop;

/// What the exception handler is told (asyncio's context dict, as a struct).
///
/// Build one with [`ExceptionContext::new`] and the `with_*` methods; upper layers use it to
/// report, for example, a task error nobody retrieved.
#[non_exhaustive]
pub struct ExceptionContext {
    /// What happened, for example `"exception in callback"`.
    pub message: String,
    /// The panic message, when a panic was caught.
    pub panic: Option<String>,
    /// The error, when an error value went unhandled.
    pub error: Option<Box<dyn std::error::Error + 'static>>,
    /// Where the failing callback (or future, or task) was scheduled or created.
    pub scheduled_at: Option<&'static Location<'static>>,
    /// Which object failed: `"callback"`, `"timer"`, `"reader fd 7"`, `"task 'fetch'"`, …
    pub source: Option<String>,
}

impl ExceptionContext {
    /// A context with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        ExceptionContext {
            message: message.into(),
            panic: None,
            error: None,
            scheduled_at: None,
            source: None,
        }
    }

    /// Attaches a caught panic payload (rendered as text when it is a string).
    pub fn with_panic(mut self, payload: &(dyn Any + Send)) -> Self {
        self.panic = Some(panic_message(payload));
        self
    }

    /// Attaches an error value.
    pub fn with_error(mut self, error: impl std::error::Error + 'static) -> Self {
        self.error = Some(Box::new(error));
        self
    }

    /// Attaches the place where the failing object was scheduled or created.
    pub fn with_location(mut self, at: &'static Location<'static>) -> Self {
        self.scheduled_at = Some(at);
        self
    }

    /// Names the failing object.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Debug for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExceptionContext")
            .field("message", &self.message)
            .field("panic", &self.panic)
            .field("error", &self.error.as_ref().map(|e| e.to_string()))
            .field("scheduled_at", &self.scheduled_at.map(|l| l.to_string()))
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, " in {s}")?;
        }
        if let Some(l) = self.scheduled_at {
            write!(f, " (scheduled at {l})")?;
        }
        if let Some(p) = &self.panic {
            write!(f, ": panicked: {p}")?;
        }
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// Renders a panic payload: `&str` and `String` payloads as themselves, anything else as a note.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// A custom exception handler, see [`EventLoop::set_exception_handler`].
pub(crate) type ExceptionHandler = Rc<dyn Fn(&EventLoop, &ExceptionContext)>;

/// The default handler: one `tracing` event at error level carrying the whole context.
pub fn default_exception_handler(context: &ExceptionContext) {
    tracing::error!(
        message = %context.message,
        source = context.source.as_deref().unwrap_or("-"),
        scheduled_at = %context.scheduled_at.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
        panic = context.panic.as_deref().unwrap_or("-"),
        error = %context.error.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
        "{context}"
    );
}
