//! `wasmq queue`: pause and resume queues.

use anyhow::Context;
use clap::{Args, Subcommand};
use wasmq::broker::{Broker, keys::validate_queue_name};

use super::RedisArgs;
use super::parse::Failure;

/// The `wasmq queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pause a queue: workers stop taking its tasks (running ones finish);
    /// enqueues still succeed.
    Pause(QueueArgs),
    /// Resume a paused queue: idle workers start on it at once.
    Resume(QueueArgs),
}

/// Arguments naming one queue.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The queue.
    pub name: String,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Runs a `wasmq queue` subcommand.
pub async fn run(command: QueueCommand) -> Result<(), Failure> {
    match command {
        QueueCommand::Pause(args) => {
            validate_queue_name(&args.name)?;
            let broker = Broker::connect(&args.redis.url).await?;
            broker
                .pause(&args.name)
                .await
                .with_context(|| format!("pausing queue {:?}", args.name))?;
            println!(
                "queue {:?} paused: workers take no new tasks from it until `wasmq queue resume {}`",
                args.name, args.name
            );
        }
        QueueCommand::Resume(args) => {
            validate_queue_name(&args.name)?;
            let broker = Broker::connect(&args.redis.url).await?;
            broker
                .resume(&args.name)
                .await
                .with_context(|| format!("resuming queue {:?}", args.name))?;
            println!("queue {:?} resumed", args.name);
        }
    }
    Ok(())
}
