//! A remote's addresses as the user wrote them: refused when they carry
//! credentials or anything that would end up in every key, and shown with
//! every secret removed.

use crate::error::ArtifactError;

/// The URL with userinfo and query removed: credentials never reach a
/// message.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let rest = match rest.split_once('/') {
        Some((host, path)) => {
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{host}/{path}")
        }
        None => rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string(),
    };
    format!("{scheme}{rest}")
}

/// Refuse user info, a query or a fragment in a remote's url or endpoint:
/// credentials come from the AWS environment, never from the
/// configuration, and anything after `?` would become part of every key
/// (and so be written to the remote).
pub(crate) fn check_address(name: &str, what: &str, address: &str) -> Result<(), ArtifactError> {
    let shown = redact(address);
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(ArtifactError::usage(format!(
            "remote '{name}': {what} {shown} carries user info; credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), never from the configuration: remove it"
        )));
    }
    if address.contains(['?', '#']) {
        return Err(ArtifactError::usage(format!(
            "remote '{name}': {what} {shown}?... has a query or fragment, which a remote address cannot have: remove it"
        )));
    }
    Ok(())
}

/// An endpoint object_store can use: `http://` or `https://`, a host, and
/// an optional port (a malformed one would stop it mid-request).
pub(crate) fn check_endpoint(name: &str, endpoint: &str) -> Result<(), ArtifactError> {
    let bad = || {
        ArtifactError::usage(format!(
            "remote '{name}': endpoint {} is not an http:// or https:// address with a host and an optional port; use e.g. http://127.0.0.1:9000",
            redact(endpoint)
        ))
    };
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (host, port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok && !rest.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `text` with every URL in it redacted (an error message may quote the
/// request's URL, endpoint included).
pub fn redact_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts after the last separator before its scheme.
        let start = rest[..at]
            .rfind(|c: char| c.is_whitespace() || "(\"'<[,=".contains(c))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || ")\"'>],".contains(c))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_all};

    #[test]
    fn addresses_with_user_info_a_query_or_a_bad_port_are_refused() {
        use super::{check_address, check_endpoint};
        for bad in [
            "s3://key:secret@bucket/p",
            "file://user:pw@/mnt/x",
            "s3://bucket/p?token=secret",
            "s3://bucket/p#frag",
        ] {
            let e = check_address("o", "url", bad).unwrap_err().to_string();
            assert!(!e.contains("secret") && !e.contains("pw"), "{e}");
        }
        assert!(check_address("o", "url", "s3://bucket/a@b").is_ok());
        for bad in [
            "127.0.0.1:9000",
            "http://127.0.0.1:99999",
            "http://[::1",
            "http://",
            "http://host:port",
        ] {
            assert!(check_endpoint("o", bad).is_err(), "{bad}");
        }
        for good in [
            "http://127.0.0.1:9000",
            "https://s3.eu-west-1.amazonaws.com",
            "http://[::1]:9000",
            "http://minio.local/",
        ] {
            assert!(check_endpoint("o", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(redact("s3://b/p"), "s3://b/p");
        assert_eq!(
            redact("http://user:secret@host:9000/x?X-Amz-Signature=abc"),
            "http://host:9000/x"
        );
        assert_eq!(redact("http://k:s@host"), "http://host");
        assert_eq!(
            redact_all(
                "error sending request for url (http://u:pw@127.0.0.1:9/b/k?X-Amz-Signature=s) after 2 retries"
            ),
            "error sending request for url (http://127.0.0.1:9/b/k) after 2 retries"
        );
        assert_eq!(redact_all("no url here"), "no url here");
    }
}
