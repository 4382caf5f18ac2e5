//! How long a blocking command may block: its timeout gets that on top.

use std::time::Duration;

/// How long a blocking command may block: `None` for other commands,
/// `Some(None)` for "forever" (timeout 0).
pub(super) fn blocking_time(cmd: &redis::Cmd) -> Option<Option<Duration>> {
    let args: Vec<String> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let secs = |s: &String| s.parse::<f64>().ok().filter(|v| *v >= 0.0);
    let as_block = |v: f64, unit: f64| (v > 0.0).then(|| Duration::from_secs_f64(v * unit));
    match name.as_str() {
        "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BZPOPMIN" | "BZPOPMAX" => {
            Some(as_block(secs(args.last()?)?, 1.0))
        }
        "BLMPOP" | "BZMPOP" => Some(as_block(secs(args.get(1)?)?, 1.0)),
        "XREAD" | "XREADGROUP" | "WAIT" | "WAITAOF" => {
            let at = if name.starts_with('W') {
                args.len().checked_sub(1)?
            } else {
                args.iter().position(|a| a.eq_ignore_ascii_case("BLOCK"))? + 1
            };
            Some(as_block(secs(args.get(at)?)?, 0.001))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_commands_carry_their_block_time() {
        let c = |args: &[&str]| {
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            blocking_time(&cmd)
        };
        assert_eq!(c(&["GET", "k"]), None);
        assert_eq!(
            c(&["BLPOP", "a", "b", "2"]),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(c(&["BLPOP", "a", "0"]), Some(None));
        assert_eq!(
            c(&["BLMPOP", "1.5", "1", "k", "LEFT"]),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            c(&["XREAD", "BLOCK", "250", "STREAMS", "s", "$"]),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(c(&["XREAD", "STREAMS", "s", "$"]), None);
    }
}
