//! The one server harness of the API and hostile-input tests: the service started in this process on an
//! ephemeral loopback port through `server::run`, talked to over real TCP.

use std::net::SocketAddr;
use std::time::Duration;

use icnr_upscale::server::{run, ServeArgs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{http, images, metrics, png};

/// The documented defaults (`ServeArgs::default()`), bound to loopback; tests override what they exercise.
pub fn args() -> ServeArgs {
    ServeArgs { bind: "127.0.0.1:0".to_owned(), ..ServeArgs::default() }
}

/// A service started on 127.0.0.1:0 and serving until [`TestServer::shutdown`] (or until it is dropped, which
/// asks it to stop).
pub struct TestServer {
    pub addr: SocketAddr,
    /// A client for this server (no proxy).
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves `args` (its `bind` is ignored).
    pub async fn start(args: ServeArgs) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(run(args, listener, async move {
            let _ = rx.await;
        }));
        TestServer { addr, client: client(), stop: Some(tx), handle: Some(handle) }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client.get(self.url(path_and_query)).send().await.expect("GET")
    }

    /// `POST /upscale{query}` with raw bytes.
    pub async fn post_raw(&self, query: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/upscale{query}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /upscale")
    }

    /// `POST /upscale{query}` as multipart with `image` and, if given, `kernel`.
    pub async fn post_multipart(&self, query: &str, image: Vec<u8>, kernel: Option<String>) -> reqwest::Response {
        let mut form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image).file_name("in.png"));
        if let Some(k) = kernel {
            form = form.text("kernel", k);
        }
        self.client.post(self.url(&format!("/upscale{query}"))).multipart(form).send().await.expect("POST multipart")
    }

    /// The `/metrics` text, over a fresh connection ([`metrics::scrape`]).
    pub async fn metrics(&self) -> String {
        metrics::scrape(self.addr).await
    }

    /// The value of `name{labels}` now ([`metrics::metric`]), 0 when the series is absent.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        metrics::metric(&self.metrics().await, name, labels).unwrap_or(0.0)
    }

    /// Polls `/metrics` until `name{labels}` satisfies `pred` (a liveness bound of about 60 s, not a timing check).
    pub async fn wait_metric(&self, name: &str, labels: &str, pred: impl Fn(f64) -> bool) -> f64 {
        metrics::wait(self.addr, name, labels, pred).await
    }

    /// Admitted requests (queued + running) as `/metrics` counts them.
    pub async fn admitted(&self) -> usize {
        metrics::admitted(self.addr).await
    }

    /// Waits (polling, a liveness bound of about 60 s) until the service counts exactly `n` admitted requests.
    pub async fn wait_admitted(&self, n: usize, why: &str) {
        metrics::wait_admitted(self.addr, n, why).await
    }

    /// Still healthy and still doing real work, after whatever a test threw at it: `/healthz` is 200, a normal
    /// upscale (the corpus's 64x48 PNG at `scale=2`) is a complete 128x96 PNG, and `run` has not returned.
    pub async fn assert_still_serving(&self) {
        let h = self.get("/healthz").await;
        assert_eq!(h.status(), 200, "/healthz afterwards");
        let res = self.post_raw("?scale=2", "image/png", images::small_png()).await;
        let status = res.status().as_u16();
        let body = res.bytes().await.expect("upscale body");
        assert_eq!(status, 200, "a normal upscale afterwards: {}", http::lossy(&body));
        let info = png::png_info(&body).expect("a complete PNG");
        assert_eq!((info.width, info.height), (128, 96));
        assert!(!self.is_finished(), "the server stopped");
    }

    /// Asks the server to stop and waits for `run` to return (bounded).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.trigger_shutdown();
        self.join().await
    }

    /// Sends the shutdown signal without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return (a liveness bound of 60 s); panics if its task panicked.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        let handle = self.handle.take().expect("joined once");
        tokio::time::timeout(Duration::from_secs(60), handle).await.expect("run() returned").expect("run() task")
    }

    /// Whether `run` has returned (it must not, while the server is meant to be up).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// A reqwest client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("reqwest client")
}
