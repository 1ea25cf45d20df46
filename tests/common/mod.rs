//! Test harness: runs the real `tidewater` binary on a free loopback port and talks the Kafka
//! protocol to it with the `kafka-protocol` codec over plain blocking sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub struct Broker {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub cores: usize,
    pub extra: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Broker {
    pub fn start(cores: usize) -> Broker {
        Broker::start_with(cores, &[])
    }

    pub fn start_with(cores: usize, extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut b = Broker {
            addr,
            dir,
            cores,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        b.spawn();
        b
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The broker's stderr, kept beside its data for failing tests.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn spawn(&mut self) {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_tidewater"));
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--cores")
            .arg(self.cores.to_string())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                    .expect("broker log file"),
            );
        self.child = Some(cmd.spawn().expect("spawn tidewater"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(self.addr) {
                if c.api_versions(3).is_ok() {
                    return;
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "broker did not start on {}: {}",
                self.addr,
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and assert a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let status = c.wait().expect("wait");
            assert!(status.success(), "broker exited with {status}");
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation: 0,
        })
    }

    /// Sends one request and returns the response body (header stripped, correlation checked).
    pub fn call<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<Bytes> {
        self.send(key, version, req)?;
        self.recv(key, version)
    }

    pub fn send<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<()> {
        self.correlation += 1;
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = self.correlation;
        h.client_id = Some(StrBytes::from_static_str("tidewater-tests"));
        let mut body = BytesMut::new();
        h.encode(&mut body, key.request_header_version(version))
            .expect("header");
        req.encode(&mut body, version).expect("body");
        self.send_raw(&body)
    }

    pub fn send_raw(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        out.put_i32(frame.len() as i32);
        out.put_slice(frame);
        self.stream.write_all(&out)
    }

    pub fn recv_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let n = i32::from_be_bytes(len);
        let mut buf = vec![0u8; n as usize];
        self.stream.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    pub fn recv(&mut self, key: ApiKey, version: i16) -> std::io::Result<Bytes> {
        let mut b = self.recv_frame()?;
        let corr = b.get_i32();
        assert_eq!(corr, self.correlation, "responses come back in order");
        if key.response_header_version(version) >= 1 {
            let tagged = b.get_u8();
            assert_eq!(tagged, 0);
        }
        Ok(b)
    }

    pub fn api_versions(
        &mut self,
        version: i16,
    ) -> std::io::Result<kafka_protocol::messages::ApiVersionsResponse> {
        let mut req = kafka_protocol::messages::ApiVersionsRequest::default();
        if version >= 3 {
            req.client_software_name = StrBytes::from_static_str("tests");
            req.client_software_version = StrBytes::from_static_str("1");
        }
        let mut b = self.call(ApiKey::ApiVersions, version, &req)?;
        kafka_protocol::messages::ApiVersionsResponse::decode(&mut b, version)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }

    /// True when the broker has closed this connection.
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn decode<T: Decodable>(mut b: Bytes, version: i16) -> T {
    T::decode(&mut b, version).expect("decodes")
}

/// One RecordBatch v2 with `values`, optionally idempotent (producer id, epoch, base sequence).
pub fn batch(values: &[&[u8]], producer: Option<(i64, i16, i32)>) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if seq < 0 { -1 } else { seq + i as i32 },
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}
