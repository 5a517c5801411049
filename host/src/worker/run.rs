//! A worker's life: what starts beside the fetch loop, and the order in
//! which everything stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::acks::Acker;
use super::handlers::Handlers;
use super::housekeeping::{self, Upkeep};
use super::lease::{self, CancelReason, Running};
use super::observe::Observer;
use super::outage::OutageLog;
use super::probation::{Probation, start_lane_runtime};
use super::rate::{self, RateLimits};
use super::services::BrokerServices;
use super::task::{TaskPath, TypeLimits};
use super::{Error, Summary, Worker, fetch};
use crate::broker::{self, QueueEvent, SettleLimits};
use crate::ops::http::{NO_CONTENT_CSP, Site};
use crate::ops::metrics::CONTENT_TYPE;

/// Runs `worker` until `shutdown` completes, then shuts it down.
pub(super) async fn run(
    worker: Worker,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, Error> {
    let Worker {
        broker,
        settings,
        sandbox,
        plugins,
        load,
        plugin_dir,
        follow_registry,
        native,
        metrics,
        scheduler,
        recorded,
        #[cfg(feature = "otel")]
            tracing: tracing_to,
    } = worker;
    #[cfg(feature = "otel")]
    let tracer = match &tracing_to {
        Some(to) => {
            let tracer = crate::telemetry::Tracer::start(to, tokio::runtime::Handle::current())
                .map_err(Error::Tracing)?;
            tracing::info!(endpoint = to.traces_url(), "exporting traces over OTLP");
            Some(tracer)
        }
        None => None,
    };
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.sandbox_threads.max(1))
        .thread_name("wasmq-sandbox")
        .enable_all()
        .build()
        .map_err(Error::Threads)?;
    let lane = start_lane_runtime(settings.sandbox_threads).map_err(Error::Threads)?;

    // Cancelled when the worker is asked to stop: the helpers beside the
    // fetch loop (metrics, scheduler, registry, directory watch) stop with
    // it; the loops the running tasks need stop only once they are done.
    let stopping = CancellationToken::new();
    let stop_background = CancellationToken::new();
    let mut helpers = JoinSet::new();

    let handlers = Handlers {
        plugins: plugins.clone(),
        native,
    };
    {
        // Producers choose task types: only handled ones get a label value.
        let handlers = handlers.clone();
        recorded.label_task_types(move |task_type| handlers.handles(task_type));
    }
    if follow_registry {
        let local = plugins.current().plugins().to_vec();
        crate::plugins::load_deployed(&broker, &sandbox, &plugins, &local, &load, &recorded).await;
        helpers.spawn(crate::plugins::reconcile_deployed(
            broker.clone(),
            sandbox.clone(),
            plugins.clone(),
            local,
            load.clone(),
            recorded.clone(),
            stopping.clone(),
        ));
    }
    if let Some(dir) = plugin_dir.filter(|dir| dir.watch) {
        helpers.spawn(crate::plugins::watch_dir(
            dir.path,
            sandbox.clone(),
            plugins.clone(),
            load.clone(),
            stopping.clone(),
        ));
    }
    for plugin in plugins.current().plugins() {
        recorded.plugin_loaded(&plugin.manifest.name, &plugin.manifest.version);
    }
    let serves_metrics = metrics.is_some();
    if let Some(endpoint) = metrics {
        let listener = tokio::net::TcpListener::bind(endpoint.address)
            .await
            .map_err(|source| Error::Metrics {
                address: endpoint.address,
                source,
            })?;
        tracing::info!(address = %endpoint.address, "serving Prometheus metrics at /metrics");
        let site = Site {
            allowed_hosts: endpoint.allowed_hosts,
            csp: NO_CONTENT_CSP,
            allow_hint: endpoint.allow_hint,
        };
        let app = metrics_app(recorded.clone());
        let stop = stopping.clone();
        helpers.spawn(async move {
            if let Err(err) = crate::ops::http::serve(listener, app, site, stop).await {
                tracing::error!(%err, "the metrics endpoint stopped");
            }
        });
    }
    if let Some((config, schedule_file)) = scheduler {
        if let Some(file) = schedule_file {
            helpers.spawn(crate::scheduler::watch_file(
                broker.clone(),
                file,
                stopping.clone(),
            ));
        }
        helpers.spawn(crate::scheduler::run(
            broker.clone(),
            config,
            stopping.clone(),
        ));
    }

    let outage = Arc::new(OutageLog::new(broker.url()));
    let running = Arc::new(Running::default());
    let observer = Arc::new(Observer::new(recorded));
    let type_limits = Arc::new(TypeLimits::default());
    let rate_limits = Arc::new(RateLimits::default());
    let probation = Probation::new(settings.probation, lane.handle().clone());
    let (acker, acknowledging) = Acker::start(
        broker.clone(),
        SettleLimits {
            archive: settings.archive,
            result_budget: settings.result_budget,
        },
        settings.wait_replicas,
        stop_background.clone(),
    );
    let path = Arc::new(TaskPath {
        broker: broker.clone(),
        handlers: handlers.clone(),
        sandbox,
        probation: probation.clone(),
        acker: acker.clone(),
        running: running.clone(),
        observer: observer.clone(),
        type_limits: type_limits.clone(),
        rate_limits: rate_limits.clone(),
        services: Arc::new(
            BrokerServices::with_ceilings(broker.clone(), settings.follow_ups)
                .with_leases(running.clone(), settings.lease),
        ),
        outage: outage.clone(),
        backoff: settings.backoff,
        lease: settings.lease,
        stopping: stopping.clone(),
        #[cfg(feature = "otel")]
        tracer: tracer.clone(),
    });
    let upkeep = Arc::new(Upkeep {
        broker: broker.clone(),
        queues: settings.queues.clone(),
        worker_id: settings.worker_id.clone(),
        concurrency: settings.concurrency,
        lease: settings.lease,
        archive: settings.archive,
        started_at_ms: broker::unix_ms(std::time::SystemTime::now()),
        queue_gauges: serves_metrics,
        running: running.clone(),
        plugins,
        probation,
        observer: observer.clone(),
        type_limits: type_limits.clone(),
        outage: outage.clone(),
    });
    tracing::info!(
        redis = broker.url(),
        queues = settings.queues.names().join(","),
        strict = settings.queues.is_strict(),
        concurrency = settings.concurrency,
        worker = settings.worker_id,
        "worker started"
    );

    let notify = Arc::new(Notify::new());
    let mut background = JoinSet::new();
    background.spawn(acknowledging);
    let events = {
        let (running, notify) = (running.clone(), notify.clone());
        move |event| match event {
            QueueEvent::Work => notify.notify_waiters(),
            QueueEvent::Cancel { queue, id } => {
                if let Some(task) = running.get(&queue, &id) {
                    tracing::info!(queue, id, "task cancelled: stopping it");
                    task.stop(CancelReason::Cancelled);
                }
            }
        }
    };
    background.spawn(broker::listen(
        broker.clone(),
        settings.queues.names(),
        events,
        stop_background.clone(),
    ));
    background.spawn(lease::keep_leases(
        broker.clone(),
        running.clone(),
        settings.lease,
        outage.clone(),
        stop_background.clone(),
    ));
    background.spawn(housekeeping::run(upkeep.clone(), stop_background.clone()));
    background.spawn(rate::refresh(
        broker.clone(),
        rate_limits.clone(),
        outage.clone(),
        stop_background.clone(),
    ));

    // Fused: it is polled again after it may have completed.
    let shutdown = futures::FutureExt::fuse(shutdown);
    tokio::pin!(shutdown);
    // The limits per task type and the rate limits must be known before
    // the first task runs, or a limited type could start unchecked.
    let mut stopped_early = false;
    loop {
        match futures::future::try_join(broker.type_limits(), broker.rate_limits()).await {
            Ok((limits, rates)) => {
                type_limits.replace(limits);
                rate_limits.replace(rates);
                break;
            }
            Err(err) => {
                outage.failed(&err);
                tokio::select! {
                    _ = &mut shutdown => {
                        stopped_early = true;
                        break;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    let mut executions = JoinSet::new();
    if !stopped_early {
        let fetch = fetch::Fetch {
            broker: &broker,
            queues: &settings.queues,
            concurrency: settings.concurrency,
            lease: settings.lease,
            idle_poll: settings.idle_poll,
            worker_id: &settings.worker_id,
            outage: &outage,
            path: &path,
            acker: &acker,
            executor: executor.handle(),
        };
        let fetching = fetch.run(notify, stopping.clone(), &mut executions);
        tokio::pin!(fetching);
        tokio::select! {
            _ = &mut fetching => {}
            _ = &mut shutdown => {
                stopping.cancel();
                fetching.await;
            }
        }
    }
    stopping.cancel();

    tracing::info!(
        running = running.len(),
        timeout = %humantime::format_duration(settings.shutdown_timeout),
        "shutting down: no new tasks; waiting for running ones"
    );
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while executions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let stopped = running.cancel_all(CancelReason::Shutdown);
        tracing::info!(
            stopped,
            "shutdown timeout reached: stopping the tasks still running and putting them back"
        );
        while executions.join_next().await.is_some() {}
    }
    stop_background.cancel();
    while background.join_next().await.is_some() {}
    while helpers.join_next().await.is_some() {}
    housekeeping::flush_plugin_stats(&upkeep).await;
    if let Err(err) = broker.forget_server(&settings.worker_id).await {
        tracing::debug!(%err, "could not remove this worker's heartbeat; it expires by itself");
    }
    // Every execution has finished: nothing runs on the sandbox runtime.
    executor.shutdown_background();
    lane.shutdown_background();

    #[cfg(feature = "otel")]
    if let Some(tracer) = tracer {
        tracer.shutdown().await;
    }

    let summary = observer.summary();
    tracing::info!(
        completed = summary.completed,
        failed = summary.failed,
        requeued = summary.requeued,
        "worker stopped"
    );
    Ok(summary)
}

/// The metrics endpoint: `GET /metrics`.
fn metrics_app(metrics: crate::ops::metrics::Metrics) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    metrics.render(),
                )
            }
        }),
    )
}
