//! The request body every API reads: hyper's body, which gives itself back when an API
//! answers without reading it to the end (an unknown model, a refused key, a bad
//! query). The listener then reads and drops the rest, within bounds, so that a
//! keep-alive connection stays in step for the client's next request instead of being
//! closed under it; past the bounds it answers `Connection: close`.
//!
//! ```
//! # use wasmserve::http::client_body::{ClientBody, Unread};
//! # fn demo(incoming: hyper::body::Incoming) {
//! let unread = Unread::default();
//! let body = ClientBody::new(incoming, &unread);
//! drop(body); // an API that never read it
//! assert!(unread.take().is_some()); // the listener drains what is left
//! # }
//! ```

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Where a [`ClientBody`] dropped before its end leaves the rest of the body.
#[derive(Clone, Default)]
pub struct Unread(Arc<Mutex<Option<Incoming>>>);

impl Unread {
    /// The body's unread rest, if the API left any.
    pub fn take(&self) -> Option<Incoming> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A request body that hands its unread rest to an [`Unread`] when dropped.
pub struct ClientBody {
    inner: Option<Incoming>,
    /// Set once the body ended or failed: nothing is left to give back then.
    finished: bool,
    unread: Unread,
}

impl ClientBody {
    pub fn new(inner: Incoming, unread: &Unread) -> ClientBody {
        ClientBody {
            inner: Some(inner),
            finished: false,
            unread: unread.clone(),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.finished
            && !inner.is_end_stream()
        {
            *self.unread.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner);
        }
    }
}
