//! RabbitMQ under test: a [`Writer`] that publishes unique ids with publisher confirms to a
//! scratch quorum queue through the RabbitMQ VIP (acknowledged = confirmed), the read-back
//! of every id in the queue (delivered to a consumer and left unacknowledged, so closing
//! the connection returns them: reading does not consume), and the queue leader and its online
//! members as `rabbitmqctl list_queues` reports them on the members (kbz-rabbitmq parses
//! `cluster_status`). [`RabbitService`] is the [`ServiceTarget`].

use crate::observe::Member;
use crate::service::ServiceTarget;
use crate::workload::{WriteError, Writer};
use crate::FaultError;
use kbz_core::{Cmd, Secret};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The scratch queue (a quorum queue; nothing else of the cluster uses the name).
pub const QUEUE: &str = "kbz-faults";

/// The most messages a read-back holds unacknowledged (the largest AMQP prefetch count).
pub const READ_MAX: u16 = u16::MAX;

/// The shortest time between two writes of one writer: the read-back holds at most
/// [`READ_MAX`] messages, so 4 writers (kbz-failover's default) stay near 200 a second.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(20);

/// Where the writers publish and how the members are asked.
#[derive(Debug, Clone)]
pub struct RabbitTarget {
    /// The RabbitMQ hosts.
    pub members: Vec<Member>,
    /// The VIP (AMQP on [`RabbitTarget::port`]).
    pub vip: IpAddr,
    /// The AMQP port on the VIP and the members.
    pub port: u16,
    /// The application user.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// The application vhost (quorum queues by default).
    pub vhost: String,
    /// Bound of one publish and its confirm, or of one connect.
    pub timeout: Duration,
    /// Where connections really go (the bastion's tunnels; empty: directly).
    pub routes: kbz_core::net::Routes,
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RabbitTarget {
    fn uri(&self, ip: IpAddr) -> String {
        let to = self.routes.resolve(ip, self.port);
        format!(
            "amqp://{}:{}@{}/{}",
            pct(&self.user),
            pct(self.password.expose()),
            kbz_core::net::host_port(to.ip(), to.port()),
            pct(&self.vhost)
        )
    }

    fn err(&self, ip: IpAddr, reason: impl std::fmt::Display) -> FaultError {
        FaultError::Rabbitmq {
            addr: kbz_core::net::host_port(ip, self.port),
            reason: reason.to_string(),
        }
    }

    /// A channel with publisher confirms through `ip` (the VIP or a member).
    async fn channel(&self, ip: IpAddr) -> Result<(Connection, Channel), FaultError> {
        let uri = self.uri(ip);
        let open = async {
            let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>((conn, ch))
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.err(ip, e)),
            Err(_) => Err(self.err(ip, "connect timed out")),
        }
    }

