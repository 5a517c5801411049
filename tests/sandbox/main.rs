//! Sandbox tests: the example plugins run directly in the library's
//! sandbox (no Redis), checking limits and the classification of failures.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wasmq::FailureKind;

use wasmq::plugins::{LoadOptions, Plugin};
use wasmq::sandbox::{
    ComponentCache, Invocation, Limits, NoServices, Sandbox, SandboxConfig, Services, TaskLabel,
};
use wasmq_testkit::hostile_wat::{Hogs, hog_component};
use wasmq_testkit::{
    BURN_COMPONENT, ECHO_COMPONENT, FLAKY_COMPONENT, HOSTILE_BIGMESSAGE_COMPONENT, LOOP_COMPONENT,
    THUMBNAIL_COMPONENT,
};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        max_instances: 16,
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn load(sandbox: &Sandbox, component: &str, limits: Limits) -> Plugin {
    let cache = ComponentCache::new(wasmq_testkit::component_cache_dir());
    let options = LoadOptions {
        defaults: limits,
        cache: Some(cache),
        ..LoadOptions::default()
    };
    Plugin::load_file(sandbox, Path::new(component), &options).unwrap()
}

async fn run(
    sandbox: &Sandbox,
    plugin: &Plugin,
    task_type: &str,
    payload: &str,
    attempt: u32,
) -> Result<Vec<u8>, wasmq::TaskFailure> {
    let label = TaskLabel {
        plugin: plugin.manifest.name.clone(),
        task_id: "t1".into(),
        task_type: task_type.into(),
        attempt,
        queue: "default".into(),
    };
    let invocation = Invocation {
        id: "t1",
        task_type,
        payload: payload.as_bytes(),
        queue: "default",
        attempt,
        max_retry: 3,
    };
    sandbox
        .run(
            &plugin.prepared,
            label,
            invocation,
            &plugin.limits,
            &plugin.grants,
            &services(),
            &CancellationToken::new(),
        )
        .await
        .result
}

/// No key-value store or queue: these tests run without Redis.
fn services() -> Arc<dyn Services> {
    Arc::new(NoServices)
}

/// The manifest embedded by the SDK's macro names the plugin and its types.
#[test]
fn manifests_name_each_example_plugin_and_its_task_types() {
    let sandbox = sandbox();
    for (component, name, types) in [
        (ECHO_COMPONENT, "echo", vec!["echo"]),
        (FLAKY_COMPONENT, "flaky", vec!["flaky"]),
        (LOOP_COMPONENT, "loop", vec!["loop"]),
        (BURN_COMPONENT, "burn", vec!["burn"]),
        (THUMBNAIL_COMPONENT, "thumbnail", vec!["thumbnail:make"]),
    ] {
        let plugin = load(&sandbox, component, Limits::default());
        assert_eq!(plugin.manifest.name, name);
        assert_eq!(plugin.manifest.task_types, types);
        assert_eq!(plugin.manifest.version, "0.1.0");
    }
}

/// Each task gets a fresh instance: echo returns exactly its payload.
#[tokio::test]
async fn echo_returns_its_payload() {
    let sandbox = sandbox();
    let plugin = load(&sandbox, ECHO_COMPONENT, Limits::default());
    for payload in [r#"{"a":1}"#, "[1,2,3]", r#""text""#] {
        let result = run(&sandbox, &plugin, "echo", payload, 1).await.unwrap();
        assert_eq!(String::from_utf8(result).unwrap(), payload);
    }
}

/// The thumbnail plugin does real work on a real picture.
#[tokio::test]
async fn thumbnail_makes_a_png_of_the_requested_size() {
    let sandbox = sandbox();
    let plugin = load(&sandbox, THUMBNAIL_COMPONENT, Limits::default());
    let result = run(
        &sandbox,
        &plugin,
        "thumbnail:make",
        r#"{"width":64,"generate":{"width":640,"height":480}}"#,
        1,
    )
    .await
    .unwrap();
    let result: serde_json::Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(result["width"], 64);
    assert_eq!(result["height"], 48, "the aspect ratio is kept");
    assert_eq!(
        (
            result["source_width"].as_u64(),
            result["source_height"].as_u64()
        ),
        (Some(640), Some(480))
    );
    assert!(
        result["png_base64"]
            .as_str()
            .unwrap()
            .starts_with("iVBORw0KGgo"),
        "a PNG signature"
    );
}

