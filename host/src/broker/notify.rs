//! Tells workers, the moment it happens, that a queue has work or that a
//! running task was cancelled.
//!
//! Scripts PUBLISH on `wasmq:{<queue>}:notify` when a queue goes from empty
//! to not empty, when a due time earlier than any other is set, when tasks
//! are taken back and when a queue is resumed; `cancel.lua` publishes the
//! task id on `wasmq:{<queue>}:cancel`. A listener per worker turns those
//! messages into [`QueueEvent`]s, so an idle worker starts a new task (or
//! stops a cancelled one) within milliseconds, without polling Redis.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Broker, Error};

/// Something a worker should react to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// A queue may have work: look again.
    Work,
    /// A task was cancelled: stop it if it runs here.
    Cancel {
        /// The task's queue.
        queue: String,
        /// The task's id.
        id: String,
    },
}

/// Listens to the channels of `queues` until `shutdown`, handing every event
/// to `on_event`. After every (re)subscription it also sends a `Work` event,
/// since messages published while disconnected are lost.
pub async fn listen(
    broker: Broker,
    queues: Vec<String>,
    on_event: impl Fn(QueueEvent),
    shutdown: CancellationToken,
) {
    let mut channels: Vec<String> = Vec::new();
    let mut cancel_channels: Vec<(String, String)> = Vec::new();
    for queue in &queues {
        let keys = broker.queue_keys(queue);
        channels.push(keys.notify_channel().to_string());
        channels.push(keys.cancel_channel().to_string());
        cancel_channels.push((keys.cancel_channel().to_string(), queue.clone()));
    }
    subscribe(broker, channels, shutdown, |message| match message {
        None => on_event(QueueEvent::Work),
        Some((channel, payload)) => {
            match cancel_channels.iter().find(|(name, _)| name == channel) {
                Some((_, queue)) => on_event(QueueEvent::Cancel {
                    queue: queue.clone(),
                    id: payload.to_string(),
                }),
                None => on_event(QueueEvent::Work),
            }
        }
    })
    .await
}

/// Subscribes to `channels` until `shutdown`, reconnecting with backoff, and
/// calls `on_message` with `Some((channel, payload))` for each message and
/// with `None` after each (re)subscription (messages sent while
/// disconnected are lost, so the caller should look again).
pub async fn subscribe(
    broker: Broker,
    channels: Vec<String>,
    shutdown: CancellationToken,
    on_message: impl Fn(Option<(&str, &str)>),
) {
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
            on_message(None);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().unwrap_or_default();
                on_message(Some((message.get_channel_name(), &payload)));
            }
            Ok::<(), Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = session => match outcome {
                // The connection closed after working: reconnect promptly.
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::debug!(%err, "notifications unavailable; retrying");
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
