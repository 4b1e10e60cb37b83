//! Each request on an admitted connection: counted while in flight, a refusal's small body
//! read (or discarded) so that clients see it, and every body read against its deadline.

use super::*;

/// The connection's service: counts requests in flight, gives each body its deadline, answers
/// 503 on a connection over the limit, and reads a small unread body before a refusal.
#[derive(Clone)]
pub struct Counted<S> {
    pub(super) inner: S,
    pub(super) conn: Arc<Conn>,
    pub(super) refuse: bool,
    pub(super) body_timeout: Duration,
    pub(super) max: usize,
}

/// A request in flight; the connection counts as idle again when its response has been sent.
pub(super) struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: Arc<Conn>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower_service::Service<Request<Incoming>> for Counted<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::new(self.conn.clone());
        if self.refuse {
            let answer = too_many(self.max);
            return Box::pin(async move {
                drop(in_flight);
                Ok(answer)
            });
        }
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let left = Arc::new(Mutex::new(None));
        let (parts, body) = req.into_parts();
        let body = Deadline {
            inner: Some(body),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout: self.body_timeout,
            left: left.clone(),
        };
        let future = self.inner.call(Request::from_parts(parts, Body::new(body)));
        let conn = self.conn.clone();
        Box::pin(async move {
            let response = future.await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                // An upgraded connection (Odoo's websocket through the ingress) is busy until
                // it closes: neither the idle timeout nor a newcomer cuts it.
                conn.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            if response.status().is_client_error() || response.status().is_server_error() {
                let unread = left.lock().expect("not poisoned").take();
                if let Some(unread) = unread {
                    drain(unread, deadline).await;
                }
            }
            Ok(response.map(|b| {
                Body::new(Sending {
                    inner: Body::new(b),
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// The 503 a connection over the limit gets.
pub(super) fn too_many(max: usize) -> Response<Body> {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": format!("this server has {max} connections open, its limit (http.max_connections) and none of them idle; try again in a moment"),
    }});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Reads and discards what is left of a refused request's body, if it is small, so that the
/// refusal is not followed by a reset of the stream (curl 7.88 then loses the answer).
pub(super) async fn drain(mut body: Incoming, deadline: tokio::time::Instant) {
    use http_body::Body as _;
    if body.is_end_stream() || body.size_hint().lower() > DRAIN_MAX {
        return;
    }
    let read = async {
        let mut total = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
                if total > DRAIN_MAX {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
}

/// A request body that must arrive whole by a deadline; what the handler leaves unread is
/// handed back for [`drain`].
pub(super) struct Deadline {
    inner: Option<Incoming>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    left: Arc<Mutex<Option<Incoming>>>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(Into::into))),
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.inner = None;
                    let secs = self.timeout.as_secs();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the request body did not arrive within {secs} s (http.body_read_timeout)"),
                    )
                    .into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take() {
            use http_body::Body as _;
            if !rest.is_end_stream() {
                *self.left.lock().expect("not poisoned") = Some(rest);
            }
        }
    }
}

/// A response body; the request counts as in flight until it is sent or dropped.
pub(super) struct Sending {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
