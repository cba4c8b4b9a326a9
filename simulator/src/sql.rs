//! The part of Synapse's table SQL the simulator answers: `SELECT <columns> FROM syn<id>`, then
//! optionally a row filter `WHERE ROW_ID = n` or `WHERE ROW_ID IN (n, m, ...)`, then optionally
//! `LIMIT n [OFFSET m]`: what a migration (and the official client's `synapseutils.migrate`)
//! sends, and the form the server itself writes to read given cells
//! (`SQLUtils.buildSelectRowIds`: `SELECT "a", "b" FROM syn123 WHERE ROW_ID IN (222, 333)`).
//! Columns are `*`, bare names or double-quoted names (`""` inside a quoted name is one `"`, as in
//! the server's grammar, `DelimitedIdentifier`). `ROW_ID` is the row metadata column the server
//! resolves in any case, bare or double-quoted (`TableInfo.lookupColumnReference` →
//! `RowMetadataColumnTranslationReference.lookupColumnReference`, `equalsIgnoreCase`; no schema
//! column can take the name: `ColumnModelManagerImpl.checkColumnNaming`). Row ids are unsigned
//! integer literals. Keywords are case-insensitive. Anything else, other WHERE forms and malformed
//! SQL included, is refused with a 400 that says the simulator does not support it: the server
//! would answer valid SQL, so pretending it is invalid would be wrong, and for malformed SQL the
//! server's text is its parser's (`ParseException`: `Encountered ... Was expecting one of: ...`),
//! whose lists of expected tokens the simulator does not reproduce.

use std::collections::BTreeSet;

use crate::error::ApiError;

/// The row metadata column a WHERE may name (`TableConstants.ROW_ID`).
pub const ROW_ID: &str = "ROW_ID";

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
    /// `WHERE ROW_ID = n` or `WHERE ROW_ID IN (...)`: the rows it keeps (an id no row has keeps
    /// nothing); `None` without a WHERE.
    pub row_ids: Option<BTreeSet<u64>>,
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
    Equals,
    LeftParen,
    RightParen,
}

fn unsupported(sql: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "The simulator only answers SQL of the form SELECT <columns> FROM syn<id> [WHERE ROW_ID = \
         <n> | WHERE ROW_ID IN (<n>, ...)] [LIMIT <n> [OFFSET <m>]]: {sql}"
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
            ',' | '*' | '.' | '=' | '(' | ')' => {
                chars.next();
                out.push(match c {
                    ',' => Token::Comma,
                    '*' => Token::Star,
                    '.' => Token::Dot,
                    '=' => Token::Equals,
                    '(' => Token::LeftParen,
                    _ => Token::RightParen,
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
    let mut row_ids = None;
    if keyword(at.peek().copied(), "where") {
        at.next();
        match at.next() {
            Some(Token::Word(name) | Token::Quoted(name)) if name.eq_ignore_ascii_case(ROW_ID) => {}
            _ => return Err(unsupported(sql)),
        }
        let mut ids = BTreeSet::new();
        match at.next() {
            Some(Token::Equals) => {
                ids.insert(number(&mut at)?);
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("in") => {
                if at.next() != Some(&Token::LeftParen) {
                    return Err(unsupported(sql));
                }
                loop {
                    ids.insert(number(&mut at)?);
                    match at.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::RightParen) => break,
                        _ => return Err(unsupported(sql)),
                    }
                }
            }
            _ => return Err(unsupported(sql)),
        }
        row_ids = Some(ids);
    }
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
        row_ids,
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
    fn a_row_id_filter_parses_with_its_pagination() {
        let ids = |sql: &str| parse(sql).unwrap().row_ids;
        let set = |ids: &[u64]| Some(ids.iter().copied().collect::<BTreeSet<u64>>());
        // The server's own form (SQLUtils.buildSelectRowIds).
        let select =
            parse(r#"SELECT "col_1", "col_2" FROM syn123 WHERE ROW_ID IN (222, 333)"#).unwrap();
        assert_eq!(select.columns.len(), 2);
        assert_eq!((select.table, select.limit), (123, None));
        assert_eq!(select.row_ids, set(&[222, 333]));
        assert_eq!(ids("select * from syn1 where ROW_ID = 5"), set(&[5]));
        assert_eq!(ids("select * from syn1 WHERE row_id=5;"), set(&[5]));
        assert_eq!(
            ids(r#"select a from syn1 where "Row_Id" in(3,1,3)"#),
            set(&[1, 3])
        );
        assert_eq!(ids("select a from syn1"), None);
        let select =
            parse("select a from syn1 where ROW_ID in (1, 2, 3) limit 2 offset 1").unwrap();
        assert_eq!(select.row_ids, set(&[1, 2, 3]));
        assert_eq!((select.limit, select.offset), (Some(2), Some(1)));
    }

    #[test]
    fn anything_else_is_refused_as_beyond_the_simulator() {
        for sql in [
            "select a from syn1 where a = 1",
            "select a from syn1 where ROW_ID > 1",
            "select a from syn1 where ROW_ID not in (1)",
            "select a from syn1 where ROW_ID = 1 and a = 2",
            "select a from syn1 where ROW_ID = 1 or ROW_ID = 2",
            "select a from syn1 where ROW_ID = '1'",
            "select a from syn1 where ROW_ID = -1",
            "select a from syn1 where ROW_VERSION = 1",
            "select a from syn1 where syn1.ROW_ID = 1",
            "select a from syn1 where (ROW_ID = 1)",
            "select a from syn1 where ROW_ID in ()",
            "select a from syn1 where ROW_ID in (1,)",
            "select a from syn1 where ROW_ID in (1, 2",
            "select a from syn1 where ROW_ID in 1",
            "select a from syn1 where ROW_ID",
            "select a from syn1 where",
            "select a from syn1 limit 1 where ROW_ID = 1",
            "select a from syn1 where ROW_ID = 1 order by a",
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
