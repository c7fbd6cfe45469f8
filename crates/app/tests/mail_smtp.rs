//! Outbox delivery against a real SMTP server (mailin-embedded on an ephemeral port) and a real
//! SQLite store.
use jiff::{SignedDuration, Timestamp};
use repeatrx_app::mail::{DeliveryReport, MailTransport, Mailer, SmtpSecurity, SmtpSettings};
use repeatrx_domain::clock::Clock;
use repeatrx_domain::text::Email;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::{EmailStatus, OutgoingEmail, Store};
use std::sync::Mutex;

/// A tiny SMTP server for tests. It lives here, not in the library, so production code carries
/// no test server.
mod smtp_sink {
    use mailin_embedded::{Handler, Response, Server, SslConfig};
    use std::net::{IpAddr, SocketAddr, TcpListener};
    use std::sync::{Arc, Mutex};

    /// One message as the server received it.
    #[derive(Debug, Clone)]
    pub struct Received {
        pub from: String,
        pub to: Vec<String>,
        /// Headers and body, as sent on the wire.
        pub data: String,
    }

    #[derive(Clone)]
    struct Collect {
        sink: Arc<Mutex<Vec<Received>>>,
        from: String,
        to: Vec<String>,
        data: Vec<u8>,
    }

    impl Handler for Collect {
        fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
            self.from = from.to_string();
            self.to = to.to_vec();
            self.data.clear();
            mailin_embedded::response::OK
        }

        fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
            self.data.extend_from_slice(buf);
            Ok(())
        }

        fn data_end(&mut self) -> Response {
            let received = Received {
                from: std::mem::take(&mut self.from),
                to: std::mem::take(&mut self.to),
                data: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
            };
            self.sink.lock().unwrap().push(received);
            mailin_embedded::response::OK
        }
    }

    /// A running sink: its address and everything it has received.
    pub struct Sink {
        pub addr: SocketAddr,
        pub received: Arc<Mutex<Vec<Received>>>,
    }

    impl Sink {
        pub fn messages(&self) -> Vec<Received> {
            self.received.lock().unwrap().clone()
        }
    }

    /// Starts a plain SMTP server (no STARTTLS, no AUTH) on 127.0.0.1 and a free port. Its
    /// thread runs until the test process ends.
    pub fn start() -> Sink {
        let listener = TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = Collect { sink: received.clone(), from: String::new(), to: Vec::new(), data: Vec::new() };
        let mut server = Server::new(handler);
        server
            .with_name("sink.test")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_num_threads(2)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                eprintln!("smtp sink stopped: {e}");
            }
        });
        Sink { addr, received }
    }
}

/// A clock the test moves by hand; whole seconds so stored timestamps compare exactly.
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn new() -> Self {
        Self(Mutex::new(Timestamp::from_second(1_750_000_000).unwrap()))
    }
    fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

async fn store() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let keys = repeatrx_store::crypto::KeyFile::create(&dir.path().join("mail-test.keys")).unwrap();
    let store = SqlStore::open(&dir.path().join("mail-test.db"), std::sync::Arc::new(keys)).await.unwrap();
    (dir, store)
}

fn smtp(host: &str, port: u16, security: SmtpSecurity) -> Mailer {
    Mailer::new(MailTransport::Smtp(SmtpSettings {
        host: host.into(),
        port,
        security,
        username: None,
        password: None,
        from: "RepeatRx <no-reply@example.org>".into(),
    }))
    .unwrap()
}

fn email(to: &str, subject: &str, body: &str, now: Timestamp) -> OutgoingEmail {
    OutgoingEmail::new(Email::parse(to).unwrap(), subject, body, now)
}

async fn stored(store: &SqlStore, id: repeatrx_domain::ids::EmailId) -> OutgoingEmail {
    store.recent_emails(100).await.unwrap().into_iter().find(|e| e.id == id).expect("the email is in the outbox")
}

/// A port on 127.0.0.1 with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test]
async fn delivers_a_due_email_to_a_real_smtp_server_and_marks_it_sent() {
    let sink = smtp_sink::start();
    let (_dir, store) = store().await;
    let clock = TestClock::new();
    let now = clock.now();
    let due = email(
        "Ann.Patient@Example.org",
        "Your repeat prescription is ready",
        "Hello Ann,\nYour order RX-1234 is ready to collect.\n",
        now,
    );
    let mut later = email("later@example.org", "Not yet", "Not due yet", now);
    later.not_before = now + SignedDuration::from_hours(1);
    store.enqueue_emails(&[due.clone(), later.clone()]).await.unwrap();

    let mailer = smtp("127.0.0.1", sink.addr.port(), SmtpSecurity::None);
    let report = mailer.deliver_due(&store, &clock).await.unwrap();
    assert_eq!(report, DeliveryReport { sent: 1, failed: 0 });

    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.to, vec!["ann.patient@example.org".to_string()]);
    assert_eq!(m.from, "no-reply@example.org");
    assert!(m.data.contains("Subject: Your repeat prescription is ready"), "{}", m.data);
    assert!(m.data.contains("To: ann.patient@example.org"), "{}", m.data);
    assert!(m.data.contains("From: RepeatRx <no-reply@example.org>"), "{}", m.data);
    assert!(m.data.contains("Your order RX-1234 is ready to collect."), "{}", m.data);
    assert!(m.data.contains(&format!("Message-ID: <{}@example.org>", due.id)), "{}", m.data);
    assert!(!m.data.contains("Not due yet"));

    let sent = stored(&store, due.id).await;
    assert_eq!(sent.status, EmailStatus::Sent);
    assert_eq!(sent.sent_at, Some(now));
    assert_eq!(stored(&store, later.id).await.status, EmailStatus::Pending);

    // Nothing is sent twice: a second pass finds nothing due.
    let again = mailer.deliver_due(&store, &clock).await.unwrap();
    assert_eq!(again, DeliveryReport::default());
    assert_eq!(sink.messages().len(), 1);

    // Once the later email is due it goes too.
    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport { sent: 1, failed: 0 });
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(stored(&store, later.id).await.status, EmailStatus::Sent);
}

