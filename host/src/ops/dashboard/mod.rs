//! The web dashboard: a JSON API over the broker and a single-page app
//! served from assets compiled into the binary (it works offline).
//!
//! # API
//! ```text
//! GET  /api/overview                          queues with their numbers, live workers, read-only flag
//! GET  /api/queues/:queue/tasks?state=&page=&size=   one page of a queue's tasks in a state
//! GET  /api/queues/:queue/tasks/:id           one task
//! POST /api/queues/:queue/tasks/:id/:action   run | archive | delete | cancel
//! POST /api/queues/:queue/:action             pause | resume
//! POST /api/queues/:queue/bulk/:action?state= runall | archiveall | deleteall
//! GET  /api/cron                              entries with their next tick and last outcome
//! GET  /api/cron/:name/history?limit=         an entry's ticks
//! GET  /api/plugins                           run statistics per plugin and task type
//! ```
//! Every request passes the checks of [`guard`] first: its `Host` must name
//! the listen address (or a name given with `--allow-host`); with a token
//! set, every API request needs `Authorization: Bearer <token>`; a write
//! (POST) must come from the dashboard's own page (`Origin`,
//! `Sec-Fetch-Site`) and be a request other sites cannot make a browser
//! send (a JSON body, `Content-Type: application/json`, `X-Wasmq-Request:
//! 1`). Writes are refused in read-only mode. Every response carries a
//! strict Content-Security-Policy and the other security headers.

mod guard;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, ArchiveLimits, Broker, BulkAction};
use crate::ops::server::live_servers;
use crate::ops::stats;
use crate::scheduler::status;
use crate::task::TaskState;

/// Who the dashboard answers, and what it lets them do.
#[derive(Debug, Clone, Default)]
pub struct DashboardConfig {
    /// Refuse every write action.
    pub read_only: bool,
    /// The token every API request must carry, if any. Required (and never
    /// empty) when the dashboard listens beyond loopback.
    pub token: Option<String>,
    /// Host names the dashboard answers to besides its listen address and
    /// the loopback names (for a reverse proxy or a DNS name).
    pub allowed_hosts: Vec<String>,
}

struct AppState {
    broker: Broker,
    config: DashboardConfig,
}

type Shared = Arc<AppState>;

/// Serves the dashboard on `listener` until `shutdown`. Refuses (with
/// `InvalidInput`) an empty token, and no token on an address beyond
/// loopback.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Broker,
    config: DashboardConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let bound = listener.local_addr()?;
    check_config(&config, &bound)
        .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidInput, message))?;
    let site = crate::ops::http::Site {
        allowed_hosts: config.allowed_hosts.clone(),
        csp: guard::DASHBOARD_CSP,
        allow_hint: "start the dashboard with --allow-host NAME".into(),
    };
    let app = router(Arc::new(AppState { broker, config }));
    crate::ops::http::serve(listener, app, site, shutdown).await
}

/// Whether an address is reachable only from this machine.
pub fn is_loopback(address: &SocketAddr) -> bool {
    address.ip().is_loopback()
}

/// Why `config` cannot serve on `bound`, if it cannot.
pub fn check_config(config: &DashboardConfig, bound: &SocketAddr) -> Result<(), String> {
    match &config.token {
        Some(token) => check_token(token),
        None if !is_loopback(bound) => Err(format!(
            "a dashboard listening beyond loopback ({bound}) needs a token: anyone who can \
             reach it could read every payload and result"
        )),
        None => Ok(()),
    }
}

/// Why `token` cannot be the dashboard's token, if it cannot: it must be
/// non-empty printable ASCII without spaces (it travels in a header).
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err(
            "the dashboard token is empty, which would let anyone in: give a token \
             (e.g. the output of `openssl rand -hex 16`), or leave --token out to have one generated \
             beyond loopback"
                .into(),
        );
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(
            "the dashboard token may contain only printable ASCII without spaces \
             (it is sent in an Authorization header)"
                .into(),
        );
    }
    Ok(())
}

fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    "index.html",
                    "text/html; charset=utf-8",
                    include_str!("assets/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                asset(
                    "app.js",
                    "text/javascript; charset=utf-8",
                    include_str!("assets/app.js"),
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async {
                asset(
                    "app.css",
                    "text/css; charset=utf-8",
                    include_str!("assets/app.css"),
                )
            }),
        )
        .route("/api/overview", get(overview))
        .route("/api/throughput", get(throughput))
        .route("/api/queues/{queue}/tasks", get(list_tasks))
        .route("/api/queues/{queue}/tasks/{id}", get(show_task))
        .route("/api/flows/{queue}/{id}", get(show_flow))
        .route("/api/queues/{queue}/tasks/{id}/{action}", post(task_action))
        .route("/api/queues/{queue}/bulk/{action}", post(bulk_action))
        .route("/api/queues/{queue}/{action}", post(queue_action))
        .route("/api/cron", get(cron_entries))
        .route("/api/cron/{name}/history", get(cron_history))
        .route("/api/plugins", get(plugins))
        .route("/api/limits", get(limits))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// Serves an asset compiled into the binary, or, when
/// `WASMQ_DASHBOARD_ASSETS` names a directory (while working on the
/// dashboard), the file of that name there.
fn asset(name: &str, content_type: &'static str, built_in: &'static str) -> Response {
    let body = match std::env::var_os("WASMQ_DASHBOARD_ASSETS") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(name))
            .unwrap_or_else(|_| built_in.to_string()),
        None => built_in.to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// An API error: a status and a message for people.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<broker::Error> for ApiError {
    fn from(err: broker::Error) -> Self {
        let status = match &err {
            broker::Error::InvalidTask(_) => StatusCode::BAD_REQUEST,
            broker::Error::TaskActive { .. } | broker::Error::TaskFinished { .. } => {
                StatusCode::CONFLICT
            }
            err if err.is_unreachable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

type ApiResult = Result<Json<serde_json::Value>, ApiError>;

/// Refuses a write action in read-only mode (the token and the request's
/// origin and shape were checked by [`guard::guard`]).
fn authorize(state: &AppState) -> Result<(), ApiError> {
    if state.config.read_only {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the dashboard is read-only".into(),
        ));
    }
    Ok(())
}

async fn overview(State(state): State<Shared>) -> ApiResult {
    let broker = &state.broker;
    let mut queues = Vec::new();
    for queue in broker.queues().await? {
        queues.push(broker.queue_stats(&queue).await?);
    }
    let servers = live_servers(broker).await?;
    Ok(Json(json!({
        "now_ms": broker.server_time_ms().await?,
        "read_only": state.config.read_only,
        "token_required": state.config.token.is_some(),
        "queues": queues,
        "servers": servers,
    })))
}

/// Minutes of history the chart draws when the page opens.
const CHART_HISTORY_MINUTES: usize = 30;

/// Each queue's throughput over the chart's window, from the history
/// workers sample once a minute.
async fn throughput(State(state): State<Shared>) -> ApiResult {
    let broker = &state.broker;
    let mut queues = Vec::new();
    for queue in broker.queues().await? {
        let intervals = broker
            .throughput_history(&queue, CHART_HISTORY_MINUTES)
            .await?;
        queues.push(json!({ "queue": queue, "intervals": intervals }));
    }
    Ok(Json(json!({
        "now_ms": broker.server_time_ms().await?,
        "minutes": CHART_HISTORY_MINUTES,
        "queues": queues,
    })))
}

#[derive(Deserialize)]
struct PageQuery {
    state: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
}

fn parse_state(text: Option<&str>) -> Result<TaskState, ApiError> {
    text.unwrap_or("pending")
        .parse()
        .map_err(|err: String| ApiError(StatusCode::BAD_REQUEST, err))
}

async fn list_tasks(
    State(state): State<Shared>,
    Path(queue): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult {
    let task_state = parse_state(query.state.as_deref())?;
    let size = query.size.unwrap_or(20).clamp(1, 200);
    let page = query.page.unwrap_or(0);
    let ids = state
        .broker
        .task_ids(&queue, task_state, page * size, size)
        .await?;
    let tasks: Vec<_> = state
        .broker
        .task_infos(&queue, &ids)
        .await?
        .iter()
        .map(|info| info.to_json())
        .collect();
    let counts = state.broker.queue_counts(&queue).await?;
    let total = match task_state {
        TaskState::Pending => counts.pending,
        TaskState::Active => counts.active,
        TaskState::Scheduled => counts.scheduled,
        TaskState::Retry => counts.retry,
        TaskState::Archived => counts.archived,
        TaskState::Completed => counts.completed,
        TaskState::Waiting => counts.waiting,
    };
    Ok(Json(
        json!({ "queue": queue, "state": task_state, "page": page, "size": size, "total": total, "tasks": tasks }),
    ))
}

async fn show_task(
    State(state): State<Shared>,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult {
    match state.broker.task_info(&queue, &id).await? {
        Some(info) => Ok(Json(info.to_json())),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no task {id} in queue {queue:?}"),
        )),
    }
}

