/// <reference path="./interfaces/wasmq-plugin-enqueue.d.ts" />
/// <reference path="./interfaces/wasmq-plugin-flow.d.ts" />
/// <reference path="./interfaces/wasmq-plugin-handler.d.ts" />
/// <reference path="./interfaces/wasmq-plugin-kv.d.ts" />
/// <reference path="./interfaces/wasmq-plugin-log.d.ts" />
/// <reference path="./interfaces/wasmq-plugin-progress.d.ts" />
/// <reference path="./interfaces/wasmq-plugin-types.d.ts" />
declare module 'wasmq:plugin/task-handler@0.1.0' {
  export type * as WasmqPluginEnqueue010 from 'wasmq:plugin/enqueue@0.1.0'; // import wasmq:plugin/enqueue@0.1.0
  export type * as WasmqPluginFlow010 from 'wasmq:plugin/flow@0.1.0'; // import wasmq:plugin/flow@0.1.0
  export type * as WasmqPluginKv010 from 'wasmq:plugin/kv@0.1.0'; // import wasmq:plugin/kv@0.1.0
  export type * as WasmqPluginLog010 from 'wasmq:plugin/log@0.1.0'; // import wasmq:plugin/log@0.1.0
  export type * as WasmqPluginProgress010 from 'wasmq:plugin/progress@0.1.0'; // import wasmq:plugin/progress@0.1.0
  export type * as WasmqPluginTypes010 from 'wasmq:plugin/types@0.1.0'; // import wasmq:plugin/types@0.1.0
  export * as handler from 'wasmq:plugin/handler@0.1.0'; // export wasmq:plugin/handler@0.1.0
}