/// A memory bomb is stopped by the memory cap and reported as such.
#[tokio::test]
async fn a_picture_too_big_for_the_memory_cap_fails_as_out_of_memory() {
    let sandbox = sandbox();
    let limits = Limits {
        memory_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let plugin = load(&sandbox, THUMBNAIL_COMPONENT, limits);
    let failure = run(
        &sandbox,
        &plugin,
        "thumbnail:make",
        r#"{"width":64,"generate":{"width":4000,"height":3000}}"#,
        1,
    )
    .await
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::OutOfMemory, "{failure}");
    assert!(
        failure.message.contains("over its cap of 8388608 bytes"),
        "{failure}"
    );
}

/// Runaway code is stopped by fuel, or by the deadline when fuel is ample.
#[tokio::test]
async fn an_endless_loop_is_stopped_by_fuel_or_by_time() {
    let sandbox = sandbox();
    let fuel_bound = load(
        &sandbox,
        LOOP_COMPONENT,
        Limits {
            fuel: Some(10_000_000),
            ..Limits::default()
        },
    );
    let failure = run(&sandbox, &fuel_bound, "loop", "{}", 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::OutOfFuel, "{failure}");

    let time_bound = load(
        &sandbox,
        LOOP_COMPONENT,
        Limits {
            fuel: Some(u64::MAX),
            timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    );
    let failure = run(&sandbox, &time_bound, "loop", "{}", 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
}

/// A cancelled task stops at once and says so.
#[tokio::test]
async fn cancelling_stops_a_running_instance() {
    let sandbox = sandbox();
    let plugin = load(
        &sandbox,
        LOOP_COMPONENT,
        Limits {
            fuel: Some(u64::MAX),
            timeout: Duration::from_secs(60),
            ..Limits::default()
        },
    );
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let label = TaskLabel {
        plugin: "loop".into(),
        task_id: "t".into(),
        task_type: "loop".into(),
        attempt: 1,
        queue: "default".into(),
    };
    let invocation = Invocation {
        id: "t",
        task_type: "loop",
        payload: b"{}",
        queue: "default",
        attempt: 1,
        max_retry: 0,
    };
    let outcome = sandbox
        .run(
            &plugin.prepared,
            label,
            invocation,
            &plugin.limits,
            &plugin.grants,
            &services(),
            &cancel,
        )
        .await;
    assert_eq!(outcome.result.unwrap_err().kind, FailureKind::Cancelled);
}

/// Handler failures keep their class: retry, and bad payloads.
#[tokio::test]
async fn handler_failures_are_classified() {
    let sandbox = sandbox();
    let plugin = load(&sandbox, FLAKY_COMPONENT, Limits::default());
    let failure = run(&sandbox, &plugin, "flaky", r#"{"fail_times":2}"#, 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::HandlerError);
    let result = run(&sandbox, &plugin, "flaky", r#"{"fail_times":2}"#, 3)
        .await
        .unwrap();
    assert_eq!(result, br#"{"succeeded_on_attempt":3}"#);
    let failure = run(&sandbox, &plugin, "flaky", r#"{"nope":1}"#, 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::BadPayload);
    assert!(
        failure.message.contains("missing field `fail_times`"),
        "{failure}"
    );
}

/// A result over the plugin's cap is refused.
#[tokio::test]
async fn a_result_over_the_cap_is_refused() {
    let sandbox = sandbox();
    let plugin = load(
        &sandbox,
        ECHO_COMPONENT,
        Limits {
            max_result_bytes: 10,
            ..Limits::default()
        },
    );
    let failure = run(&sandbox, &plugin, "echo", r#"{"long":"0123456789"}"#, 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::ResultTooLarge);
}

/// Instances reuse the pooling allocator's slots, but a task never sees
/// what an earlier one left in memory: the snooping plugin marks its
/// statics (near the start of its memory and megabytes in) on every run and
/// would complete if it ever found a mark.
#[tokio::test]
async fn no_task_sees_what_an_earlier_one_left_in_memory() {
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 1,
        ..SandboxConfig::default()
    })
    .unwrap();
    let plugin = load(
        &sandbox,
        wasmq_testkit::HOSTILE_SNOOP_COMPONENT,
        Limits::default(),
    );
    for run_number in 1..=5 {
        let failure = run(&sandbox, &plugin, "hostile:snoop", "{}", 1)
            .await
            .expect_err("the snooping plugin saw something");
        assert_eq!(failure.kind, FailureKind::GaveUp, "run {run_number}");
        assert!(
            failure.message.contains("no leftovers"),
            "run {run_number}: {}",
            failure.message
        );
    }
}

/// Loads component bytes made by the test (e.g. WAT) as a plugin.
fn load_bytes(sandbox: &Sandbox, wasm: &[u8], limits: Limits) -> Result<Plugin, String> {
    let options = LoadOptions {
        defaults: limits,
        ..LoadOptions::default()
    };
    Plugin::load(sandbox, wasm, Path::new("hog.wasm"), &options).map_err(|err| err.to_string())
}

/// Why component bytes are refused at load.
fn refused(sandbox: &Sandbox, wasm: &[u8], limits: Limits) -> String {
    match load_bytes(sandbox, wasm, limits) {
        Ok(_) => panic!("the component was loaded"),
        Err(reason) => reason,
    }
}

fn hogs(instances: u32, min_pages: u32, grow_pages: u32) -> Hogs {
    Hogs {
        instances,
        min_pages,
        grow_pages,
        table_elements: 0,
        spin: false,
    }
}

/// The memory cap holds for everything one task allocates: four core
/// instances that each fill 12 MiB of a memory of their own, each under a
/// 16 MiB cap, together go over it and fail as out of memory. One of them
/// alone fits.
#[tokio::test]
async fn the_memory_cap_holds_for_all_memories_of_a_task_together() {
    let sandbox = sandbox();
    let one = hog_component("hog-one", "hog", Some("16MiB"), hogs(1, 1, 192));
    let plugin = load_bytes(&sandbox, &one, Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run(&sandbox, &plugin, "hog", "{}", 1).await.unwrap(), b"{}");

    let four = hog_component("hog-four", "hog", Some("16MiB"), hogs(4, 1, 192));
    let plugin = load_bytes(&sandbox, &four, Limits::default()).unwrap();
    let failure = run(&sandbox, &plugin, "hog", "{}", 1).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::OutOfMemory, "{failure}");
    assert!(
        failure
            .message
            .contains("all its core instances together) to")
            && failure.message.contains("over its cap of 16777216 bytes"),
        "{failure}"
    );
}

/// A component that would create more memories or core instances than the
/// worker allows one task is refused when it is loaded, with the reason.
#[test]
fn a_component_declaring_too_many_memories_or_instances_is_refused_at_load() {
    let sandbox = sandbox();
    let limits = SandboxConfig::default();
    let memories = limits.max_memories_per_component;
    // One memory per hog, and the handler's own.
    let wasm = hog_component("many-memories", "hog", None, hogs(memories, 1, 0));
    let error = refused(&sandbox, &wasm, Limits::default());
    assert!(
        error.contains(&format!(
            "creates {} linear memories per instance, over this worker's limit of {memories} (its max-component-memories)",
            memories + 1
        )),
        "{error}"
    );
    let instances = limits.max_core_instances_per_component;
    let wasm = hog_component(
        "many-instances",
        "hog",
        None,
        Hogs {
            min_pages: 0,
            ..hogs(instances, 0, 0)
        },
    );
    let error = refused(&sandbox, &wasm, Limits::default());
    assert!(
        error.contains(&format!(
            "creates {} core module instances per instance",
            instances + 1
        )),
        "{error}"
    );
    // Just within the limits, the same component loads and runs.
    let wasm = hog_component("enough", "hog", None, hogs(memories - 1, 1, 0));
    load_bytes(&sandbox, &wasm, Limits::default()).unwrap();
}

/// Memories and tables that start larger than the plugin's memory cap (or
/// a table longer than the worker allows) are refused at load: every
/// attempt would fail.
#[test]
fn a_minimum_size_over_the_cap_is_refused_at_load() {
    let sandbox = sandbox();
    // Two memories of 10 MiB each: each under 16 MiB, not both.
    let wasm = hog_component("big-start", "hog", Some("16MiB"), hogs(2, 160, 0));
    let error = refused(&sandbox, &wasm, Limits::default());
    assert!(
        error.contains("take 21037056 bytes as soon as it is instantiated, over the plugin's memory cap of 16777216 bytes"),
        "{error}"
    );
    let wasm = hog_component(
        "long-table",
        "hog",
        None,
        Hogs {
            table_elements: 5_000_000,
            ..hogs(1, 1, 0)
        },
    );
    let error = refused(&sandbox, &wasm, Limits::default());
    assert!(
        error.contains("a table of 5000000 elements at its minimum, over this worker's limit of 100000 elements per table"),
        "{error}"
    );
}

/// Table elements count against the same cap as memories.
#[tokio::test]
async fn tables_count_against_the_memory_cap() {
    let sandbox = sandbox();
    // Seven tables of 100,000 elements (800 KB each) and 1 MiB of memory:
    // within 8 MiB. Seven 1 MiB memories and the tables: not.
    let tables = Hogs {
        table_elements: 100_000,
        ..hogs(7, 0, 0)
    };
    let wasm = hog_component("tables", "hog", Some("8MiB"), tables);
    let plugin = load_bytes(&sandbox, &wasm, Limits::default()).unwrap();
    assert_eq!(run(&sandbox, &plugin, "hog", "{}", 1).await.unwrap(), b"{}");
    let wasm = hog_component(
        "tables-and-memories",
        "hog",
        Some("8MiB"),
        Hogs {
            grow_pages: 16,
            ..tables
        },
    );
    let plugin = load_bytes(&sandbox, &wasm, Limits::default()).unwrap();
    let failure = run(&sandbox, &plugin, "hog", "{}", 1).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::OutOfMemory, "{failure}");
}

/// A plugin holds at most its share of instances: a task beyond it fails
/// as `worker-busy` (which the worker treats as no attempt) at once, while
/// another plugin still runs.
#[tokio::test]
async fn a_plugin_beyond_its_share_of_instances_is_busy() {
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 4,
        max_instances_per_plugin: Some(1),
        ..SandboxConfig::default()
    })
    .unwrap();
    let looping = load(
        &sandbox,
        LOOP_COMPONENT,
        Limits {
            fuel: Some(u64::MAX),
            timeout: Duration::from_millis(500),
            ..Limits::default()
        },
    );
    let echo = load(&sandbox, ECHO_COMPONENT, Limits::default());
    // `join!` polls in order: the first loop takes the plugin's one
    // instance before the second asks.
    let (first, second, neighbour) = tokio::join!(
        run(&sandbox, &looping, "loop", "{}", 1),
        run(&sandbox, &looping, "loop", "{}", 1),
        run(&sandbox, &echo, "echo", "{}", 1),
    );
    assert_eq!(first.unwrap_err().kind, FailureKind::Timeout);
    let busy = second.unwrap_err();
    assert_eq!(busy.kind, FailureKind::WorkerBusy, "{busy}");
    assert!(busy.message.contains("max-instances-per-plugin"), "{busy}");
    assert_eq!(neighbour.unwrap(), b"{}");
    // The share comes back when the instance ends.
    let failure = run(&sandbox, &looping, "loop", "{}", 1).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout);
}

