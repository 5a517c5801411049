//! Wakes idle workers the moment their queues get work.
//!
//! Scripts PUBLISH on `wasmq:{<queue>}:notify` when a queue goes from empty
//! to not empty, when a due time earlier than any other is set, and when
//! tasks are taken back. A listener per worker turns those messages into a
//! wake-up of the worker's fetch loop, so an idle worker starts a new task
//! within milliseconds without polling Redis.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Broker, Error};

/// Listens on the notify channels of `queues` until `shutdown`, calling
/// `notify.notify_waiters()` on every message and after every
/// (re)subscription, since messages published while disconnected are lost.
pub async fn listen(
    broker: Broker,
    queues: Vec<String>,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let channels: Vec<String> = queues
        .iter()
        .map(|queue| broker.queue_keys(queue).notify_channel().to_string())
        .collect();
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = broker.pubsub().await?;
            for channel in &channels {
                pubsub
                    .subscribe(channel)
                    .await
                    .map_err(|err| Error::from_redis(broker.url(), err))?;
            }
            notify.notify_waiters();
            let mut messages = pubsub.on_message();
            while messages.next().await.is_some() {
                notify.notify_waiters();
            }
            Ok::<(), Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = session => match outcome {
                // The connection closed after working: reconnect promptly.
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::debug!(%err, "queue notifications unavailable; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}
