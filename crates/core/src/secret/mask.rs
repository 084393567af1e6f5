//! Masking personal data for logs and audit entries: enough is kept to tell two people apart
//! when looking at a handful of lines, never enough to contact them.

/// `ada@example.com` → `a***@example.com`; `+15550001234` → `+15***34`; anything else keeps
/// its first character. The domain of an e-mail is kept (it names a provider, not a person).
pub fn mask_contact(s: &str) -> String {
    if let Some((local, domain)) = s.rsplit_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = s.chars().collect();
    let phone_like = chars.len() >= 7
        && chars
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'));
    if phone_like {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 2..].iter().collect();
        return format!("{head}***{tail}");
    }
    let first: String = chars.iter().take(1).collect();
    format!("{first}***")
}

#[cfg(test)]
mod tests {
    use super::mask_contact;

    #[test]
    fn contacts_keep_too_little_to_reach_anyone() {
        assert_eq!(mask_contact("ada@example.com"), "a***@example.com");
        assert_eq!(mask_contact("@example.com"), "***@example.com");
        assert_eq!(mask_contact("+15550001234"), "+15***34");
        assert_eq!(mask_contact("lovelace"), "l***");
        assert_eq!(mask_contact(""), "***");
        assert_eq!(mask_contact("é@x.io"), "é***@x.io");
    }
}