/// A failure message is cut to the plugin's limit, with a note saying how
/// much was cut; one far larger than anything the plugin may pass the host
/// is refused before it is copied.
#[tokio::test]
async fn huge_failure_messages_are_bounded() {
    let sandbox = sandbox();
    let plugin = load(&sandbox, HOSTILE_BIGMESSAGE_COMPONENT, Limits::default());
    let failure = run(&sandbox, &plugin, "hostile:bigmessage", "{}", 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::GaveUp);
    let limit = Limits::default().max_message_bytes;
    assert!(
        failure.message.len() < limit + 64,
        "{}",
        failure.message.len()
    );
    assert!(
        failure.message.ends_with(&format!(
            "... [{} of {} bytes cut]",
            (512 << 10) - limit,
            512 << 10
        )),
        "{}",
        &failure.message[limit - 16..]
    );

    let failure = run(&sandbox, &plugin, "hostile:hugemessage", "{}", 1)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::ResultTooLarge, "{failure}");
    assert!(
        failure.message.contains("refused before being copied"),
        "{failure}"
    );

    // A log line over its cap is cut, not refused.
    assert_eq!(
        run(&sandbox, &plugin, "hostile:bigline", "{}", 1)
            .await
            .unwrap(),
        b"1"
    );
}
/// A plugin that declares a non-final function type (the GC proposal's
/// subtyping) is refused at load: with the proposal on, wasmtime 48.0.8
/// without its `gc` feature aborts the process at the run-time subtype
/// check of such a `call_indirect`. Compiled only, never run.
#[test]
fn a_plugin_declaring_a_function_subtype_is_refused_at_load() {
    let bytes = wat::parse_str(
        r#"(component
             (core module $m
               (type $t (sub (func)))
               (table 1 funcref)
               (func (export "f") (call_indirect (type $t) (i32.const 0))))
             (core instance (instantiate $m)))"#,
    )
    .expect("the component text parses");
    match sandbox().compile(&bytes, None) {
        Err(wasmq::sandbox::LoadError::Invalid(message)) => assert!(
            message.contains("gc proposal") || message.contains("subtype"),
            "refused for another reason: {message}"
        ),
        Err(other) => panic!("refused, but not as invalid: {other}"),
        Ok(_) => panic!("a component with a function subtype was accepted"),
    }
}

