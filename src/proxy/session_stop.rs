//! What closes a relayed session from outside: the end of a drain (the
//! process's `close_sessions`) or its backend's sessions being closed
//! (`close_on_down`, maintenance).
//!
//! The relay polls this future every time the session's task wakes, that is
//! for every burst of bytes it moves. Polling a `CancellationToken`'s
//! `cancelled()` future, or asking `is_cancelled`, takes a mutex, and the
//! process-wide signal is shared by every session on every worker: two such
//! waits would cost four locks on shared cache lines per wake-up. So this
//! future registers the task with both tokens once, and afterwards reads the
//! signals' flags, set before their tokens are cancelled (whose wake-up then
//! brings the task back here). It polls the tokens again only when the task's
//! waker changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::lifecycle::CloseSignal;
use crate::proxy::relay::SessionEnd;

pin_project! {
    /// Completes, with the reason, when the session must be closed.
    pub struct SessionStop {
        shutdown: Arc<CloseSignal>,
        backend: Arc<CloseSignal>,
        #[pin]
        on_shutdown: WaitForCancellationFutureOwned,
        #[pin]
        on_backend: WaitForCancellationFutureOwned,
        // The waker both tokens hold, once registered.
        registered: Option<Waker>,
    }
}

impl SessionStop {
    pub fn new(shutdown: Arc<CloseSignal>, backend: Arc<CloseSignal>) -> SessionStop {
        SessionStop {
            on_shutdown: shutdown.closed(),
            on_backend: backend.closed(),
            shutdown,
            backend,
            registered: None,
        }
    }
}

impl Future for SessionStop {
    type Output = SessionEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let this = self.project();
        if this.shutdown.is_closed() {
            return Poll::Ready(SessionEnd::Shutdown);
        }
        if this.backend.is_closed() {
            return Poll::Ready(SessionEnd::BackendDown);
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        if this.on_shutdown.poll(cx).is_ready() {
            return Poll::Ready(SessionEnd::Shutdown);
        }
        if this.on_backend.poll(cx).is_ready() {
            return Poll::Ready(SessionEnd::BackendDown);
        }
        *this.registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn signals() -> (Arc<CloseSignal>, Arc<CloseSignal>) {
        (Arc::default(), Arc::default())
    }

    #[test]
    fn stays_pending_until_a_signal_closes_then_wakes_and_names_it() {
        for (close_shutdown, expected) in [
            (true, SessionEnd::Shutdown),
            (false, SessionEnd::BackendDown),
        ] {
            let (shutdown, backend) = signals();
            let mut stop = pin!(SessionStop::new(shutdown.clone(), backend.clone()));
            let counter = Arc::new(CountingWaker::default());
            let waker = Waker::from(counter.clone());
            let mut cx = Context::from_waker(&waker);
            for _ in 0..3 {
                assert!(stop.as_mut().poll(&mut cx).is_pending());
            }
            match close_shutdown {
                true => shutdown.close(),
                false => backend.close(),
            }
            assert_eq!(
                counter.0.load(Ordering::SeqCst),
                1,
                "closing wakes the task"
            );
            assert_eq!(stop.as_mut().poll(&mut cx), Poll::Ready(expected));
        }
    }

    #[test]
    fn a_signal_closed_before_the_first_poll_completes_it_at_once() {
        let (shutdown, backend) = signals();
        backend.close();
        let mut stop = pin!(SessionStop::new(shutdown, backend));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            stop.as_mut().poll(&mut cx),
            Poll::Ready(SessionEnd::BackendDown)
        );
    }

    #[test]
    fn a_new_waker_is_registered_and_the_old_one_is_not_woken() {
        let (shutdown, backend) = signals();
        let mut stop = pin!(SessionStop::new(shutdown.clone(), backend));
        let (first, second) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        let first_waker = Waker::from(first.clone());
        assert!(
            stop.as_mut()
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending()
        );
        let second_waker = Waker::from(second.clone());
        assert!(
            stop.as_mut()
                .poll(&mut Context::from_waker(&second_waker))
                .is_pending()
        );
        shutdown.close();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_waiting_task_ends_when_the_process_closes_its_sessions() {
        let (shutdown, backend) = signals();
        let waiting = tokio::spawn(SessionStop::new(shutdown.clone(), backend));
        tokio::task::yield_now().await;
        shutdown.close();
        let end = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the stop completes")
            .expect("the task ran");
        assert_eq!(end, SessionEnd::Shutdown);
    }
}
