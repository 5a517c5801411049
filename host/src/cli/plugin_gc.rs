//! `wasmq plugin gc` and `wasmq plugin retention`: keeping the plugin
//! registry small.

use crate::plugins::registry;

use super::format;
use super::parse::Failure;
use super::plugin::{GcArgs, KeptVersions, RetentionArgs};

/// Versions kept per plugin when neither `--keep` nor the fleet says.
const DEFAULT_KEEP: usize = 10;

/// Runs `wasmq plugin gc`.
pub(crate) async fn collect(args: GcArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("plugin").await?;
    let keep = match args.keep {
        Some(keep) => keep as usize,
        None => broker.plugin_retention().await?.unwrap_or(DEFAULT_KEEP),
    };
    let collected = registry::collect_garbage(&broker, keep, args.dry_run).await?;
    let freed: u64 = collected.deleted.iter().map(|(_, bytes)| bytes).sum();
    let (verb, trim_verb) = if args.dry_run {
        ("would delete", "would drop")
    } else {
        ("deleted", "dropped")
    };
    for (digest, bytes) in &collected.deleted {
        println!(
            "{verb} sha256:{} ({})",
            registry::short_digest(digest),
            format::bytes(*bytes)
        );
    }
    println!(
        "kept the newest {keep} version(s) of each plugin and every version a live worker runs; {verb} {} component(s), {} in all; {trim_verb} {} older history entr{}",
        collected.deleted.len(),
        format::bytes(freed),
        collected.trimmed,
        if collected.trimmed == 1 { "y" } else { "ies" }
    );
    if args.dry_run {
        println!("(a dry run: nothing was changed)");
    }
    Ok(())
}

/// Runs `wasmq plugin retention`.
pub(crate) async fn retention(args: RetentionArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("plugin").await?;
    match args.keep {
        None => match broker.plugin_retention().await? {
            Some(keep) => println!(
                "workers keep the newest {keep} version(s) of each plugin, collecting the rest after each deploy and every 10 minutes"
            ),
            None => println!(
                "off: every version is kept (`wasmq plugin retention N` makes workers keep N; `wasmq plugin gc` collects once)"
            ),
        },
        Some(KeptVersions::Off) => {
            broker.set_plugin_retention(None).await?;
            println!("off: workers keep every version");
        }
        Some(KeptVersions::Newest(keep)) => {
            broker.set_plugin_retention(Some(keep as usize)).await?;
            println!(
                "workers now keep the newest {keep} version(s) of each plugin (and any a worker runs), collecting the rest after each deploy and every 10 minutes; `wasmq plugin gc --dry-run` shows what goes"
            );
        }
    }
    Ok(())
}
