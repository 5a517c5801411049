//! `wasmq enqueue --file`: enqueue every task of a JSON Lines file, in
//! pipelined batches, reporting bad lines by number while the rest go in.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use crate::broker::{self, Enqueued};
use crate::spec::TaskSpec;
use crate::{Client, NewTask};
use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::enqueue::EnqueueArgs;
use super::parse::{self, ExitCode, Failure};

/// Tasks per batch handed to the client (which sends them in script calls
/// of a few hundred).
const BATCH: usize = 1000;
/// Batches in flight at once on the multiplexed connection.
const IN_FLIGHT: usize = 4;

/// One line of the file: a task object, with the command's flags as
/// defaults. A flow node (`children`) is refused: flows go through `wasmq
/// flow add`.
fn line_task(text: &str, defaults: &EnqueueArgs) -> Result<NewTask, String> {
    let spec: TaskSpec = serde_json::from_str(text).map_err(|err| format!("not a task: {err}"))?;
    if spec.children.is_some() || spec.on_failure.is_some() {
        return Err(
            "a task with `children` or `on_failure` is a flow: enqueue it with `wasmq flow add FILE.json`"
                .into(),
        );
    }
    spec.into_task(|task| defaults.apply_defaults(task))
}

/// What happened to the lines of the file.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    invalid: u64,
    /// (line number, error) of every refused line.
    errors: Vec<(u64, String)>,
    /// Set when Redis went away, is out of memory or refused the password:
    /// the remaining lines were not sent.
    unreachable: Option<broker::Error>,
    /// Tasks accepted by the master that fewer replicas than asked for
    /// confirmed (--wait-replicas), and the first such error.
    unreplicated: u64,
    unreplicated_error: Option<broker::Error>,
}

impl Tally {
    fn refuse(&mut self, line: u64, error: String, duplicate: bool, progress: &ProgressBar) {
        if duplicate {
            self.duplicates += 1;
        } else {
            self.invalid += 1;
        }
        progress.suspend(|| eprintln!("line {line}: {error}"));
        self.errors.push((line, error));
    }

    fn record(
        &mut self,
        line: u64,
        outcome: Result<Enqueued, broker::Error>,
        progress: &ProgressBar,
    ) {
        match outcome {
            Ok(_) => self.accepted += 1,
            Err(err @ broker::Error::NotReplicated { .. }) => {
                self.accepted += 1;
                self.unreplicated += 1;
                self.unreplicated_error.get_or_insert(err);
            }
            Err(err)
                if err.is_unreachable()
                    || matches!(
                        err,
                        broker::Error::OutOfMemory { .. } | broker::Error::Auth { .. }
                    ) =>
            {
                if self.unreachable.is_none() {
                    self.unreachable = Some(err);
                }
            }
            Err(
                err @ (broker::Error::DuplicateId { .. } | broker::Error::DuplicateUnique { .. }),
            ) => self.refuse(line, err.to_string(), true, progress),
            Err(err) => self.refuse(line, err.to_string(), false, progress),
        }
        progress.set_message(format!(
            "{} accepted, {} refused",
            self.accepted,
            self.duplicates + self.invalid
        ));
    }
}

/// Runs `wasmq enqueue --file`.
pub(crate) async fn run(args: &EnqueueArgs, file: &Path) -> Result<(), Failure> {
    let (reader, size): (Box<dyn Read>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let opened =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let size = opened.metadata().ok().map(|meta| meta.len());
        (Box::new(opened), size)
    };
    let client = args.client().await?;
    let progress = progress_bar(size);

    let mut tally = Tally::default();
    let mut batch: Vec<(u64, NewTask)> = Vec::with_capacity(BATCH);
    let mut pending_batches = futures::stream::FuturesOrdered::new();
    let mut number = 0u64;
    for line in BufReader::new(reader).lines() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        number += 1;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        match line_task(&line, args) {
            Ok(task) => batch.push((number, task)),
            Err(err) => tally.refuse(number, err, false, &progress),
        }
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            pending_batches.push_back(send(&client, full));
        }
        // Keep up to IN_FLIGHT batches on the wire; settle the oldest first.
        while pending_batches.len() >= IN_FLIGHT {
            if let Some(done) = pending_batches.next().await {
                settle(&mut tally, done, &progress);
            }
        }
        if tally.unreachable.is_some() {
            break;
        }
    }
    if tally.unreachable.is_none() && !batch.is_empty() {
        pending_batches.push_back(send(&client, batch));
    }
    while let Some(done) = pending_batches.next().await {
        settle(&mut tally, done, &progress);
    }
    progress.finish_and_clear();
    report(args, file, &tally)
}

type Sent = Vec<(u64, Result<Enqueued, broker::Error>)>;

async fn send(client: &Client, batch: Vec<(u64, NewTask)>) -> Sent {
    let (numbers, tasks): (Vec<u64>, Vec<NewTask>) = batch.into_iter().unzip();
    let outcomes = client.enqueue_batch(tasks).await;
    numbers.into_iter().zip(outcomes).collect()
}

fn settle(tally: &mut Tally, sent: Sent, progress: &ProgressBar) {
    for (line, outcome) in sent {
        tally.record(line, outcome, progress);
    }
}

fn progress_bar(size: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match size {
        Some(size) => ProgressBar::new(size),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .expect("the template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn report(args: &EnqueueArgs, file: &Path, tally: &Tally) -> Result<(), Failure> {
    let refused = tally.duplicates + tally.invalid;
    if args.json {
        let errors: Vec<_> = tally
            .errors
            .iter()
            .map(|(line, error)| serde_json::json!({"line": line, "error": error}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "accepted": tally.accepted,
                "refused": refused,
                "duplicates": tally.duplicates,
                "invalid": tally.invalid,
                "errors": errors,
            })
        );
    } else {
        println!(
            "{}: {} accepted, {} refused ({} duplicates, {} invalid)",
            file.display(),
            tally.accepted,
            refused,
            tally.duplicates,
            tally.invalid
        );
    }
    if let Some(err) = &tally.unreachable {
        return Err(Failure {
            code: if err.is_unreachable() {
                ExitCode::Unreachable
            } else {
                ExitCode::Error
            },
            error: anyhow::anyhow!(
                "{err}; stopped after {} accepted tasks, the rest of the file was not sent",
                tally.accepted
            ),
            hint: None,
        });
    }
    if let Some(err) = &tally.unreplicated_error {
        return Err(Failure {
            code: ExitCode::Error,
            error: anyhow::anyhow!(
                "{} of the accepted tasks are not confirmed by replicas: {err}",
                tally.unreplicated
            ),
            hint: parse::hint(err),
        });
    }
    match (tally.invalid, tally.duplicates) {
        (0, 0) => Ok(()),
        (0, _) => Err(Failure {
            code: ExitCode::Duplicate,
            error: anyhow::anyhow!("{} lines were refused as duplicates", tally.duplicates),
            hint: None,
        }),
        _ => Err(Failure {
            code: ExitCode::Error,
            error: anyhow::anyhow!("{refused} lines were refused (see above)"),
            hint: None,
        }),
    }
}
