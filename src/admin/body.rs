//! The body of every admin response: bytes already in memory, sent in chunks,
//! holding whatever must stay held until the last chunk is gone.
//!
//! A large document is handed to hyper 64 KiB at a time, so hyper asks for the
//! next chunk only once the previous one is written (back-pressure from a slow
//! reader stops at the first chunk). Every chunk shares one [`Hold`]: the
//! document's budget share and the mark that its connection has a response in
//! flight are released when the last chunk has been written or dropped, which
//! is also when the body's memory is freed. Owns only that; the contents come
//! from `routes` and `documents`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};

use super::budget::BudgetShare;
use super::slots::InFlight;

/// Bytes handed to hyper per frame.
const CHUNK_LEN: usize = 64 * 1024;

/// What a body keeps held until its last chunk is gone (only to drop it then).
#[derive(Debug, Default)]
pub(crate) struct Hold {
    _budget: Option<BudgetShare>,
    _in_flight: Option<InFlight>,
}

impl Hold {
    pub(crate) fn new(budget: Option<BudgetShare>, in_flight: Option<InFlight>) -> Hold {
        Hold {
            _budget: budget,
            _in_flight: in_flight,
        }
    }
}

/// An admin response body.
#[derive(Debug)]
pub(crate) struct AdminBody {
    rest: Bytes,
    hold: Arc<Hold>,
}

impl AdminBody {
    /// A body that keeps `hold` until its last chunk has been written.
    pub(crate) fn holding(bytes: impl Into<Bytes>, hold: Hold) -> AdminBody {
        AdminBody {
            rest: bytes.into(),
            hold: Arc::new(hold),
        }
    }
}

impl Body for AdminBody {
    type Data = Chunk;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let len = this.rest.len().min(CHUNK_LEN);
        let chunk = Chunk {
            bytes: this.rest.split_to(len),
            _hold: Arc::clone(&this.hold),
        };
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    /// Exact, so hyper sends `Content-Length` (also for HEAD, which sends no body).
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// Part of a body on its way to the socket; keeps the body's [`Hold`].
#[derive(Debug)]
pub(crate) struct Chunk {
    bytes: Bytes,
    _hold: Arc<Hold>,
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        self.bytes.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.bytes.chunk()
    }

    fn advance(&mut self, count: usize) {
        self.bytes.advance(count);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::admin::budget::BodyBudget;

    #[tokio::test]
    async fn a_body_comes_whole_in_chunks_of_at_most_64_kib() {
        let text: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = AdminBody::holding(text.clone(), Hold::default());
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("infallible").into_data().expect("data");
            assert!(data.remaining() <= CHUNK_LEN);
            received.extend_from_slice(data.chunk());
        }
        assert_eq!(received, text);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn the_hold_is_released_with_the_last_chunk() {
        let budget = BodyBudget::new(1024 * 1024);
        let share = budget.try_take(512 * 1024).expect("room");
        let hold = Hold::new(Some(share), None);
        let mut body = AdminBody::holding(vec![7u8; 100_000], hold);
        let first = body.frame().await.expect("a frame");
        let second = body.frame().await.expect("a frame");
        assert!(body.frame().await.is_none());
        drop(body);
        drop(first);
        assert_eq!(budget.available_kib(), 512, "a chunk is still unsent");
        drop(second);
        assert_eq!(budget.available_kib(), 1024);
    }
}