/// A plugin using shared-memory atomics is refused at load: the threads
/// proposal stays off (wasmtime is built without `threads`, and with the
/// proposal on, 48.0.8's stubs for `memory.atomic.notify` and the waits
/// abort the process: GHSA-2674-w29h-wqvj). Compiled only, never run.
#[test]
fn a_plugin_using_atomics_is_refused_at_load() {
    let bytes = wat::parse_str(
        r#"(component
             (core module $m
               (memory 1)
               (func (export "f")
                 (drop (memory.atomic.notify (i32.const 0) (i32.const 1)))))
             (core instance (instantiate $m)))"#,
    )
    .expect("the component text parses");
    match sandbox().compile(&bytes, None) {
        Err(wasmq::sandbox::LoadError::Invalid(_)) => {}
        Err(other) => panic!("refused, but not as invalid: {other}"),
        Ok(_) => panic!("a component using atomics was accepted"),
    }
}

/// The Python and JavaScript example plugins, built with the real
/// toolchains, load in a sandbox configured as a worker is by default
/// (core instances, memories and tables per component, the pool sized from
/// them) with a worker's default limits (which give them 256 MiB of
/// memory), say what language they are, and run a task in a fresh
/// instance.
#[tokio::test]
async fn python_and_javascript_plugins_fit_a_default_worker() {
    use wasmq::plugins::{Language, build_info};
    use wasmq_testkit::polyglot::{self, JS_EXAMPLE, PYTHON_EXAMPLE};

    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 4,
        ..SandboxConfig::default()
    })
    .unwrap();
    for (plugin, task_type, language) in [
        (PYTHON_EXAMPLE, "py:echo", Language::Python),
        (JS_EXAMPLE, "js:echo", Language::JavaScript),
    ] {
        let path = polyglot::component(plugin, Path::new(env!("CARGO_BIN_EXE_wasmq")));
        let wasm = std::fs::read(&path).unwrap();
        let info = build_info(&wasm).unwrap();
        assert_eq!(info.language, language);
        assert!(!info.toolchain.is_empty(), "{info:?}");
        let loaded = load(&sandbox, path.to_str().unwrap(), Limits::default());
        assert_eq!(loaded.limits.memory_bytes, 256 << 20, "{plugin}");
        for _ in 0..3 {
            let result = run(&sandbox, &loaded, task_type, r#"{"x":[1,"two"]}"#, 1)
                .await
                .unwrap();
            let result: serde_json::Value = serde_json::from_slice(&result).unwrap();
            assert_eq!(result, serde_json::json!({"x": [1, "two"]}));
        }
    }
}
