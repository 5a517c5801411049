//! A component built against an older, incompatible version of the
//! `wasmq:plugin` package: the host refuses it at load, naming both
//! versions.

wit_bindgen::generate!({
    inline: "
        package wasmq:plugin@0.0.9;

        interface handler {
            handle: func(task: string) -> string;
        }

        world old {
            export handler;
        }
    ",
});

struct Old;

impl exports::wasmq::plugin::handler::Guest for Old {
    fn handle(task: String) -> String {
        task
    }
}

export!(Old);
