//! Hostile: opens a TCP connection (to Redis's usual port on loopback).

use wasmq_guest::{Failure, Handler, Task};

struct Socket;

impl Handler for Socket {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        match std::net::TcpStream::connect("127.0.0.1:6379") {
            Ok(_) => Ok(()),
            Err(err) => Err(Failure::retry(format!("could not connect: {err}"))),
        }
    }
}

wasmq_guest::plugin! {
    handler: Socket,
    name: "hostile-socket",
    task_types: ["hostile:socket"],
}
