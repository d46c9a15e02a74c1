//! The Kafka-protocol broker `cargo xtask setup` installs into the tools folder
//! (noida-db), started on a free loopback port with a data folder of its own and stopped
//! by PID when dropped: the tests' broker, and `host bench` W8's when no `--brokers` is
//! given. Nothing else depends on it: the connectors speak plain Kafka.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::job::KafkaClient;

/// A running local broker.
pub struct LocalBroker {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
}

impl LocalBroker {
    /// Starts the tools folder's broker with its data in `data` (which must exist), and
    /// waits until it takes connections.
    pub fn start(data: &Path) -> Result<LocalBroker, String> {
        let binary = crate::author::languages::tools_dir().join("kafka/broker");
        if !binary.exists() {
            return Err(format!(
                "no Kafka broker at {}: `cargo xtask setup` installs one (or name a cluster \
                 with --brokers)",
                binary.display()
            ));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for the broker: {e}"))?
            .port();
        let child = Command::new(&binary)
            .args(["start", "--data-dir"])
            .arg(data)
            .args(["--host", "127.0.0.1", "--only", "kafka", "--kafka-port"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let broker = LocalBroker {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&broker.address).is_err() {
            if Instant::now() > deadline {
                return Err(format!("the broker did not start on {}", broker.address));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(broker)
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `topic` with `partitions` partitions (replication 1) on `client`'s cluster.
pub fn create_topic(client: &KafkaClient, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = super::config(client, &[], &[])
        .create()
        .map_err(|e| super::failed(client, "cannot make an admin client", &e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures_executor::block_on(admin.create_topics(&[new], &AdminOptions::new()))
        .map_err(|e| super::failed(client, &format!("cannot create topic `{topic}`"), &e))?;
    for result in results {
        result.map_err(|(topic, code)| format!("cannot create topic `{topic}`: {code}"))?;
    }
    Ok(())
}
