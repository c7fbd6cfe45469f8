//! The demo's self-signed certificate: so that even the demo only ever speaks HTTPS.
use anyhow::Context;
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const CERT_FILE: &str = "demo-cert.pem";
pub const KEY_FILE: &str = "demo-key.pem";
/// The certificate's subject common name.
pub const COMMON_NAME: &str = "RepeatRx demo";
/// The names the certificate is valid for.
pub const SUBJECT_ALT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const VALID_DAYS: i64 = 365;

/// Returns `dir/demo-cert.pem` and `dir/demo-key.pem`, first creating them if either is missing:
/// a self-signed ECDSA P-256 certificate for `localhost`, `127.0.0.1` and `::1` (CN "RepeatRx
/// demo"), valid for one year from today. The key is written readable by its owner only (0600),
/// the certificate 0644. An existing key readable by others is tightened to 0600.
pub fn ensure_demo_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.is_file() && key_path.is_file() {
        let mode = std::fs::metadata(&key_path)
            .with_context(|| format!("could not inspect {}", key_path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("could not make {} private (chmod 600)", key_path.display()))?;
        }
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("could not create the folder {}", dir.display()))?;
    let (cert_pem, key_pem) = generate().context("could not generate the demo certificate")?;
    // The key goes first and the certificate last, each through a rename, so a certificate on
    // disk always has its complete key beside it.
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(certificate = %cert_path.display(), "created a self-signed demo certificate");
    Ok((cert_path, key_path))
}

/// A new self-signed certificate and its private key, both PEM.
fn generate() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(SUBJECT_ALT_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, COMMON_NAME);
    params.distinguished_name = name;
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let until = today.checked_add(jiff::Span::new().days(VALID_DAYS))?;
    let (y, m, d) = ymd(today)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(until)?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ymd(date: jiff::civil::Date) -> anyhow::Result<(i32, u8, u8)> {
    Ok((i32::from(date.year()), u8::try_from(date.month())?, u8::try_from(date.day())?))
}

/// Writes `path` with `mode` via a temporary file in the same folder and a rename.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("could not remove the stale {}", tmp.display())),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("could not create {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", tmp.display()))?;
    // The umask may have taken bits away from `mode` but never adds any; set it exactly.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set permissions on {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;
    use std::time::Duration;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn certificate(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    /// Whether a TLS client trusting only this certificate accepts it for `name` at `at`.
    fn accepted(cert: &CertificateDer<'static>, name: &str, at: UnixTime) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier.verify_server_cert(cert, &[], &ServerName::try_from(name.to_string()).unwrap(), &[], at).is_ok()
    }

    #[test]
    fn creates_a_certificate_and_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (cert, key) = ensure_demo_certificate(&data).unwrap();
        assert_eq!(cert, data.join("demo-cert.pem"));
        assert_eq!(key, data.join("demo-key.pem"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        assert!(!data.join("demo-key.pem.tmp").exists());
        assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
        // The pair works as the server's TLS identity (the key matches the certificate).
        repeatrx_web::tls::load_server_config(&cert, &key).unwrap();
    }

    #[test]
    fn is_valid_for_the_local_names_for_a_year() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, _) = ensure_demo_certificate(dir.path()).unwrap();
        let cert = certificate(&cert_path);
        let now = UnixTime::now();
        for name in SUBJECT_ALT_NAMES {
            assert!(accepted(&cert, name, now), "{name}");
        }
        assert!(!accepted(&cert, "repeatrx.example.org", now));
        assert!(!accepted(&cert, "10.0.0.1", now));
        let day = 24 * 60 * 60;
        let in_days = |d: u64| UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + d * day));
        assert!(accepted(&cert, "localhost", in_days(360)));
        assert!(!accepted(&cert, "localhost", in_days(367)));
        let der: &[u8] = cert.as_ref();
        assert!(der.windows(COMMON_NAME.len()).any(|w| w == COMMON_NAME.as_bytes()), "CN is {COMMON_NAME}");
    }

    #[test]
    fn reuses_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_demo_certificate(dir.path()).unwrap();
        let (cert_pem, key_pem) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
        let again = ensure_demo_certificate(dir.path()).unwrap();
        assert_eq!(again, (cert.clone(), key.clone()));
        assert_eq!(std::fs::read(&cert).unwrap(), cert_pem);
        assert_eq!(std::fs::read(&key).unwrap(), key_pem);
    }

    #[test]
    fn regenerates_when_one_file_is_missing_and_tightens_a_loose_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_demo_certificate(dir.path()).unwrap();
        let old_key = std::fs::read(&key).unwrap();
        std::fs::remove_file(&cert).unwrap();
        ensure_demo_certificate(dir.path()).unwrap();
        assert_ne!(std::fs::read(&key).unwrap(), old_key, "a new pair is made");
        assert_eq!(mode(&key), 0o600);
        repeatrx_web::tls::load_server_config(&cert, &key).unwrap();

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_demo_certificate(dir.path()).unwrap();
        assert_eq!(mode(&key), 0o600);
    }
}
