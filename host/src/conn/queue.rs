//! A connection's outbound queue: frames in order, bounded in count, one reader (its writer, in the session's task)
//! that can wait. It holds nothing on the heap while empty, so an idle connection's queue costs a few words where a
//! tokio channel allocates its first block of slots (about 1.8 KB) up front.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use wasmsock_wire::Frame;

/// Above this many slots, a queue that empties gives its buffer back (a burst does not stay resident).
const KEEP_SLOTS: usize = 32;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity of frames.
    Full,
    /// The reader is gone: nothing will be written any more.
    Closed,
}

#[derive(Debug, Default)]
struct Slots {
    frames: VecDeque<Frame>,
    reader_gone: bool,
}

/// The queue; shared by the connection (writers) and its outbox (the reader).
///
/// Its one reader waits on a flag and a waker slot rather than a `tokio::sync::Notify`: a `Notify` puts each waiter
/// on a list under a mutex and takes that mutex again to wake it, once per wake-up of the writer, which a fan-out pays
/// for every member.
#[derive(Debug)]
pub struct FrameQueue {
    slots: Mutex<Slots>,
    /// Set by a push or a wake and taken by the reader's wait: one that comes while the reader is not waiting is kept.
    woken: AtomicBool,
    reader: AtomicWaker,
    /// How many frames are queued, written under the lock: an empty queue is seen without taking it. A writer finds
    /// its queue empty twice per wake-up (after its batch, and before it waits again), a fan-out once per member.
    len: AtomicUsize,
    capacity: usize,
}

impl FrameQueue {
    /// An empty queue of at most `capacity` frames (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(Slots::default()),
            woken: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    /// Queues `frame` behind the others, without waiting.
    pub fn try_push(&self, frame: Frame) -> Result<(), Refused> {
        let Ok(mut slots) = self.slots.lock() else {
            return Err(Refused::Closed);
        };
        if slots.reader_gone {
            return Err(Refused::Closed);
        }
        if slots.frames.len() >= self.capacity {
            return Err(Refused::Full);
        }
        slots.frames.push_back(frame);
        self.len.store(slots.frames.len(), Ordering::Release);
        drop(slots);
        self.wake();
        Ok(())
    }

    /// The oldest frame, if one is queued.
    pub fn try_pop(&self) -> Option<Frame> {
        // A push that is not counted yet wakes the reader after it is, so it is not missed by looking too early.
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut slots = self.slots.lock().ok()?;
        let frame = slots.frames.pop_front();
        self.len.store(slots.frames.len(), Ordering::Release);
        if slots.frames.is_empty() && slots.frames.capacity() > KEEP_SLOTS {
            slots.frames = VecDeque::new();
        }
        frame
    }

    /// Resolves at the next push or [`FrameQueue::wake`], or at once when one came since the last wait: a permit is
    /// kept while the reader is not waiting, so none is lost between its look at the queue and its wait.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.woken.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.reader.register(cx.waker());
            // A wake between the look above and the registration left the flag set and found no waker to wake.
            if self.woken.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }

    /// The reader will look at the queue before it waits again (it is polled next, in the task that pushes): pushes
    /// until then need not wake it. Its next wait ends at once, so it looks; nothing pushed is missed.
    pub fn will_look(&self) {
        self.woken.store(true, Ordering::Release);
    }

    /// Wakes the reader without a frame (something else it looks at changed: a close was requested).
    pub fn wake(&self) {
        // Only the wake that sets the flag wakes the reader: while it is set, the reader has a wake-up coming, from
        // the one that set it or from its own look at the flag before it waits.
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.reader.wake();
        }
    }

    /// The reader is gone: what is queued is dropped and later pushes are refused as closed. Returns the payload
    /// bytes of the data frames dropped.
    pub fn close_reader(&self) -> usize {
        match self.slots.lock() {
            Ok(mut slots) => {
                slots.reader_gone = true;
                self.len.store(0, Ordering::Release);
                data_bytes(std::mem::take(&mut slots.frames))
            }
            Err(_) => 0,
        }
    }

    /// Drops every queued frame (a slow consumer's, so its memory is free at once, not when its writer gets to
    /// it); returns the payload bytes of the data frames dropped.
    pub fn clear(&self) -> usize {
        match self.slots.lock() {
            Ok(mut slots) => {
                self.len.store(0, Ordering::Release);
                data_bytes(std::mem::take(&mut slots.frames))
            }
            Err(_) => 0,
        }
    }
}

