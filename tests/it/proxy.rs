//! A TCP proxy on 127.0.0.1 that a test puts between one process and a
//! service, to make network faults on that path only: `blackhole` stops
//! forwarding in both directions without closing anything (sockets hang, as
//! in a partition or a failover that leaves no RST), `cut` closes every
//! current connection (and, while blackholed, new ones hang), `heal` resumes.
//!
//! It never touches the service itself: other tests going straight to the
//! service are not affected.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

/// Shared state of one proxy.
struct State {
    /// `true` while blackholed: nothing is forwarded.
    blackholed: watch::Sender<bool>,
    /// Cancelled by `cut`: every connection alive at that moment closes.
    generation: Mutex<CancellationToken>,
    /// While set, `cut` also refuses: new connections are closed at once.
    refusing: AtomicBool,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.state
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
    }
}

impl Proxy {
    /// Starts forwarding a fresh local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (tx, _) = watch::channel(false);
        let state = Arc::new(State {
            blackholed: tx,
            generation: Mutex::new(CancellationToken::new()),
            refusing: AtomicBool::new(false),
        });
        let shutdown = CancellationToken::new();
        let st = state.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = sd.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                if st.refusing.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let st = st.clone();
                let sd = sd.clone();
                tokio::spawn(async move {
                    let gen_token = st.generation.lock().unwrap().clone();
                    // A blackholed proxy accepts but does not even connect upstream.
                    let mut rx = st.blackholed.subscribe();
                    tokio::select! {
                        _ = gen_token.cancelled() => return,
                        _ = sd.cancelled() => return,
                        r = rx.wait_for(|b| !*b) => if r.is_err() { return },
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = pump(cr, sw, st.blackholed.subscribe());
                    let down = pump(sr, cw, st.blackholed.subscribe());
                    tokio::select! {
                        _ = gen_token.cancelled() => {}
                        _ = sd.cancelled() => {}
                        _ = async { tokio::join!(up, down) } => {}
                    }
                });
            }
        });
        Proxy {
            port,
            state,
            shutdown,
        }
    }

    /// The local port clients should connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `pg_url` with its host:port replaced by the proxy's
    /// (`postgres://user@host:5432/db?x` → `postgres://user@127.0.0.1:PORT/db?x`).
    pub fn url_for(&self, pg_url: &str) -> String {
        let (scheme, rest) = pg_url.split_once("://").expect("URL with a scheme");
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
        match userinfo {
            Some(u) => format!("{scheme}://{u}@127.0.0.1:{}{tail}", self.port),
            None => format!("{scheme}://127.0.0.1:{}{tail}", self.port),
        }
    }

    /// Stops forwarding both ways without closing either socket: peers hang.
    /// New connections are accepted and hang too.
    pub fn blackhole(&self) {
        self.state.refusing.store(false, Ordering::SeqCst);
        self.state.blackholed.send_replace(true);
    }

    /// Resumes forwarding (and accepting) normally.
    pub fn heal(&self) {
        self.state.refusing.store(false, Ordering::SeqCst);
        self.state.blackholed.send_replace(false);
    }

    /// Closes every current connection; new ones are still accepted.
    pub fn cut(&self) {
        let mut g = self.state.generation.lock().unwrap();
        g.cancel();
        *g = CancellationToken::new();
    }

    /// `cut`, and close every new connection at once until `heal`: the
    /// service looks down (connection reset) rather than hung.
    pub fn cut_and_refuse(&self) {
        self.state.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }
}

/// Copies `from` → `to`, holding (not dropping) data while blackholed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut blackholed: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Do not even read while blackholed: the sender's window fills up
        // and its writes hang, as on a dead path.
        if blackholed.wait_for(|b| !*b).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = blackholed.wait_for(|b| *b) => continue,
        };
        // Bytes read just before a blackhole are held until heal.
        if blackholed.wait_for(|b| !*b).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn proxy_forwards_blackholes_and_cuts() {
    use std::time::Duration;
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let p = Proxy::start(upstream).await;
    assert_eq!(
        p.url_for("postgres://u:pw@localhost:5432/db?sslmode=disable"),
        format!("postgres://u:pw@127.0.0.1:{}/db?sslmode=disable", p.port())
    );
    let mut c = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    let mut b = [0u8; 4];
    c.write_all(b"ping").await.unwrap();
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");

    p.blackhole();
    c.write_all(b"hang").await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(500), c.read_exact(&mut b)).await;
    assert!(
        r.is_err(),
        "a blackholed proxy must hang, not answer or close"
    );
    p.heal();
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut b))
        .await
        .expect("data held during the blackhole arrives after heal")
        .unwrap();
    assert_eq!(&b, b"hang");

    p.cut();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
        .await
        .expect("a cut connection closes");
    assert!(matches!(r, Ok(0) | Err(_)));
    let mut c2 = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    c2.write_all(b"more").await.unwrap();
    c2.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"more");
}
