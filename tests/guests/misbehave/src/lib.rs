//! Test guest: echoes records and counts them per key, and misbehaves when a record's
//! `do` field says so, so tests can see how the host reports and contains it: `panic`,
//! `fail`, `loop` (forever), `grow` (memory without end), `recurse` (without end), and
//! `probe` (tries the file `path`, writing `path`.new, the environment and a socket to
//! `connect`, and emits what it got), `bad-changes`, `bad-removals`,
//! `bad-removal-length` and `bad-list-changes` (send the host batch changes that do not
//! add up, as only a broken SDK would), and `raw-broadcast-put`, `raw-keyed` and
//! `raw-select-keys` (call the host past the SDK's checks: change broadcast state, read
//! keyed state of record 0, select keys), `timer` (sets an event-time timer at `at`),
//! and `rearm` (the same, and sets it again each time it fires: a loop without end).

use guest_sdk::{Config, Context, Error, Operator, Result, Timer, ValueState};
use serde::Deserialize;
use serde_json::Value;

const SEEN: ValueState<u64> = ValueState::new("seen");
/// Whether the key's timer sets itself again when it fires.
const REARM: ValueState<bool> = ValueState::new("rearm");

#[derive(Deserialize)]
struct Command {
    #[serde(rename = "do", default)]
    action: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    connect: String,
    #[serde(default)]
    at: i64,
}

/// Counts records per key when `count` is set in the config; otherwise stateless.
#[derive(Default)]
pub struct Misbehave {
    count: bool,
}

impl Operator for Misbehave {
    type Input = Value;
    type Output = Value;

    fn open(&mut self, config: &Config) -> Result<()> {
        self.count = config.get("count")?.unwrap_or(false);
        Ok(())
    }

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        let command = Command::deserialize(&record)?;
        match command.action.as_str() {
            "panic" => panic!("{}", command.message),
            "fail" => return Err(Error::new(command.message)),
            "loop" => spin(),
            "grow" => grow(),
            "recurse" => return ctx.emit(Value::from(recurse(1))),
            "probe" => return ctx.emit(probe(&command)),
            "bad-changes" => bad_changes(vec![5], Vec::new()),
            "bad-removals" => bad_changes(vec![2], vec![1]),
            "bad-removal-length" => bad_changes(vec![2], vec![0]),
            "bad-list-changes" => bad_list_changes(),
            "raw-broadcast-put" | "raw-keyed" | "raw-select-keys" => raw(&command.action),
            "timer" => ctx.register_event_time_timer(command.at)?,
            "rearm" => {
                REARM.set(&true)?;
                ctx.register_event_time_timer(command.at)?;
            }
            _ => {}
        }
        if self.count {
            let seen = SEEN.get()?.unwrap_or(0) + 1;
            SEEN.set(&seen)?;
        }
        ctx.emit(record)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Value>) -> Result<()> {
        if REARM.get()?.unwrap_or(false) {
            ctx.register_event_time_timer(timer.timestamp)?;
        }
        Ok(())
    }
}

/// Calls `value-set-many` for one record with two bytes of data and these `lengths`
/// and `removals`.
#[cfg_attr(not(target_arch = "wasm32"), allow(unused_variables))]
fn bad_changes(lengths: Vec<u32>, removals: Vec<u32>) {
    #[cfg(target_arch = "wasm32")]
    {
        use guest_sdk::__private::bindings::weir::operator::{state, types::StateKind};
        let id = state::register("seen", StateKind::Value);
        let changes = state::ValueChanges {
            records: vec![0],
            lengths,
            removals,
            data: b"ab".to_vec(),
        };
        state::value_set_many(id, &changes);
    }
}

/// Calls `list-set-many` with two elements announced and one length sent.
fn bad_list_changes() {
    #[cfg(target_arch = "wasm32")]
    {
        use guest_sdk::__private::bindings::weir::operator::{state, types::StateKind};
        let id = state::register("recent", StateKind::List);
        let changes = state::ListChanges {
            records: vec![0],
            counts: vec![2],
            lengths: vec![1],
            data: b"a".to_vec(),
        };
        state::list_set_many(id, &changes);
    }
}

/// Calls the host directly, as a guest without the SDK could.
#[cfg_attr(not(target_arch = "wasm32"), allow(unused_variables))]
fn raw(action: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use guest_sdk::__private::bindings::weir::operator::{
            operator_state, state, types::StateKind,
        };
        match action {
            "raw-broadcast-put" => {
                let id = operator_state::register_broadcast("flags");
                operator_state::broadcast_put(id, b"k", b"1");
            }
            "raw-keyed" => {
                let id = state::register("seen", StateKind::Value);
                state::value_get(id, 0);
            }
            _ => {
                let id = state::register("seen", StateKind::Value);
                state::select_keys(id);
            }
        }
    }
}

/// Never returns (and is not optimised away).
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB after another and keeps them all.
fn grow() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

/// Recurses without end (each frame kept alive by using the result).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let below = recurse(std::hint::black_box(depth + 1));
    std::hint::black_box(below + depth)
}

/// What the sandbox lets through: `"ok: …"` or `"denied: <error>"` per capability.
fn probe(command: &Command) -> Value {
    let outcome = |result: std::io::Result<String>| match result {
        Ok(value) => format!("ok: {value}"),
        Err(e) => format!("denied: {e}"),
    };
    let read = outcome(std::fs::read_to_string(&command.path));
    let write = outcome(
        std::fs::write(format!("{}.new", command.path), "written by a guest")
            .map(|()| String::new()),
    );
    let connect =
        outcome(std::net::TcpStream::connect(&command.connect).map(|_| "connected".to_string()));
    let env: serde_json::Map<String, Value> =
        std::env::vars().map(|(k, v)| (k, Value::from(v))).collect();
    serde_json::json!({"read": read, "write": write, "connect": connect, "env": env})
}

guest_sdk::export_operator!(Misbehave);