/// The payload bytes of the data frames among `frames`, which are dropped.
fn data_bytes(frames: VecDeque<Frame>) -> usize {
    frames.iter().filter(|f| f.is_data()).map(Frame::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Frame {
        Frame::Text(s.into())
    }

    /// The oldest frame, waiting for one, as the outbox takes them. Cancel-safe: a frame is only taken when this
    /// resolves.
    impl FrameQueue {
        async fn pop(&self) -> Frame {
            loop {
                if let Some(frame) = self.try_pop() {
                    return frame;
                }
                // A push between the check above and this wait leaves a permit, so the wake-up is not lost.
                self.wait().await;
            }
        }
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_the_bound_refuses_the_next() {
        let queue = FrameQueue::new(2);
        queue.try_push(text("a")).unwrap();
        queue.try_push(text("b")).unwrap();
        assert_eq!(queue.try_push(text("c")), Err(Refused::Full));
        assert_eq!(queue.pop().await, text("a"));
        assert_eq!(queue.try_pop(), Some(text("b")));
        assert_eq!(queue.try_pop(), None);
        queue.try_push(text("d")).unwrap();
        assert_eq!(queue.pop().await, text("d"));
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_a_frame_pushed_later() {
        let queue = std::sync::Arc::new(FrameQueue::new(8));
        let reader = tokio::spawn({
            let queue = queue.clone();
            async move { queue.pop().await }
        });
        tokio::task::yield_now().await;
        queue.try_push(text("late")).unwrap();
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await.unwrap().unwrap();
        assert_eq!(frame, text("late"));
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_no_frame() {
        let queue = FrameQueue::new(8);
        // A wait that is dropped before a push (as the outbox's select drops it when a close is requested).
        assert!(tokio::time::timeout(std::time::Duration::from_millis(10), queue.pop()).await.is_err());
        queue.try_push(text("kept")).unwrap();
        assert_eq!(queue.pop().await, text("kept"));
    }

    #[tokio::test]
    async fn a_wake_without_a_frame_is_kept_for_a_reader_not_yet_waiting() {
        let queue = FrameQueue::new(8);
        queue.wake();
        // The wake came before the wait: it is kept, so the wait ends at once, and finds no frame.
        tokio::time::timeout(std::time::Duration::from_secs(5), queue.wait()).await.unwrap();
        assert_eq!(queue.try_pop(), None);
        // Only one is kept: the next wait waits.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), queue.wait()).await.is_err());
    }

    /// Counts its wakes.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_push_after_will_look_wakes_nothing_and_the_next_wait_finds_it() {
        let queue = FrameQueue::new(8);
        let counting = std::sync::Arc::new(Counting(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(counting.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        // The reader waits on an empty queue.
        assert!(std::pin::pin!(queue.wait()).poll(&mut cx).is_pending());
        // Its task is about to poll it again: a push meanwhile wakes nobody.
        queue.will_look();
        queue.try_push(text("a")).unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 0, "the push woke the reader");
        // The reader's next wait ends at once and it finds the frame; the wait after that waits.
        assert!(std::pin::pin!(queue.wait()).poll(&mut cx).is_ready());
        assert_eq!(queue.try_pop(), Some(text("a")));
        assert!(std::pin::pin!(queue.wait()).poll(&mut cx).is_pending());
        // Without `will_look`, a push wakes it.
        queue.try_push(text("b")).unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_empty_queue_is_seen_without_taking_its_lock() {
        let queue = std::sync::Arc::new(FrameQueue::new(4));
        let held = queue.slots.lock().unwrap();
        let (told, answer) = std::sync::mpsc::channel();
        std::thread::spawn({
            let queue = queue.clone();
            move || told.send(queue.try_pop()).unwrap()
        });
        let found = answer.recv_timeout(std::time::Duration::from_secs(5));
        drop(held);
        assert_eq!(found, Ok(None), "the reader waited for the lock to find an empty queue");
        queue.try_push(text("a")).unwrap();
        assert_eq!(queue.try_pop(), Some(text("a")));
        assert_eq!(queue.try_pop(), None);
    }

    #[test]
    fn a_gone_reader_refuses_pushes_and_a_drained_burst_gives_its_buffer_back() {
        let queue = FrameQueue::new(1000);
        for i in 0..100 {
            queue.try_push(text(&i.to_string())).unwrap();
        }
        while queue.try_pop().is_some() {}
        assert_eq!(queue.slots.lock().unwrap().frames.capacity(), 0);
        queue.try_push(text("x")).unwrap();
        assert_eq!(queue.clear(), 1);
        queue.try_push(text("xy")).unwrap();
        assert_eq!(queue.close_reader(), 2);
        assert_eq!(queue.try_pop(), None);
        assert_eq!(queue.try_push(text("y")), Err(Refused::Closed));
    }
}
