//! TOTP (RFC 6238) with totp-rs: SHA-1, 6 digits, 30-second steps, one step of clock skew either
//! way. Which step a code matched is returned so that the caller can refuse a code whose step is
//! not newer than the last one accepted (no replay inside its window).
use crate::error::{AppError, AppResult};
use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: usize = 6;
/// Steps of clock skew accepted either side of now.
pub const SKEW: i64 = 1;
const ISSUER: &str = "RepeatRx";

/// A new random 160-bit secret (RFC 4226's recommended length), base32 without padding.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    match Secret::Raw(bytes.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => String::new(),
    }
}

fn totp(secret_base32: &str, account: &str) -> AppResult<TOTP> {
    let bytes = Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .map_err(|e| AppError::Internal(format!("stored TOTP secret is not base32: {e:?}")))?;
    // Email addresses cannot contain ':', which the otpauth label forbids; strip any to be safe.
    TOTP::new(Algorithm::SHA1, DIGITS, 0, STEP_SECONDS, bytes, Some(ISSUER.into()), account.replace(':', ""))
        .map_err(|e| AppError::Internal(format!("TOTP secret cannot be used: {e:?}")))
}

/// The step a unix time falls in.
pub fn step_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS as i64)
}

/// The code for a step (used by tests and the demo's code hint).
pub fn code_at_step(secret_base32: &str, step: i64) -> AppResult<String> {
    let t = totp(secret_base32, "x")?;
    Ok(t.generate(u64::try_from(step).unwrap_or(0) * STEP_SECONDS))
}

/// The step whose code `code` is, among now's step and [`SKEW`] steps either side; `None` if it
/// matches none. Compared in constant time.
pub fn matching_step(secret_base32: &str, code: &str, unix_now: i64) -> AppResult<Option<i64>> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let t = totp(secret_base32, "x")?;
    let now = step_of(unix_now);
    let mut found = None;
    for step in (now - SKEW)..=(now + SKEW) {
        let expected = t.generate(u64::try_from(step).unwrap_or(0) * STEP_SECONDS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    Ok(found)
}

/// The `otpauth://` URL an authenticator app scans.
pub fn provisioning_url(secret_base32: &str, account: &str) -> AppResult<String> {
    Ok(totp(secret_base32, account)?.get_url())
}

/// The QR code of the provisioning URL as an inline SVG (no image request, no inline style: it
/// passes the page's Content-Security-Policy).
pub fn qr_svg(url: &str) -> AppResult<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| AppError::Internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// The secret in groups of four, easier to type into an app by hand.
pub fn grouped(secret_base32: &str) -> String {
    secret_base32.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s -> 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = match Secret::Raw(b"12345678901234567890".to_vec()).to_encoded() {
            Secret::Encoded(s) => s,
            Secret::Raw(_) => unreachable!(),
        };
        assert_eq!(code_at_step(&secret, 1).unwrap(), "287082");
        assert_eq!(matching_step(&secret, "287082", 59).unwrap(), Some(1));
        assert_eq!(matching_step(&secret, "287 082", 59).unwrap(), Some(1), "spaces are ignored");
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32, "160 bits in base32");
        let now = 1_800_000_000;
        let step = step_of(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = code_at_step(&secret, step + offset).unwrap();
            let found = matching_step(&secret, &code, now).unwrap();
            assert_eq!(found.is_some(), accepted, "offset {offset}");
            if accepted {
                assert_eq!(found, Some(step + offset));
            }
        }
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn provisioning_url_and_qr() {
        let secret = new_secret();
        let url = provisioning_url(&secret, "ann@example.org").unwrap();
        assert!(url.starts_with("otpauth://totp/RepeatRx:ann%40example.org?"), "{url}");
        assert!(url.contains(&format!("secret={secret}")));
        let svg = qr_svg(&url).unwrap();
        assert!(svg.contains("<svg") && !svg.contains("style="), "{}", &svg[..80.min(svg.len())]);
        assert_eq!(grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}
