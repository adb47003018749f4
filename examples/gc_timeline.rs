//! Turns a `FING_TRACE=gc` log into a timeline picture (plain SVG): the heap before and
//! after each collection and its goal over time, and each collection's stop-the-world time
//! as a bar whose height is its longest stop (a cycle run in slices stops the world
//! thousands of times; its bar is drawn where it ended, its total in the bar's tooltip).
//! Lines that are not collection lines are skipped, so the whole stderr of a run can be
//! given.
//!
//! `FING_TRACE=gc cargo run --release --example latency 2> gc.log`, then
//! `cargo run --example gc_timeline -- gc.log > timeline.svg` (or the log on stdin).

use std::fmt::Write as _;
use std::io::Read as _;

/// One collection line: `gc N @T s: pause P ms [in K stops (longest L ms, …)], A -> B MB,
/// G MB goal, …`.
#[derive(Debug)]
struct Cycle {
    at_s: f64,
    /// Stop-the-world time in all.
    pause_ms: f64,
    /// The longest single stop (the whole pause for a one-stop cycle).
    longest_ms: f64,
    stops: u64,
    before_mb: f64,
    after_mb: f64,
    goal_mb: Option<f64>,
}

fn parse(line: &str) -> Option<Cycle> {
    let rest = line.strip_prefix("gc ")?;
    let at_s: f64 = rest.split_once('@')?.1.split_once('s')?.0.parse().ok()?;
    let pause_ms: f64 = rest
        .split_once("pause ")?
        .1
        .split_once(" ms")?
        .0
        .parse()
        .ok()?;
    let stops = rest
        .split_once(" in ")
        .and_then(|(_, r)| r.split_once(" stops"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(1);
    let longest_ms = rest
        .split_once("(longest ")
        .and_then(|(_, r)| r.split_once(" ms"))
        .and_then(|(l, _)| l.parse().ok())
        .unwrap_or(pause_ms);
    let (heap, goal) = rest.split_once(" MB, ")?;
    let (before, after) = heap.rsplit_once(", ")?.1.split_once(" -> ")?;
    let goal_mb = goal.split_once(" MB goal")?.0.parse().ok();
    Some(Cycle {
        at_s,
        pause_ms,
        longest_ms,
        stops,
        before_mb: before.parse().ok()?,
        after_mb: after.parse().ok()?,
        goal_mb,
    })
}

fn main() {
    let mut log = String::new();
    match std::env::args().nth(1) {
        Some(path) => {
            log = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("gc_timeline: {path}: {e}"))
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut log)
                .expect("gc_timeline: reading stdin");
        }
    }
    let cycles: Vec<Cycle> = log.lines().filter_map(parse).collect();
    if cycles.is_empty() {
        eprintln!("gc_timeline: no `gc N @…` lines (run with FING_TRACE=gc)");
        std::process::exit(2);
    }
    print!("{}", svg(&cycles));
}

