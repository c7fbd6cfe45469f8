//! The `repeatrx` binary as an operator uses it: exit codes, sentences, onboarding, and the
//! refusals that keep demo and production data apart.
use std::process::{Command, Output};

fn repeatrx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx"))
        .args(args)
        .env("REPEATRX_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn repeatrx_with_keys(keys: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx"))
        .args(args)
        .env("REPEATRX_LOG", "warn")
        .env("REPEATRX_KEY_FILE", keys)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn help_is_available_for_every_command() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["admin", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["keys", "init", "--help"],
        vec!["keys", "rotate", "--help"],
    ] {
        let out = repeatrx(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("Usage"), "{args:?}");
    }
}

#[test]
fn an_unusable_database_url_is_a_sentence_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("k");
    assert!(repeatrx(&["keys", "init", "--key-file", keys.to_str().unwrap()]).status.success());
    let out = repeatrx_with_keys(&keys, &["migrate", "--database-url", "mysql://nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("error: the database URL must start with sqlite://"), "{}", text(&out));
}

#[test]
fn operators_onboard_organisations_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("prod.db").display());
    let keys = dir.path().join("repeatrx.keys");
    let init = repeatrx(&["keys", "init", "--key-file", keys.to_str().unwrap()]);
    assert!(init.status.success(), "{}", text(&init));
    assert!(text(&init).contains("readable by you only"), "{}", text(&init));
    let again = repeatrx(&["keys", "init", "--key-file", keys.to_str().unwrap()]);
    assert!(!again.status.success(), "an existing key file is never overwritten");
    assert!(text(&again).contains("cannot be created"), "{}", text(&again));
    let repeatrx = |args: &[&str]| repeatrx_with_keys(&keys, args);
    let no_keys = repeatrx_with_keys(&dir.path().join("missing.keys"), &["migrate", "--database-url", &url]);
    assert!(!no_keys.status.success());
    assert!(text(&no_keys).contains("repeatrx keys init --key-file"), "{}", text(&no_keys));
    let out = repeatrx(&["migrate", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out));

    let needs_url = repeatrx(&[
        "admin",
        "--database-url",
        &url,
        "create-pharmacy",
        "--name",
        "Quayside Pharmacy",
        "--ods-code",
        "fq123",
        "--manager-name",
        "Mo Adams",
        "--manager-email",
        "mo@quayside.example",
    ]);
    assert!(!needs_url.status.success());
    assert!(text(&needs_url).contains("--public-url (or REPEATRX_PUBLIC_URL) is needed"), "{}", text(&needs_url));

    let out = repeatrx(&[
        "admin",
        "--database-url",
        &url,
        "--public-url",
        "https://repeats.example",
        "create-pharmacy",
        "--name",
        "Quayside Pharmacy",
        "--ods-code",
        "fq123",
        "--manager-name",
        "Mo Adams",
        "--manager-email",
        "mo@quayside.example",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Created pharmacy Quayside Pharmacy (FQ123)"), "{}", text(&out));
    assert!(
        text(&out).contains("An invitation to choose a password is queued for mo@quayside.example"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("password: "), "no password is ever printed for a manager");

    let again = repeatrx(&[
        "admin",
        "--database-url",
        &url,
        "--public-url",
        "https://repeats.example",
        "create-pharmacy",
        "--name",
        "Other",
        "--ods-code",
        "FQ999",
        "--manager-name",
        "Mo Adams",
        "--manager-email",
        "MO@quayside.example",
    ]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already has an account"), "{}", text(&again));

    let bad = repeatrx(&[
        "admin",
        "--database-url",
        &url,
        "--public-url",
        "https://repeats.example",
        "create-practice",
        "--name",
        "P",
        "--ods-code",
        "not an ods code!",
        "--manager-name",
        "X",
        "--manager-email",
        "x@p.example",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("ODS code"), "{}", text(&bad));

    let list = repeatrx(&["admin", "--database-url", &url, "list-organisations"]);
    assert!(list.status.success());
    assert!(text(&list).contains("Quayside Pharmacy") && !text(&list).contains("Other"), "{}", text(&list));
}

/// Runs the demo once in `dir/demo` so it creates and seeds its database, and writes a production
/// configuration that points at that database; returns (database, configuration).
fn demo_database_and_production_config(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let demo_dir = dir.join("demo");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = repeatrx::startup::start_demo(&demo_dir, "127.0.0.1:0".parse().unwrap(), None).await.unwrap();
        server.stop().await;
    });
    let db = demo_dir.join("repeatrx-demo.db");
    let config = dir.join("repeatrx.toml");
    let cert = demo_dir.join("demo-cert.pem");
    let key = demo_dir.join("demo-key.pem");
    // The demo's keys, copied out of its folder (production refuses keys beside the database).
    let keys = dir.join("production.keys");
    std::fs::copy(demo_dir.join("repeatrx-demo.keys"), &keys).unwrap();
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}\"\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://repeats.example\"\n\
             key_file = \"{}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 2525\nsecurity = \"none\"\nfrom = \"RepeatRx <no-reply@repeats.example>\"\n\
             [backup]\nfolder = \"{}\"\n",
            db.display(),
            keys.display(),
            cert.display(),
            key.display(),
            dir.join("backup").display()
        ),
    )
    .unwrap();
    (db, config)
}

