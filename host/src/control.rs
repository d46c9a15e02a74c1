//! Controlling a running job: its endpoint on loopback, and its signals.
//!
//! The endpoint takes one request line per connection (`savepoint`,
//! `stop-with-savepoint` or `cancel`) and answers one line (`ok <folder>`, `ok` or
//! `error <why>`); `host savepoint`, `host stop --savepoint` and `host cancel` are its
//! clients. The first SIGINT or SIGTERM stops a job with a savepoint (or cancels one that
//! does not checkpoint, or whose savepoint fails); a second one exits at once.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crossbeam_channel::{Sender, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::checkpoint::coordinator::Command;

/// Opens the endpoint on a free loopback port; savepoint requests go to `commands`,
/// cancellation sets `cancel`.
pub fn serve(commands: Sender<Command>, cancel: Arc<AtomicBool>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let address = listener.local_addr()?;
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up early only loses its own answer.
                let _ = answer(stream, &commands, &cancel);
            }
        })?;
    Ok(address)
}

/// Handles SIGINT and SIGTERM for the rest of the process (see the module's docs).
/// `commands` is `None` for a job that does not checkpoint.
pub fn handle_signals(
    commands: Option<Sender<Command>>,
    cancel: Arc<AtomicBool>,
) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = false;
            for signal in signals.forever() {
                if seen {
                    std::process::exit(128 + signal);
                }
                seen = true;
                let Some(commands) = &commands else {
                    cancel.store(true, Ordering::SeqCst);
                    continue;
                };
                eprintln!("weir: stopping with a savepoint (signal again to exit at once)");
                let (reply, answer) = bounded(1);
                let _ = commands.send(Command::Savepoint { stop: true, reply });
                let cancel = Arc::clone(&cancel);
                thread::spawn(move || {
                    if let Ok(Err(why)) = answer.recv() {
                        eprintln!("weir: no savepoint ({why}): cancelling instead");
                        cancel.store(true, Ordering::SeqCst);
                    }
                });
            }
        })?;
    Ok(())
}

fn answer(
    mut stream: TcpStream,
    commands: &Sender<Command>,
    cancel: &AtomicBool,
) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let stop = match line.trim() {
        "savepoint" => false,
        "stop-with-savepoint" => true,
        "cancel" => {
            cancel.store(true, Ordering::SeqCst);
            return writeln!(stream, "ok");
        }
        other => return writeln!(stream, "error unknown request `{other}`"),
    };
    let (reply, answer) = bounded(1);
    if commands.send(Command::Savepoint { stop, reply }).is_err() {
        return writeln!(stream, "error the job is not running");
    }
    match answer.recv() {
        Ok(Ok(folder)) => writeln!(stream, "ok {}", folder.display()),
        Ok(Err(why)) => writeln!(stream, "error {why}"),
        Err(_) => writeln!(
            stream,
            "error the job stopped before the savepoint completed"
        ),
    }
}

/// Asks the job at `address` for a savepoint (and, with `stop`, to stop after it);
/// returns the savepoint's folder.
pub fn request(address: &str, stop: bool) -> Result<PathBuf, String> {
    let request = if stop {
        "stop-with-savepoint"
    } else {
        "savepoint"
    };
    exchange(address, request).map(PathBuf::from)
}

/// Cancels the job at `address`.
pub fn cancel(address: &str) -> Result<(), String> {
    exchange(address, "cancel").map(|_| ())
}

/// Sends one request line; returns what follows `ok` in the answer.
fn exchange(address: &str, request: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(address)
        .map_err(|e| format!("cannot reach a job's control endpoint at {address}: {e}"))?;
    writeln!(stream, "{request}").map_err(|e| format!("cannot send to {address}: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let line = line.trim_end();
    match line.split_once(' ') {
        _ if line == "ok" => Ok(String::new()),
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some(("error", why)) => Err(why.to_string()),
        _ => Err(format!("no answer from {address} (the job may have ended)")),
    }
}
