//! The control endpoint of a running job, on loopback: one request line per connection
//! (`savepoint` or `stop-with-savepoint`), answered by one line (`ok <folder>` or
//! `error <why>`). `host savepoint` and `host stop --savepoint` are its clients.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;

use crossbeam_channel::{Sender, bounded};

use crate::checkpoint::coordinator::Command;

/// Opens the endpoint on a free loopback port; requests go to `commands`.
pub fn serve(commands: Sender<Command>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let address = listener.local_addr()?;
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up early only loses its own answer.
                let _ = answer(stream, &commands);
            }
        })?;
    Ok(address)
}

fn answer(mut stream: TcpStream, commands: &Sender<Command>) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let stop = match line.trim() {
        "savepoint" => false,
        "stop-with-savepoint" => true,
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
    let mut stream = TcpStream::connect(address)
        .map_err(|e| format!("cannot reach a job's control endpoint at {address}: {e}"))?;
    let request = if stop {
        "stop-with-savepoint"
    } else {
        "savepoint"
    };
    writeln!(stream, "{request}").map_err(|e| format!("cannot send to {address}: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    match line.trim_end().split_once(' ') {
        Some(("ok", folder)) => Ok(PathBuf::from(folder)),
        Some(("error", why)) => Err(why.to_string()),
        _ => Err(format!("no answer from {address} (the job may have ended)")),
    }
}
