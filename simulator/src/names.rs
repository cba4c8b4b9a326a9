//! Synapse's name rule (`NameValidation.validateName`, `ModelConstants.VALID_ENTITY_NAME_REGEX`
//! `^[a-zA-Z0-9,_. \-+()']+`), shared by entity names and the file names of copies.

use crate::error::ApiError;

/// Longest name after trimming.
pub const MAX_NAME_LENGTH: usize = 256;

/// Whether `name` is made only of the characters the rule allows (and is not empty).
pub fn allowed_characters(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ",_. -+()'".contains(c))
}

/// The trimmed name, or Synapse's 400 for an empty, too long or invalid one.
pub fn validate_name(name: &str) -> Result<&str, ApiError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ApiError::BadRequest(
            "Name cannot be only whitespace or empty string".into(),
        ));
    }
    if trimmed.chars().count() > MAX_NAME_LENGTH {
        return Err(ApiError::BadRequest(format!(
            "Name length cannot be longer than {MAX_NAME_LENGTH} characters."
        )));
    }
    if !allowed_characters(trimmed) {
        return Err(ApiError::BadRequest(format!(
            "Invalid Name: '{trimmed}'. Names may only contain: letters, numbers, spaces, \
             underscores, hyphens, periods, plus signs, apostrophes, and parentheses"
        )));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked_like_synapse() {
        assert_eq!(validate_name("  data (v2).csv ").unwrap(), "data (v2).csv");
        for bad in ["", "   ", "résumé.txt", "a#b", "a&b", "[x]", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&"a".repeat(256)).is_ok());
        let long = validate_name(&"a".repeat(257)).unwrap_err();
        assert!(long.to_string().contains("256"), "{long}");
        let invalid = validate_name("a#b").unwrap_err().to_string();
        assert!(invalid.starts_with("Invalid Name: 'a#b'. Names may only contain"));
    }
}
