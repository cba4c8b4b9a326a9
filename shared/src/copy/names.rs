//! Synapse's file name rule for copies, and the sanitised name we send when a source fails it.
//!
//! Synapse validates the new handle's name against `^[a-zA-Z0-9,_. \-+()']+$` and refuses the
//! whole copy with 400 "Invalid Name" otherwise; the official client then leaves the file behind.
//! We send a sanitised `fileName` instead and the report lists the rename.

/// Characters the rule allows besides ASCII letters and digits.
const ALLOWED_PUNCTUATION: &str = ",_. -+()'";

/// What replaces every character the rule refuses.
const REPLACEMENT: char = '_';

/// Whether Synapse accepts `name` as the file name of a copy.
pub fn is_valid_file_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(allowed)
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || ALLOWED_PUNCTUATION.contains(c)
}

/// The name to send instead of `name`, or `None` when `name` already passes the rule.
///
/// Each refused character (a Unicode scalar, not a byte: `é` becomes one `_`) is replaced by `_`,
/// so the length in characters and the extension are kept. An empty name becomes `_`.
pub fn sanitize_file_name(name: &str) -> Option<String> {
    if is_valid_file_name(name) {
        return None;
    }
    if name.is_empty() {
        return Some(REPLACEMENT.to_string());
    }
    Some(
        name.chars()
            .map(|c| if allowed(c) { c } else { REPLACEMENT })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_names_are_left_alone() {
        for name in [
            "data.csv",
            "My File (v2) - final, copy+1.txt",
            "o'brien_notes.md",
            "a",
        ] {
            assert!(is_valid_file_name(name), "{name}");
            assert_eq!(sanitize_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn refused_characters_become_underscores() {
        let cases = [
            ("résumé.pdf", "r_sum_.pdf"),
            ("report #1 & notes.txt", "report _1 _ notes.txt"),
            ("[draft]{x}.doc", "_draft__x_.doc"),
            ("tab\there.txt", "tab_here.txt"),
            ("path/with\\slashes", "path_with_slashes"),
            ("数据.csv", "__.csv"),
            ("emoji-😀.png", "emoji-_.png"),
            ("", "_"),
        ];
        for (name, expected) in cases {
            assert_eq!(
                sanitize_file_name(name).as_deref(),
                Some(expected),
                "{name}"
            );
            assert!(is_valid_file_name(expected), "{expected}");
        }
    }

    proptest! {
        #[test]
        fn sanitised_names_always_pass_and_keep_their_length(name in "\\PC{0,40}") {
            match sanitize_file_name(&name) {
                None => prop_assert!(is_valid_file_name(&name)),
                Some(clean) => {
                    prop_assert!(is_valid_file_name(&clean));
                    prop_assert_eq!(clean.chars().count(), name.chars().count().max(1));
                    prop_assert_eq!(sanitize_file_name(&clean), None);
                }
            }
        }
    }
}