/// The flow a task belongs to, from its root down, each task with its state.
async fn show_flow(
    State(state): State<Shared>,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult {
    let client = crate::Client::new(state.broker.clone());
    match client.flow(&id, Some(&queue)).await? {
        Some(tree) => Ok(Json(serde_json::to_value(&tree).map_err(|err| {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
        })?)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no task {id} in queue {queue:?}"),
        )),
    }
}

async fn task_action(
    State(state): State<Shared>,
    Path((queue, id, action)): Path<(String, String, String)>,
) -> ApiResult {
    authorize(&state)?;
    let broker = &state.broker;
    let from = match action.as_str() {
        "run" => broker.act_on_task(&queue, &id, BulkAction::Run).await?,
        "archive" => broker.act_on_task(&queue, &id, BulkAction::Archive).await?,
        "delete" => broker.act_on_task(&queue, &id, BulkAction::Delete).await?,
        "cancel" => broker.cancel(&queue, &id, ArchiveLimits::default()).await?,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown task action {other:?}: use run, archive, delete or cancel"),
            ));
        }
    };
    match from {
        Some(from) => Ok(Json(json!({ "ok": true, "action": action, "from": from }))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no task {id} in queue {queue:?}"),
        )),
    }
}

async fn queue_action(
    State(state): State<Shared>,
    Path((queue, action)): Path<(String, String)>,
) -> ApiResult {
    authorize(&state)?;
    broker::keys::validate_queue_name(&queue)?;
    match action.as_str() {
        "pause" => state.broker.pause(&queue).await?,
        "resume" => state.broker.resume(&queue).await?,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown queue action {other:?}: use pause or resume"),
            ));
        }
    }
    Ok(Json(json!({ "ok": true, "action": action })))
}

#[derive(Deserialize)]
struct BulkQuery {
    state: Option<String>,
}

async fn bulk_action(
    State(state): State<Shared>,
    Path((queue, action)): Path<(String, String)>,
    Query(query): Query<BulkQuery>,
) -> ApiResult {
    authorize(&state)?;
    let task_state = parse_state(query.state.as_deref())?;
    let bulk = match action.as_str() {
        "runall" => BulkAction::Run,
        "archiveall" => BulkAction::Archive,
        "deleteall" => BulkAction::Delete,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown bulk action {other:?}: use runall, archiveall or deleteall"),
            ));
        }
    };
    let count = state.broker.act_on_state(&queue, task_state, bulk).await?;
    Ok(Json(
        json!({ "ok": true, "action": action, "count": count }),
    ))
}

async fn cron_entries(State(state): State<Shared>) -> ApiResult {
    let entries = status::entries(&state.broker).await?;
    Ok(Json(serde_json::to_value(entries).unwrap_or_default()))
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn cron_history(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    match status::history(
        &state.broker,
        &name,
        query.limit.unwrap_or(50).clamp(1, 1000),
    )
    .await?
    {
        Some(ticks) => Ok(Json(serde_json::to_value(ticks).unwrap_or_default())),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no cron entry named {name:?}"),
        )),
    }
}

async fn limits(State(state): State<Shared>) -> ApiResult {
    let view = crate::ops::limits::view(&state.broker).await?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

async fn plugins(State(state): State<Shared>) -> ApiResult {
    let mut summaries = Vec::new();
    let mut all = state
        .broker
        .plugin_stats()
        .await?
        .into_iter()
        .collect::<Vec<_>>();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (plugin, fields) in all {
        summaries.extend(stats::summarize(&plugin, &fields));
    }
    let servers = live_servers(&state.broker).await?;
    let loaded: Vec<_> = servers
        .iter()
        .map(|server| json!({ "server": server.id, "plugins": server.plugins }))
        .collect();
    Ok(Json(json!({ "stats": summaries, "loaded": loaded })))
}