#[tokio::test]
async fn an_unreachable_relay_schedules_retries_then_gives_up() {
    let (_dir, store) = store().await;
    let clock = TestClock::new();
    let start = clock.now();
    let e = email("bob@example.org", "Reminder", "Your repeat is due", start);
    store.enqueue_emails(std::slice::from_ref(&e)).await.unwrap();
    let mailer = smtp("127.0.0.1", closed_port(), SmtpSecurity::None);

    let report = mailer.deliver_due(&store, &clock).await.unwrap();
    assert_eq!(report, DeliveryReport { sent: 0, failed: 1 });
    let after_first = stored(&store, e.id).await;
    assert_eq!(after_first.attempts, 1);
    assert_eq!(after_first.status, EmailStatus::Pending);
    assert_eq!(after_first.not_before, start + SignedDuration::from_mins(1));
    assert!(after_first.last_error.is_some());
    assert_eq!(after_first.sent_at, None);

    // Not retried before its time.
    clock.advance(SignedDuration::from_secs(30));
    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport::default());
    assert_eq!(stored(&store, e.id).await.attempts, 1);

    // Then 5, 15, 60, 60 minutes apart, and the sixth failure is final.
    for (attempt, wait_after) in [(2, 5), (3, 15), (4, 60), (5, 60)] {
        clock.advance(SignedDuration::from_hours(2));
        let now = clock.now();
        assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport { sent: 0, failed: 1 });
        let s = stored(&store, e.id).await;
        assert_eq!((s.attempts, s.status), (attempt, EmailStatus::Pending));
        assert_eq!(s.not_before, now + SignedDuration::from_mins(wait_after), "after attempt {attempt}");
    }
    clock.advance(SignedDuration::from_hours(2));
    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport { sent: 0, failed: 1 });
    let given_up = stored(&store, e.id).await;
    assert_eq!((given_up.attempts, given_up.status), (6, EmailStatus::Failed));

    // A given-up email is never claimed again.
    clock.advance(SignedDuration::from_hours(24));
    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport::default());
}

#[tokio::test]
async fn starttls_never_falls_back_to_plain_text() {
    // The sink does not offer STARTTLS; a StartTls mailer must refuse to send rather than
    // deliver the message unencrypted.
    let sink = smtp_sink::start();
    let (_dir, store) = store().await;
    let clock = TestClock::new();
    let e = email("carol@example.org", "Secret", "Patient data", clock.now());
    store.enqueue_emails(std::slice::from_ref(&e)).await.unwrap();
    let mailer = smtp("127.0.0.1", sink.addr.port(), SmtpSecurity::StartTls);

    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport { sent: 0, failed: 1 });
    assert!(sink.messages().is_empty());
    let s = stored(&store, e.id).await;
    assert_eq!((s.attempts, s.status), (1, EmailStatus::Pending));
}

#[tokio::test]
async fn demo_outbox_marks_due_emails_sent_without_any_network() {
    let (_dir, store) = store().await;
    let clock = TestClock::new();
    let now = clock.now();
    let a = email("a@example.org", "One", "First", now);
    let b = email("b@example.org", "Two", "Second", now);
    let mut c = email("c@example.org", "Three", "Later", now);
    c.not_before = now + SignedDuration::from_mins(10);
    store.enqueue_emails(&[a.clone(), b.clone(), c.clone()]).await.unwrap();

    let mailer = Mailer::new(MailTransport::DemoOutbox).unwrap();
    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport { sent: 2, failed: 0 });
    for id in [a.id, b.id] {
        let s = stored(&store, id).await;
        assert_eq!((s.status, s.sent_at, s.attempts), (EmailStatus::Sent, Some(now), 0));
    }
    assert_eq!(stored(&store, c.id).await.status, EmailStatus::Pending);
    // The demo page still shows the messages' content.
    let shown = stored(&store, a.id).await;
    assert_eq!((shown.subject.as_str(), shown.body.as_str()), ("One", "First"));
    assert_eq!(mailer.deliver_due(&store, &clock).await.unwrap(), DeliveryReport::default());
}