#[test]
fn production_refuses_a_demo_database() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = demo_database_and_production_config(dir.path());
    let out = repeatrx(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("demo database"), "{}", text(&out));
}

#[test]
fn production_refuses_demo_accounts_even_when_the_demo_marks_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (db, config) = demo_database_and_production_config(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query("DELETE FROM meta").execute(&pool).await.unwrap();
        pool.close().await;
    });
    let out = repeatrx(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("demo accounts (@demo.example)"), "{}", text(&out));
}

#[test]
fn the_demo_refuses_a_production_database() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let keys = repeatrx_store::crypto::KeyFile::create(&dir.path().join("repeatrx-demo.keys")).unwrap();
        let store = repeatrx::startup::open_store(
            &format!("sqlite://{}", dir.path().join("repeatrx-demo.db").display()),
            std::sync::Arc::new(keys),
        )
        .await
        .unwrap();
        store.set_meta(repeatrx_app::environment::ENVIRONMENT_KEY, "production").await.unwrap();
        let refused = repeatrx::startup::start_demo(dir.path(), "127.0.0.1:0".parse().unwrap(), None).await;
        let message = format!("{:#}", refused.err().expect("the demo refuses"));
        assert!(message.contains("the demo only opens demo databases"), "{message}");
        assert!(store.get_meta(repeatrx_app::demo::SEEDED_KEY).await.unwrap().is_none(), "nothing was seeded");
    });
}

#[test]
fn plain_http_only_redirects_to_https() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let server = repeatrx::startup::start_demo(
            dir.path(),
            "127.0.0.1:0".parse().unwrap(),
            Some("127.0.0.1:0".parse().unwrap()),
        )
        .await
        .unwrap();
        let http = server.running.http_addr.unwrap();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        for path in ["/", "/patient", "/api/v1/me", "/sign-in?next=x"] {
            let resp = client.get(format!("http://{http}{path}")).send().await.unwrap();
            assert_eq!(resp.status(), 308, "{path}");
            let location = resp.headers()["location"].to_str().unwrap().to_string();
            assert_eq!(location, format!("https://127.0.0.1:{}{path}", server.running.https_addr.port()));
            assert!(resp.text().await.unwrap().is_empty(), "no content over plain HTTP");
        }
        let post = client.post(format!("http://{http}/sign-in")).body("email=a&password=b").send().await.unwrap();
        assert_eq!(post.status(), 308);
        server.stop().await;
    });
}

#[tokio::test]
async fn the_console_works_on_postgresql_and_a_bad_address_is_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("repeatrx.keys");
    assert!(repeatrx(&["keys", "init", "--key-file", keys.to_str().unwrap()]).status.success());
    let url = repeatrx_store::testdb::fresh_postgres_database().await.expect("a PostgreSQL test database");
    let out = repeatrx_with_keys(&keys, &["migrate", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out));
    let out = repeatrx_with_keys(
        &keys,
        &[
            "admin",
            "--database-url",
            &url,
            "--public-url",
            "https://repeats.example",
            "create-pharmacy",
            "--name",
            "Quayside Pharmacy",
            "--ods-code",
            "FQ123",
            "--manager-name",
            "Mo Adams",
            "--manager-email",
            "mo@quayside.example",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let list = repeatrx_with_keys(&keys, &["admin", "--database-url", &url, "list-organisations"]);
    assert!(text(&list).contains("Quayside Pharmacy"), "{}", text(&list));

    let nobody = repeatrx_with_keys(&keys, &["migrate", "--database-url", "postgres://postgres@127.0.0.1:1/none"]);
    assert!(!nobody.status.success());
    assert!(text(&nobody).contains("could not use the PostgreSQL database"), "{}", text(&nobody));
    assert!(!text(&nobody).contains("panicked"));
}
