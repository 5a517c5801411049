//! Hostile components written in WAT, made at test time: a component of
//! the `task-handler` world (one core module whose `handle` returns the
//! payload) with extra core instances that each hold a memory (and,
//! optionally, a table) of their own, filled (every 4 KiB page touched) as they are instantiated.
//! The manifest is appended as the `wasmq-manifest` custom section, so the
//! bytes load as a plugin.

/// What the extra core instances of a [`hog_component`] hold.
#[derive(Debug, Clone, Copy)]
pub struct Hogs {
    /// Extra core instances (of one module).
    pub instances: u32,
    /// Each one's memory at its start, 64 KiB pages.
    pub min_pages: u32,
    /// Pages each grows its memory by (and touches) as it is instantiated.
    pub grow_pages: u32,
    /// Elements of a table each one defines (0: none).
    pub table_elements: u32,
    /// Whether `handle` spins forever instead of returning (stopped by
    /// fuel or time), so that the instance holds what it made.
    pub spin: bool,
}

/// A plugin named `name` handling `task_type`, with `memory` (e.g.
/// `"16MiB"`) as its manifest's memory limit when given, whose instances
/// create the `hogs` before handling a task like echo.
pub fn hog_component(name: &str, task_type: &str, memory: Option<&str>, hogs: Hogs) -> Vec<u8> {
    let Hogs {
        instances,
        min_pages,
        grow_pages,
        table_elements,
        spin,
    } = hogs;
    let spin = if spin { "(loop $spin (br $spin))" } else { "" };
    let end = (u64::from(min_pages) + u64::from(grow_pages)) * 65536;
    let end = end.min(i32::MAX as u64);
    let table = if table_elements > 0 {
        format!("(table {table_elements} funcref)")
    } else {
        String::new()
    };
    let hog_instances = "  (core instance (instantiate $hog))\n".repeat(instances as usize);
    let text = format!(
        r#"(component
  (type $types (instance
    (type $bytes (list u8))
    (type $task-def (record
      (field "id" string) (field "task-type" string) (field "payload" $bytes)
      (field "queue" string) (field "attempt" u32) (field "max-retry" u32)))
    (export "task" (type (eq $task-def)))
    (type $failure-def (variant
      (case "retry" string) (case "give-up" string) (case "bad-payload" string)))
    (export "failure" (type (eq $failure-def)))))
  (import "wasmq:plugin/types@0.1.0" (instance $types-instance (type $types)))
  (alias export $types-instance "task" (type $task))
  (alias export $types-instance "failure" (type $failure))

  (core module $hog
    (memory {min_pages})
    {table}
    (func $fill
      (local $at i32)
      (if (i32.eq (memory.grow (i32.const {grow_pages})) (i32.const -1))
        (then unreachable))
      (block $done
        (loop $touch
          (br_if $done (i64.ge_u (i64.extend_i32_u (local.get $at)) (i64.const {end})))
          (i32.store8 (local.get $at) (i32.const 1))
          (local.set $at (i32.add (local.get $at) (i32.const 4096)))
          (br $touch))))
    (start $fill))
{hog_instances}
  (core module $main
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 16))
    (func (export "cabi_realloc")
      (param $old i32) (param $old-size i32) (param $align i32) (param $size i32)
      (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $at) (local.get $size)))
      (local.get $at))
    (func (export "handle")
      (param i32 i32 i32 i32) (param $payload i32) (param $payload-len i32)
      (param i32 i32 i32 i32)
      (result i32)
      {spin}
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get $payload))
      (i32.store (i32.const 8) (local.get $payload-len))
      (i32.const 0)))
  (core instance $main-instance (instantiate $main))
  (alias core export $main-instance "memory" (core memory $memory))
  (alias core export $main-instance "cabi_realloc" (core func $realloc))
  (alias core export $main-instance "handle" (core func $handle-core))

  (type $bytes (list u8))
  (type $outcome (result $bytes (error $failure)))
  (func $handle (param "task" $task) (result $outcome)
    (canon lift (core func $handle-core) (memory $memory) (realloc $realloc)))

  (component $handler
    (type $bytes (list u8))
    (type $task-def (record
      (field "id" string) (field "task-type" string) (field "payload" $bytes)
      (field "queue" string) (field "attempt" u32) (field "max-retry" u32)))
    (import "task-type" (type $task-import (eq $task-def)))
    (type $failure-def (variant
      (case "retry" string) (case "give-up" string) (case "bad-payload" string)))
    (import "failure-type" (type $failure-import (eq $failure-def)))
    (type $outcome-in (result $bytes (error $failure-import)))
    (import "handle-func" (func $handle (param "task" $task-import) (result $outcome-in)))
    (export $task-export "task" (type $task-import))
    (export $failure-export "failure" (type $failure-import))
    (type $outcome-out (result $bytes (error $failure-export)))
    (export "handle" (func $handle) (func (param "task" $task-export) (result $outcome-out))))
  (instance $handler-instance (instantiate $handler
    (with "task-type" (type $task))
    (with "failure-type" (type $failure))
    (with "handle-func" (func $handle))))
  (export "wasmq:plugin/handler@0.1.0" (instance $handler-instance)))
"#
    );
    let mut wasm = wat::parse_str(&text).expect("the hog component's WAT parses");
    let limits = match memory {
        Some(memory) => format!("\n[limits]\nmemory = \"{memory}\"\n"),
        None => String::new(),
    };
    let manifest =
        format!("name = \"{name}\"\nversion = \"1.0.0\"\ntask_types = [\"{task_type}\"]\n{limits}");
    append_custom_section(&mut wasm, "wasmq-manifest", manifest.as_bytes());
    wasm
}

/// Appends a custom section (allowed anywhere in a component).
fn append_custom_section(wasm: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    wasm.push(0);
    leb128(wasm, payload.len() as u64);
    wasm.extend_from_slice(&payload);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
