;; The smallest component of the `task-handler` world: one core module with
;; no imports, a bump allocator and a `handle` that returns the payload as
;; its result. `benches/sandbox.rs` instantiates it to show what a fresh
;; instance costs in wasmtime when there is next to nothing to instantiate.
(component
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

  (core module $main
    (memory (export "memory") 1)
    ;; Where the next allocation starts; the first 16 bytes hold the result.
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
    ;; The task, flattened: id, type, payload and queue as (pointer, length),
    ;; then attempt and max-retry. Returns where `ok(payload)` was written.
    (func (export "handle")
      (param i32 i32 i32 i32) (param $payload i32) (param $payload-len i32)
      (param i32 i32 i32 i32)
      (result i32)
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

  ;; The exported interface names its types, as the component model asks.
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
