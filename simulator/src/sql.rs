//! The part of Synapse's table SQL the simulator answers: `SELECT <columns> FROM syn<id>` with an
//! optional `LIMIT n [OFFSET m]`, which is all a migration (and the official client's
//! `synapseutils.migrate`) sends. Columns are `*`, bare names or double-quoted names (`""` inside
//! a quoted name is one `"`, as in the server's grammar, `DelimitedIdentifier`). Keywords are
//! case-insensitive. Anything else is refused with a 400 that says the simulator does not
//! support it: the server would answer such SQL, so pretending it is invalid would be wrong.

use crate::error::ApiError;

/// One entry of the select list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selected {
    /// `*`: every column of the schema, in schema order.
    All,
    Column(String),
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Select {
    pub columns: Vec<Selected>,
    /// The numeric table id of the `FROM` clause.
    pub table: u64,
    /// `syn<id>.<version>`: a snapshot. Parsed so that it can be refused by name.
    pub version: Option<u64>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Number(u64),
    Comma,
    Star,
    Dot,
}

fn unsupported(sql: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "The simulator only answers SQL of the form SELECT <columns> FROM syn<id> [LIMIT <n> \
         [OFFSET <m>]]: {sql}"
    ))
}

fn tokens(sql: &str) -> Result<Vec<Token>, ApiError> {
    let mut out = Vec::new();
    let mut chars = sql.trim().trim_end_matches(';').chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' | '*' | '.' => {
                chars.next();
                out.push(match c {
                    ',' => Token::Comma,
                    '*' => Token::Star,
                    _ => Token::Dot,
                });
            }
            '"' => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some(c) => name.push(c),
                        None => return Err(unsupported(sql)),
                    }
                }
                out.push(Token::Quoted(name));
            }
            c if c.is_ascii_digit() => {
                let mut digits = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(d);
                    chars.next();
                }
                out.push(Token::Number(digits.parse().map_err(|_| unsupported(sql))?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::new();
                while let Some(&w) = chars
                    .peek()
                    .filter(|w| w.is_ascii_alphanumeric() || **w == '_')
                {
                    word.push(w);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
            _ => return Err(unsupported(sql)),
        }
    }
    Ok(out)
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// Parses `sql`, or refuses it as beyond the simulator.
pub fn parse(sql: &str) -> Result<Select, ApiError> {
    let tokens = tokens(sql)?;
    let mut at = tokens.iter().peekable();
    if !keyword(at.next(), "select") {
        return Err(unsupported(sql));
    }
    let mut columns = Vec::new();
    loop {
        columns.push(match at.next() {
            Some(Token::Star) => Selected::All,
            Some(Token::Quoted(name)) => Selected::Column(name.clone()),
            Some(Token::Word(name)) if !name.eq_ignore_ascii_case("from") => {
                Selected::Column(name.clone())
            }
            _ => return Err(unsupported(sql)),
        });
        match at.next() {
            Some(Token::Comma) => continue,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("from") => break,
            _ => return Err(unsupported(sql)),
        }
    }
    let table = match at.next() {
        Some(Token::Word(w)) if w.len() > 3 && w[..3].eq_ignore_ascii_case("syn") => {
            w[3..].parse().map_err(|_| unsupported(sql))?
        }
        _ => return Err(unsupported(sql)),
    };
    let mut version = None;
    if at.peek() == Some(&&Token::Dot) {
        at.next();
        match at.next() {
            Some(Token::Number(v)) => version = Some(*v),
            _ => return Err(unsupported(sql)),
        }
    }
    let number = |at: &mut std::iter::Peekable<std::slice::Iter<'_, Token>>| match at.next() {
        Some(Token::Number(n)) => Ok(*n),
        _ => Err(unsupported(sql)),
    };
    let (mut limit, mut offset) = (None, None);
    if keyword(at.peek().copied(), "limit") {
        at.next();
        limit = Some(number(&mut at)?);
        if keyword(at.peek().copied(), "offset") {
            at.next();
            offset = Some(number(&mut at)?);
        }
    }
    if at.next().is_some() {
        return Err(unsupported(sql));
    }
    Ok(Select {
        columns,
        table,
        version,
        limit,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_select_and_plain_forms_parse() {
        let select = parse(r#"select "files","two ""q""" from syn123"#).unwrap();
        assert_eq!(
            select.columns,
            [
                Selected::Column("files".into()),
                Selected::Column("two \"q\"".into())
            ]
        );
        assert_eq!((select.table, select.version), (123, None));
        let select = parse("SELECT * FROM SYN9.2 limit 5 OFFSET 10;").unwrap();
        assert_eq!(select.columns, [Selected::All]);
        assert_eq!(
            (select.table, select.version, select.limit, select.offset),
            (9, Some(2), Some(5), Some(10))
        );
        let select = parse("select a, b from syn1").unwrap();
        assert_eq!(select.columns.len(), 2);
    }

    #[test]
    fn anything_else_is_refused_as_beyond_the_simulator() {
        for sql in [
            "select a from syn1 where a = 1",
            "select count(*) from syn1",
            "update syn1",
            "select a from folder",
            "select \"a from syn1",
            "select a from syn1 limit x",
            "select a syn1",
        ] {
            let refused = parse(sql).unwrap_err().to_string();
            assert!(
                refused.starts_with("The simulator only answers SQL"),
                "{sql}"
            );
        }
    }
}
