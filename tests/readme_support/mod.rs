//! README.md's shell examples: fenced blocks, their command lines, and the `kvxfer` argument
//! lists in them, as a shell would split them (quotes, continuations, comments, pipes).

/// One fenced shell block of the README.
#[derive(Debug)]
pub struct Block {
    /// The line of the README the block opens on (1-based).
    pub line: usize,
    /// Whether its info string marks it `runnable` (run by the test on the loopback).
    pub runnable: bool,
    /// Its command lines, continuations joined, comments and blank lines dropped.
    pub commands: Vec<Line>,
}

/// One command line of a block.
#[derive(Debug, Clone)]
pub struct Line {
    /// The README line it starts on (1-based).
    pub line: usize,
    /// The text, continuations joined, trailing comment dropped.
    pub text: String,
    /// The exit status its comment announces (`# exit 1: ...`), else 0.
    pub expect: i32,
}

/// Languages whose blocks hold shell commands.
const SHELL: [&str; 4] = ["sh", "bash", "shell", "console"];

/// Where the reader of the README is.
enum State {
    Prose,
    Shell(Block, Vec<(usize, String)>),
    Other,
}

/// Every fenced shell block of `readme`.
pub fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut state = State::Prose;
    for (i, raw) in readme.lines().enumerate() {
        let fence = raw.trim_start().strip_prefix("```");
        state = match (state, fence) {
            (State::Prose, Some(info)) => {
                let mut words = info.split_whitespace();
                if words.next().is_some_and(|l| SHELL.contains(&l)) {
                    let runnable = words.any(|w| w == "runnable");
                    let b = Block {
                        line: i + 1,
                        runnable,
                        commands: Vec::new(),
                    };
                    State::Shell(b, Vec::new())
                } else {
                    State::Other
                }
            }
            (State::Shell(mut b, lines), Some(_)) => {
                b.commands = commands(&lines);
                out.push(b);
                State::Prose
            }
            (State::Shell(b, mut lines), None) => {
                lines.push((i + 1, raw.to_string()));
                State::Shell(b, lines)
            }
            (State::Other, Some(_)) => State::Prose,
            (s, None) => s,
        };
    }
    out
}

/// Joins continuations, drops comments and blank lines.
fn commands(lines: &[(usize, String)]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut cur: Option<Line> = None;
    for (n, raw) in lines {
        let (text, comment) = split_comment(raw);
        let (body, more) = match text.trim_end().strip_suffix('\\') {
            Some(b) => (b.to_string(), true),
            None => (text.trim_end().to_string(), false),
        };
        let line = cur.get_or_insert_with(|| Line {
            line: *n,
            text: String::new(),
            expect: 0,
        });
        if let Some(code) = comment.as_deref().and_then(announced_exit) {
            line.expect = code;
        }
        if !line.text.is_empty() {
            line.text.push(' ');
        }
        line.text.push_str(body.trim());
        if !more {
            let done = cur.take().expect("a line in progress");
            if !done.text.is_empty() {
                out.push(done);
            }
        }
    }
    out.extend(cur.filter(|l| !l.text.is_empty()));
    out
}

/// The line without its shell comment (a `#` that starts a word outside quotes), and the
/// comment's text.
fn split_comment(s: &str) -> (String, Option<String>) {
    let (mut quote, mut prev_space) = (None, true);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev_space => {
                return (s[..i].to_string(), Some(s[i + 1..].trim().to_string()))
            }
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (s.to_string(), None)
}

/// The exit status a comment announces: `exit N` at its start.
fn announced_exit(comment: &str) -> Option<i32> {
    let rest = comment.strip_prefix("exit ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A word or an operator of a shell line.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Op,
}

/// Splits a line into words (quotes removed) and operators (`|`, `&&`, `||`, `;`, `&`).
fn tokens(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '|' | '&' | ';') => {
                out.extend(word.take().map(Token::Word));
                if matches!(chars.peek(), Some('|' | '&')) {
                    chars.next();
                }
                out.push(Token::Op);
            }
            (None, c) if c.is_whitespace() => out.extend(word.take().map(Token::Word)),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word.map(Token::Word));
    out
}

/// Every word of a line (quotes removed), operators left out.
pub fn words(line: &str) -> Vec<String> {
    tokens(line)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            Token::Op => None,
        })
        .collect()
}

/// The argument lists of every kvxfer invocation on a line: the words after a word naming the
/// kvxfer binary (`kvxfer`, `target/release/kvxfer`) or after `cargo run --release --` (none
/// after a bare `cargo run --release`), up to the next operator.
pub fn kvxfer_args(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for simple in tokens(line).split(|t| *t == Token::Op) {
        let w: Vec<&str> = simple
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                Token::Op => None,
            })
            .collect();
        if let Some(k) = w
            .iter()
            .position(|x| x.rsplit('/').next() == Some("kvxfer"))
        {
            out.push(w[k + 1..].iter().map(|s| s.to_string()).collect());
        } else if let Some(k) = w.windows(2).position(|p| p == ["cargo", "run"]) {
            let rest = &w[k + 2..];
            let args = match rest.iter().position(|x| *x == "--") {
                Some(d) => &rest[d + 1..],
                None => &[][..],
            };
            out.push(args.iter().map(|s| s.to_string()).collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_blocks_lines_and_invocations() {
        let md = "text\n```sh runnable\nA=1 kvxfer -s 1M \\\n  --verify  # exit 1: refused\n\n\
                  x | kvxfer parse --tool nixlbench -\n```\n```json\n{\"a\": 1}\n```\n\
                  ```sh\ncargo run --release -- plan generate 'p q.json'\ncargo run --release\n```\n";
        let b = blocks(md);
        assert_eq!(b.len(), 2);
        assert!(b[0].runnable && !b[1].runnable);
        assert_eq!(b[0].commands[0].text, "A=1 kvxfer -s 1M --verify");
        assert_eq!(b[0].commands[0].line, 3);
        assert_eq!(b[0].commands[0].expect, 1);
        assert_eq!(b[0].commands[1].expect, 0);
        assert_eq!(
            kvxfer_args(&b[0].commands[0].text),
            [["-s", "1M", "--verify"]]
        );
        assert_eq!(
            kvxfer_args(&b[0].commands[1].text),
            [["parse", "--tool", "nixlbench", "-"]]
        );
        assert_eq!(
            kvxfer_args(&b[1].commands[0].text),
            [["plan", "generate", "p q.json"]]
        );
        assert_eq!(kvxfer_args(&b[1].commands[1].text), [Vec::<String>::new()]);
    }
}
