//! The pieces of a streamed answer on their way from a lane to the client: a bounded
//! queue that the lane's thread fills (through the handler's `send-intermediate`,
//! waiting while it is full) and the request's async task empties.
//!
//! Bounded: at most [`CAPACITY`] pieces wait per request, so a client that reads slowly
//! slows its handler down instead of filling the server's memory; the lane never waits
//! past the handler call's deadline. A receiver that is dropped (the client went away)
//! closes the queue: the next send fails at once, which tells the handler to stop.
//!
//! The final answer does not travel here but on the job's reply; the lane sends every
//! piece before it, so a receiver that has seen the reply finds all pieces queued.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::sandbox::Response;

/// How many pieces may wait for one client.
pub const CAPACITY: usize = 8;

/// Why a piece did not go out.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SendError {
    #[error("the client went away")]
    Gone,
    #[error("the client read nothing more within the call's time limit (responseTimeout)")]
    Timeout,
    #[error("{0}")]
    Invalid(String),
}

struct Queue {
    pieces: VecDeque<Response>,
    /// The receiver is gone.
    closed: bool,
}

struct Shared {
    /// The largest body a piece may have (`max_response_size`).
    max_body: usize,
    queue: Mutex<Queue>,
    /// Signalled when a piece was taken or the receiver went away (the lane waits on it).
    space: Condvar,
    /// Signalled when a piece was queued (the receiver waits on it).
    ready: Notify,
}

/// The lane's end; clones send into the same queue.
#[derive(Clone)]
pub struct PieceSender(Arc<Shared>);

/// The request's end. Dropping it closes the queue.
pub struct PieceReceiver(Arc<Shared>);

/// A queue for one request's pieces, each with a body of at most `max_body` bytes.
pub fn channel(max_body: usize) -> (PieceSender, PieceReceiver) {
    let shared = Arc::new(Shared {
        max_body,
        queue: Mutex::new(Queue {
            pieces: VecDeque::new(),
            closed: false,
        }),
        space: Condvar::new(),
        ready: Notify::new(),
    });
    (PieceSender(shared.clone()), PieceReceiver(shared))
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PieceSender {
    /// Queues `piece`, waiting while the queue is full, but not past `deadline`.
    pub fn send(&self, piece: Response, deadline: Option<Instant>) -> Result<(), SendError> {
        if !(200..=599).contains(&piece.status) {
            return Err(SendError::Invalid(format!(
                "status {} is not a final HTTP status (200-599)",
                piece.status
            )));
        }
        if piece.body.len() > self.0.max_body {
            return Err(SendError::Invalid(format!(
                "a body of {} bytes exceeds max_response_size ({} bytes)",
                piece.body.len(),
                self.0.max_body
            )));
        }
        let mut queue = self.0.lock();
        loop {
            if queue.closed {
                return Err(SendError::Gone);
            }
            if queue.pieces.len() < CAPACITY {
                queue.pieces.push_back(piece);
                drop(queue);
                self.0.ready.notify_one();
                return Ok(());
            }
            queue = match deadline {
                None => self.0.space.wait(queue).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(SendError::Timeout);
                    }
                    self.0
                        .space
                        .wait_timeout(queue, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.0.lock().closed
    }
}

impl PieceReceiver {
    /// The next queued piece, without waiting.
    pub fn try_recv(&self) -> Option<Response> {
        let piece = self.0.lock().pieces.pop_front();
        if piece.is_some() {
            self.0.space.notify_all();
        }
        piece
    }

    /// Waits until a piece may have been queued (spurious wake-ups are possible:
    /// `try_recv` again).
    pub async fn queued(&self) {
        self.0.ready.notified().await
    }
}

impl Drop for PieceReceiver {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.closed = true;
        queue.pieces.clear();
        drop(queue);
        self.0.space.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn piece(i: u8) -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: vec![i],
        }
    }

    #[test]
    fn a_full_queue_waits_until_the_deadline() {
        let (tx, rx) = channel(1 << 20);
        for i in 0..CAPACITY as u8 {
            tx.send(piece(i), None).unwrap();
        }
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(50));
        assert_eq!(tx.send(piece(99), deadline), Err(SendError::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(rx.try_recv().unwrap().body, vec![0]);
        tx.send(piece(100), deadline.map(|d| d + Duration::from_secs(5)))
            .unwrap();
    }

    #[test]
    fn a_reader_makes_room_and_keeps_the_order() {
        let (tx, rx) = channel(1 << 20);
        let writer = std::thread::spawn(move || {
            for i in 0..100u8 {
                tx.send(piece(i), Some(Instant::now() + Duration::from_secs(10)))
                    .unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            match rx.try_recv() {
                Some(p) => got.push(p.body[0]),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        writer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
    }

    #[test]
    fn invalid_pieces_are_refused() {
        let (tx, _rx) = channel(4);
        let mut bad = piece(0);
        bad.status = 42;
        assert!(matches!(tx.send(bad, None), Err(SendError::Invalid(_))));
        let mut big = piece(0);
        big.body = vec![0; 5];
        assert!(
            matches!(tx.send(big, None), Err(SendError::Invalid(m)) if m.contains("max_response_size"))
        );
    }

    #[test]
    fn a_dropped_receiver_stops_a_waiting_sender() {
        let (tx, rx) = channel(1 << 20);
        for i in 0..CAPACITY as u8 {
            tx.send(piece(i), None).unwrap();
        }
        let waiting = std::thread::spawn(move || tx.send(piece(9), None));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert_eq!(waiting.join().unwrap(), Err(SendError::Gone));
    }
}
