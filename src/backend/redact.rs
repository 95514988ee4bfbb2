//! Secrets out of error text: what a transport error quotes is logged and shown.

/// `text` with the query of every URL in it replaced by `***`: a SAS token travels in
/// the query, and transport errors quote the URL.
pub fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut hiding = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || c == ')' || c == '"' || c == '\'' {
            in_url = false;
            hiding = false;
        } else if text[i..].starts_with("http://") || text[i..].starts_with("https://") {
            in_url = true;
        } else if in_url && c == '?' && !hiding {
            hiding = true;
            out.push_str("?***");
            continue;
        }
        if !hiding {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_errors_lose_their_query() {
        let e = "error sending request for url (http://h:1/acct/ctr/b?sv=2022&sig=SECRET): connection refused";
        let r = urls(e);
        assert!(!r.contains("SECRET") && r.contains("http://h:1/acct/ctr/b?***)"), "{r}");
        assert_eq!(urls("what? no url"), "what? no url");
    }
}