fn svg(cycles: &[Cycle]) -> String {
    let (w, h, left, right, top, mid, bottom) = (900.0, 420.0, 60.0, 20.0, 30.0, 290.0, 380.0);
    let t_max = cycles.iter().map(|c| c.at_s).fold(0.0, f64::max).max(1e-3) * 1.02;
    let mb_max = cycles
        .iter()
        .map(|c| c.before_mb.max(c.goal_mb.unwrap_or(0.0)))
        .fold(1.0, f64::max)
        * 1.05;
    let p_max = cycles.iter().map(|c| c.longest_ms).fold(0.1, f64::max);
    let x = |t: f64| left + (w - left - right) * t / t_max;
    let y = |mb: f64| mid - (mid - top) * mb / mb_max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    // Axes and labels.
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{mid}" x2="{}" y2="{mid}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{mid}" stroke="black"/>"#,
        w - right
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18">heap in use (MB): before and after each collection; goal dashed; {} collections, longest stop {p_max:.1} ms</text>"#,
        cycles.len()
    );
    let _ = writeln!(
        s,
        r#"<text x="4" y="{}">{mb_max:.0}</text><text x="4" y="{mid}">0</text>"#,
        top + 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">{t_max:.2} s</text><text x="{left}" y="{}">stops of the world (bar height: each collection's longest, scale {p_max:.1} ms)</text>"#,
        w - right - 40.0,
        mid + 14.0,
        mid + 30.0
    );
    // Heap: a saw-tooth through (t, before) and (t, after), starting from zero.
    let mut path = format!("M{} {}", x(0.0), y(0.0));
    for c in cycles {
        let _ = write!(
            path,
            " L{:.1} {:.1} L{:.1} {:.1}",
            x(c.at_s),
            y(c.before_mb),
            x(c.at_s),
            y(c.after_mb)
        );
    }
    let _ = writeln!(
        s,
        r#"<path d="{path}" fill="none" stroke="steelblue" stroke-width="1.5"/>"#
    );
    // Goal: steps, each set by a collection.
    let mut goal = String::new();
    for (i, c) in cycles.iter().enumerate() {
        let Some(g) = c.goal_mb else { continue };
        let end = cycles.get(i + 1).map_or(t_max, |n| n.at_s);
        let _ = write!(
            goal,
            " M{:.1} {:.1} L{:.1} {:.1}",
            x(c.at_s),
            y(g),
            x(end),
            y(g)
        );
    }
    if !goal.is_empty() {
        let _ = writeln!(
            s,
            r#"<path d="{goal}" stroke="gray" stroke-dasharray="4 3" fill="none"/>"#
        );
    }
    // Pauses: bars below the time axis. A one-stop cycle's spans its stop; a cycle in
    // slices is a thin bar where it ended, as high as its longest stop.
    for c in cycles {
        let (x1, bw) = if c.stops == 1 {
            let x1 = x((c.at_s - c.pause_ms / 1e3).max(0.0));
            (x1, (x(c.at_s) - x1).max(1.0))
        } else {
            (x(c.at_s) - 1.0, 2.0)
        };
        let bh = ((bottom - mid - 40.0) * c.longest_ms / p_max).max(1.0);
        let _ = writeln!(
            s,
            r#"<rect x="{x1:.1}" y="{:.1}" width="{bw:.1}" height="{bh:.1}" fill="crimson"><title>longest stop {:.3} ms of {} ({:.3} ms in all), ended at {:.3} s</title></rect>"#,
            bottom - bh,
            c.longest_ms,
            c.stops,
            c.pause_ms,
            c.at_s
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_collection_line() {
        let c = parse(
            "gc 6 @4.554s: pause 2074.237 ms (0.003 ms stopping, 2074.234 ms of work), 127.4 -> 120.5 MB, 241.0 MB goal, 90020 objects freed, 12468 finalizers queued, 0 cleanups queued, 0 objects to destroy",
        )
        .expect("a collection line");
        assert_eq!(
            (c.at_s, c.pause_ms, c.before_mb, c.after_mb, c.goal_mb),
            (4.554, 2074.237, 127.4, 120.5, Some(241.0))
        );
        let phased = parse("gc 5 @0.291s: pause 8.561 ms in 1 stops (longest 8.561 ms, start to end, 0.019 ms of it stopping), 7.9 -> 4.0 MB, 7.9 MB goal, 86531 objects freed, 0 finalizers queued, 0 cleanups queued, 86524 objects to destroy; work in ms: count_refs 2.678 roots 1.149 mark 0.006").unwrap();
        assert_eq!((phased.pause_ms, phased.after_mb), (8.561, 4.0));
        let none = parse("gc 1 @0.002s: pause 0.557 ms (0.003 ms stopping, 0.555 ms of work), 0.0 -> 0.0 MB, no MB goal, 0 objects freed").unwrap();
        assert_eq!(none.goal_mb, None);
        assert_eq!((c.longest_ms, c.stops), (2074.237, 1));
        let sliced = parse("gc 8 @7.830s: pause 1767.773 ms in 6338 stops (longest 1.387 ms, resurrect to resurrect, 0.014 ms of it stopping), 432.2 -> 398.2 MB, 796.4 MB goal, 2331571 objects freed").unwrap();
        assert_eq!(
            (
                sliced.pause_ms,
                sliced.stops,
                sliced.longest_ms,
                sliced.before_mb,
                sliced.after_mb
            ),
            (1767.773, 6338, 1.387, 432.2, 398.2)
        );
        assert!(parse("latency: built 64 MB live").is_none());
        assert!(svg(&[c]).contains("<rect"));
    }
}