    /// Declares the scratch queue as a quorum queue (explicitly: the harness does not rely
    /// on the vhost's default) through `ip`.
    async fn declare(&self, ch: &Channel, ip: IpAddr) -> Result<(), FaultError> {
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
        ch.queue_declare(
            QUEUE,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map(|_| ())
        .map_err(|e| self.err(ip, e))
    }

    /// Every id in the scratch queue, read through `ip` without consuming: one consumer
    /// with manual acknowledgements and a prefetch of [`READ_MAX`] receives the messages
    /// (the leader pushes them; `basic.get` would cost a Raft command each), none is
    /// acknowledged, and closing the connection returns them all to the queue.
    pub async fn read_ids(&self, ip: IpAddr) -> Result<Vec<i64>, FaultError> {
        let (conn, ch) = self.channel(ip).await?;
        let r = self.read_on(&ch, ip).await;
        let _ = conn.close(200, "read back").await;
        r
    }

    async fn read_on(&self, ch: &Channel, ip: IpAddr) -> Result<Vec<i64>, FaultError> {
        let e = |x: lapin::Error| self.err(ip, x);
        let q = ch
            .queue_declare(
                QUEUE,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(e)?;
        let want = q.message_count() as usize;
        if want > READ_MAX as usize {
            return Err(self.err(
                ip,
                format!("{want} messages in {QUEUE}: more than the {READ_MAX} a read-back can hold unacknowledged (run fewer --writers or a shorter --duration)"),
            ));
        }
        ch.basic_qos(READ_MAX, BasicQosOptions::default())
            .await
            .map_err(e)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let consumer = ch
            .basic_consume(
                QUEUE,
                "kbz-faults-read",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(e)?;
        consumer.set_delegate(move |d: lapin::message::DeliveryResult| {
            let tx = tx.clone();
            async move {
                if let Ok(Some(d)) = d {
                    let _ = tx.send(d.data);
                }
            }
        });
        let mut ids = Vec::with_capacity(want);
        let since = Instant::now();
        while ids.len() < want {
            if since.elapsed() > Duration::from_secs(120) {
                return Err(self.err(
                    ip,
                    format!("{} of {want} messages read in 120 s", ids.len()),
                ));
            }
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(body)) => {
                    if let Some(id) = std::str::from_utf8(&body).ok().and_then(|s| s.parse().ok()) {
                        ids.push(id);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    return Err(self.err(
                        ip,
                        format!(
                            "{} of {want} messages delivered, then none for 10 s",
                            ids.len()
                        ),
                    ))
                }
            }
        }
        Ok(ids)
    }

    /// The scratch queue's leader and online members (node names) as the first member of
    /// `members` that answers sees them.
    pub async fn queue_view(&self, members: &[&Member]) -> Option<(String, Vec<String>)> {
        let script = format!(
            "timeout 20 rabbitmqctl -q list_queues -p {} name leader online --formatter json",
            kbz_core::shell::quote(&self.vhost)
        );
        for m in members {
            let Ok(out) = m
                .exec
                .run(&Cmd::new(&script).timeout(Duration::from_secs(25)))
                .await
            else {
                continue;
            };
            if !out.success() {
                continue;
            }
            let Ok(rows) = serde_json::from_str::<Vec<serde_json::Value>>(out.stdout_str().trim())
            else {
                continue;
            };
            if let Some(r) = rows.iter().find(|r| r["name"] == QUEUE) {
                let leader = r["leader"].as_str().unwrap_or_default().to_string();
                let online = r["online"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if !leader.is_empty() {
                    return Some((leader, online));
                }
            }
        }
        None
    }

    /// The member whose node is `node` (`rabbit@host`).
    pub fn member_of(&self, node: &str) -> Option<&Member> {
        let l = kbz_rabbitmq::Layout::debian();
        self.members.iter().find(|m| l.node(&m.host) == node)
    }
}

/// One RabbitMQ writer: publishes its id (the body) as a persistent message to the scratch
/// queue and waits for the broker's confirm; a new connection after every failure.
#[derive(Debug)]
pub struct RabbitWriter {
    t: RabbitTarget,
    conn: Option<(Connection, Channel)>,
    last: Option<Instant>,
}

impl RabbitWriter {
    /// A writer through the VIP (connects on its first write).
    pub fn new(t: &RabbitTarget) -> RabbitWriter {
        RabbitWriter {
            t: t.clone(),
            conn: None,
            last: None,
        }
    }
}

#[async_trait::async_trait]
impl Writer for RabbitWriter {
    async fn write(&mut self, id: i64) -> Result<Option<IpAddr>, WriteError> {
        if let Some(wait) = self
            .last
            .and_then(|l| WRITE_INTERVAL.checked_sub(l.elapsed()))
        {
            tokio::time::sleep(wait).await;
        }
        self.last = Some(Instant::now());
        let (conn, ch) = match self.conn.take() {
            Some(c) => c,
            None => self
                .t
                .channel(self.t.vip)
                .await
                .map_err(|e| WriteError::not_sent(e.to_string()))?,
        };
        let body = id.to_string();
        let sent = async {
            ch.basic_publish(
                "",
                QUEUE,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await
        };
        match tokio::time::timeout(self.t.timeout, sent).await {
            Ok(Ok(c)) if c.is_ack() => {
                self.conn = Some((conn, ch));
                Ok(None)
            }
            // A nack, a closed channel, no confirm in time: the broker may have enqueued it.
            Ok(Ok(c)) => Err(WriteError::sent(format!("not confirmed: {c:?}"))),
            Ok(Err(e)) => Err(WriteError::sent(e.to_string())),
            Err(_) => Err(WriteError::sent("no publisher confirm in time")),
        }
    }
}

/// RabbitMQ: the scratch quorum queue's leader is the "leader"; healthy means every member
/// runs and sees every other (`cluster_status`) and the queue has all of them online.
#[derive(Debug, Clone)]
pub struct RabbitService {
    /// Members, VIP and credentials.
    pub t: RabbitTarget,
}

impl RabbitService {
    fn hostname(&self, node: &str) -> String {
        self.t
            .member_of(node)
            .map(|m| m.host.hostname.clone())
            .unwrap_or_else(|| node.to_string())
    }

    async fn all_running(&self) -> Result<(), String> {
        let l = kbz_rabbitmq::Layout::debian();
        let nodes: Vec<String> = self.t.members.iter().map(|m| l.node(&m.host)).collect();
        for m in &self.t.members {
            let script = kbz_rabbitmq::scripts::health_cluster(&l, &m.host);
            let out = m
                .exec
                .run(&Cmd::new(&script).timeout(Duration::from_secs(70)))
                .await
                .map_err(|e| format!("{}: {e}", m.host.hostname))?;
            let s = kbz_rabbitmq::observe::parse_cluster_status(&out.stdout_str())
                .map_err(|e| format!("{}: {e}", m.host.hostname))?;
            let missing = kbz_rabbitmq::observe::missing(&nodes, &s.running_nodes);
            if !missing.is_empty() {
                return Err(format!(
                    "{} does not see {} running",
                    m.host.hostname,
                    missing.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ServiceTarget for RabbitService {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }
    fn members(&self) -> &[Member] {
        &self.t.members
    }
    async fn healthy(&self) -> Result<String, String> {
        self.all_running().await?;
        // The queue must exist to have a leader: declaring it again is harmless.
        let (conn, ch) = self
            .t
            .channel(self.t.vip)
            .await
            .map_err(|e| e.to_string())?;
        let declared = self.t.declare(&ch, self.t.vip).await;
        let _ = conn.close(200, "declared").await;
        declared.map_err(|e| e.to_string())?;
        let all: Vec<&Member> = self.t.members.iter().collect();
        let (leader, online) = self
            .t
            .queue_view(&all)
            .await
            .ok_or_else(|| format!("no member reports the leader of queue {QUEUE}"))?;
        if online.len() < self.t.members.len() {
            return Err(format!(
                "queue {QUEUE} has {} of {} members online",
                online.len(),
                self.t.members.len()
            ));
        }
        Ok(self.hostname(&leader))
    }
    async fn leader(&self, excluding: &str) -> Option<String> {
        let survivors: Vec<&Member> = self
            .t
            .members
            .iter()
            .filter(|m| m.host.hostname != excluding)
            .collect();
        let (leader, _) = self.t.queue_view(&survivors).await?;
        let name = self.hostname(&leader);
        (name != excluding).then_some(name)
    }
    /// Raft elects one leader per queue: there is no second writable copy to catch.
    async fn writable(&self, _m: &Member) -> Option<bool> {
        None
    }
    async fn prepare(&self) -> Result<(), FaultError> {
        let vip = self.t.vip;
        let (conn, ch) = self.t.channel(vip).await?;
        self.t.declare(&ch, vip).await?;
        let r = ch
            .queue_purge(QUEUE, QueuePurgeOptions::default())
            .await
            .map_err(|e| self.t.err(vip, e));
        let _ = conn.close(200, "prepared").await;
        r.map(|_| ())
    }
    fn writer(&self, _w: usize) -> Box<dyn Writer> {
        Box::new(RabbitWriter::new(&self.t))
    }
    async fn read_vip(&self) -> Result<Vec<i64>, FaultError> {
        self.t.read_ids(self.t.vip).await
    }
    async fn catch_up(&self, m: &Member, within: Duration) -> Option<f64> {
        // Caught up: the member is an online member of the queue again (Raft then brings its
        // log up to the leader's before it counts towards a majority).
        let node = kbz_rabbitmq::Layout::debian().node(&m.host);
        let all: Vec<&Member> = self.t.members.iter().collect();
        let since = Instant::now();
        while since.elapsed() < within {
            if let Some((_, online)) = self.t.queue_view(&all).await {
                if online.contains(&node) {
                    return Some(since.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }
    async fn read_member(&self, m: &Member) -> Result<Vec<i64>, FaultError> {
        self.t.read_ids(m.host.ip).await
    }
    async fn replicas_following(&self, _leader: &str) -> u32 {
        let all: Vec<&Member> = self.t.members.iter().collect();
        self.t
            .queue_view(&all)
            .await
            .map(|(_, online)| online.len().saturating_sub(1) as u32)
            .unwrap_or(0)
    }
    async fn drop_scratch(&self) -> Result<(), FaultError> {
        let vip = self.t.vip;
        let (conn, ch) = self.t.channel(vip).await?;
        let r = ch
            .queue_delete(QUEUE, QueueDeleteOptions::default())
            .await
            .map_err(|e| self.t.err(vip, e));
        let _ = conn.close(200, "dropped").await;
        r.map(|_| ())
    }
    fn vip(&self) -> String {
        kbz_core::net::host_port(self.t.vip, self.t.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use kbz_core::{Host, Role};
    use kbz_testkit::{output, FakeHost};
    use std::sync::Arc;

    fn target(fakes: &[Arc<FakeHost>]) -> RabbitTarget {
        let members = fakes
            .iter()
            .enumerate()
            .map(|(i, f)| Member {
                host: Host::new(
                    &format!("mq{}", i + 1),
                    format!("192.0.2.3{}", i + 1).parse().expect("ip"),
                    &[Role::Rabbitmq],
                ),
                exec: f.clone(),
            })
            .collect();
        RabbitTarget {
            members,
            vip: "192.0.2.102".parse().expect("ip"),
            port: 5672,
            user: "app".into(),
            password: Secret::new("x"),
            vhost: "app".into(),
            timeout: Duration::from_secs(1),
            routes: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_leader_and_online_members_come_from_the_first_member_that_answers() {
        let fakes: Vec<Arc<FakeHost>> = (1..=3)
            .map(|i| Arc::new(FakeHost::debian(&format!("mq{i}"))))
            .collect();
        // mq1 is down (the CLI cannot reach its node); mq2 answers for the cluster.
        fakes[0].script(
            "list_queues",
            output("Error: unable to perform an operation", 69),
        );
        fakes[1].script(
            "name leader online --formatter json",
            output(
                r#"[{"name":"other","leader":"rabbit@mq1","online":[]},{"name":"kbz-faults","leader":"rabbit@mq3","online":["rabbit@mq2","rabbit@mq3"]}]"#,
                0,
            ),
        );
        let t = target(&fakes);
        let all: Vec<&Member> = t.members.iter().collect();
        let (leader, online) = t.queue_view(&all).await.expect("view");
        assert_eq!(leader, "rabbit@mq3");
        assert_eq!(online, ["rabbit@mq2", "rabbit@mq3"]);
        let svc = RabbitService { t: t.clone() };
        // The survivors of a crash of mq1 name mq3; with mq3 itself excluded, the survivors'
        // answer still naming it is no new leader.
        assert_eq!(svc.leader("mq1").await.as_deref(), Some("mq3"));
        assert_eq!(svc.leader("mq3").await, None);
        assert_eq!(svc.replicas_following("mq3").await, 1);
        assert_eq!(svc.writable(&t.members[2]).await, None);
        assert_eq!(
            t.member_of("rabbit@mq2").map(|m| m.host.hostname.as_str()),
            Some("mq2")
        );
    }

    #[test]
    fn uri_components_are_percent_encoded() {
        assert_eq!(pct("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(pct("App_1.x~-"), "App_1.x~-");
    }
}
