//! The `streaming` interface: `send-intermediate`.

use super::bindings::types::Response;
use super::state::HostState;

/// The `streaming` interface: a piece of the current request's answer, queued for its
/// client (see `worker::stream`), waiting within the call's deadline while it is full.
impl super::bindings::streaming::Host for HostState {
    fn send_intermediate(&mut self, response: Response) -> Result<(), String> {
        match &self.stream {
            None => Ok(()),
            Some(stream) => stream
                .send(response, self.call_deadline)
                .map_err(|e| e.to_string()),
        }
    }
}
