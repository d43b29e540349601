//! [`SecretUrl`]: a connection URL that may carry a password.
//!
//! It must never print the password: `Debug`, `Display` and [`SecretUrl::masked`]
//! replace it with `***`; only [`SecretUrl::expose`] hands out the real URL,
//! for a client library and never for a log line.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A connection URL that may carry a password. Printing it masks the password.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(SecretString::from(raw.into()))
    }

    /// The real URL, for handing to a client library. Never log this.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with every password replaced by `***`: the user-info one and
    /// any query parameter that carries a secret (`password`, `sslpassword`,
    /// `pass`, `secret`, `token`…, in any case). A string that is not a URL is
    /// not shown at all.
    pub fn masked(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                if u.query_pairs().any(|(k, _)| secret_param(&k)) {
                    let pairs: Vec<(String, String)> = u
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if secret_param(&k) {
                                "***".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
                u.to_string()
            }
            Err(_) => "<unparseable url>".to_string(),
        }
    }
}

/// Whether a URL query parameter carries a secret (its name, any case).
fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "credential", "signature"]
        .iter()
        .any(|w| n.contains(w))
        || n == "auth"
        || n == "x-amz-signature"
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let u = SecretUrl::new("postgres://app:hunter2@db:5432/landlord");
        assert_eq!(u.masked(), "postgres://app:***@db:5432/landlord");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!format!("{u}").contains("hunter2"));
    }

    #[test]
    fn masks_passwords_in_the_query_in_every_spelling() {
        for raw in [
            "postgres://app@db/landlord?password=hunter2",
            "postgres://db/landlord?sslmode=verify-full&PASSWORD=hunter2&application_name=x",
            "postgres://db/landlord?sslpassword=hunter2",
            "amqp://db/%2f?auth_token=hunter2",
            "smtp://mail?pass=hunter2&tls=required",
            "postgres://u:hunter2@db/landlord?password=hunter2",
            "postgres://db/landlord?password=hunter%32",
        ] {
            let m = SecretUrl::new(raw).masked();
            assert!(!m.contains("hunter"), "{raw} -> {m}");
            assert!(m.contains("***"), "{raw} -> {m}");
        }
        let m =
            SecretUrl::new("postgres://db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem").masked();
        assert_eq!(
            m,
            "postgres://db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        );
        assert_eq!(
            SecretUrl::new("host=db password=hunter2").masked(),
            "<unparseable url>"
        );
    }
}
