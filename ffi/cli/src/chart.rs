//! `dlm chart LOG -o stats.png|stats.svg|stats.html`: the statistics log
//! (dlm's, or JackrabbitDLM's: the same lines,
//! `YYYY-MM-DD HH:MM:SS.ffffff Key: value, Key: value`, UTC) drawn as one
//! line per counter over time, with plotters.
//!
//! Lines that are not statistics lines are skipped (and counted). Counters
//! are drawn by default (each value is a count per logging interval);
//! `--stats` picks any, gauges included.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use plotters::prelude::*;

/// Most samples read (every value of every line counts one).
const MAX_SAMPLES: usize = 20_000_000;

/// The gauges of the log (levels, not counts per interval).
const GAUGES: [&str; 6] = ["AConn", "AData", "ALock", "AWait", "ConnMemory", "Memory"];

#[derive(Args)]
pub(crate) struct ChartArgs {
    /// The statistics log (`dlm-server --log-file`, or JackrabbitDLM's).
    log: PathBuf,
    /// The chart: .png, .svg or .html (a page with the SVG and a table).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Only these statistics, comma-separated (default: every counter).
    #[arg(long, value_delimiter = ',')]
    stats: Vec<String>,
    /// Width and height in pixels.
    #[arg(long, default_value = "1200x700", value_parser = size)]
    size: (u32, u32),
    /// The chart's title.
    #[arg(long, default_value = "dlm statistics")]
    title: String,
}

fn size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("{text:?}: WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("{w:?}: a width"))?;
    let h: u32 = h.parse().map_err(|_| format!("{h:?}: a height"))?;
    if !(200..=8000).contains(&w) || !(150..=8000).contains(&h) {
        return Err("between 200x150 and 8000x8000".into());
    }
    Ok((w, h))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` as seconds since 1970 (UTC).
fn parse_time(date: &str, time: &str) -> Option<f64> {
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(str::parse::<i64>);
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if t.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s;
    #[allow(clippy::cast_precision_loss)]
    Some(secs as f64 + frac)
}

/// One statistics line: its time and its `Key: value` pairs.
fn parse_line(line: &str) -> Option<(f64, Vec<(&str, u64)>)> {
    let mut parts = line.splitn(3, ' ');
    let at = parse_time(parts.next()?, parts.next()?)?;
    let rest = parts.next()?;
    let mut values = Vec::new();
    for pair in rest.split(", ") {
        let (k, v) = pair.split_once(": ")?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        values.push((k, v.trim().parse().ok()?));
    }
    Some((at, values))
}

/// The log read: each statistic's `(time, value)` points, and how many
/// lines were skipped.
struct Log {
    series: BTreeMap<String, Vec<(f64, f64)>>,
    times: Vec<f64>,
    skipped: usize,
}

fn read_log(path: &Path, only: &[String]) -> Result<Log, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut log = Log {
        series: BTreeMap::new(),
        times: Vec::new(),
        skipped: 0,
    };
    let mut samples = 0usize;
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(file);
    loop {
        line.clear();
        // Lines are bounded: a statistics line is short.
        match std::io::Read::take(&mut reader, 1 << 16).read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let Some((at, values)) = parse_line(line.trim_end()) else {
            log.skipped += 1;
            // The rest of an over-long line.
            if !line.ends_with('\n') {
                let mut rest = Vec::new();
                let _ = reader.read_until(b'\n', &mut rest);
            }
            continue;
        };
        log.times.push(at);
        for (k, v) in values {
            let wanted = if only.is_empty() {
                !GAUGES.contains(&k)
            } else {
                only.iter().any(|o| o == k)
            };
            if wanted {
                samples += 1;
                if samples > MAX_SAMPLES {
                    return Err(format!(
                        "more than {MAX_SAMPLES} samples: chart a part of the log"
                    ));
                }
                // The line's index for now; its time below.
                #[allow(clippy::cast_precision_loss)]
                log.series
                    .entry(k.to_owned())
                    .or_default()
                    .push(((log.times.len() - 1) as f64, v as f64));
            }
        }
    }
    // A statistic absent from a line was zero then (the log writes only
    // non-zero values): fill the gaps so lines drop to zero.
    for points in log.series.values_mut() {
        let mut full = Vec::with_capacity(log.times.len());
        let mut it = points.iter().peekable();
        for (i, &t) in log.times.iter().enumerate() {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            match it.peek() {
                Some(&&(line, v)) if line as usize == i => {
                    full.push((t, v));
                    it.next();
                }
                _ => full.push((t, 0.0)),
            }
        }
        *points = with_gaps(&full, typical_gap(&log.times));
    }
    Ok(log)
}

/// The usual time between two lines (their median gap).
fn typical_gap(times: &[f64]) -> f64 {
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied().unwrap_or(0.0)
}

/// The server writes no line for an interval where every counter is
/// zero: where lines are missing, the counters drop to zero (instead of
/// a slope across the silence).
fn with_gaps(points: &[(f64, f64)], gap: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 && gap > 0.0 {
            let prev = points[i - 1].0;
            if t - prev > 1.5 * gap {
                out.push((prev + gap, 0.0));
                out.push((t - gap, 0.0));
            }
        }
        out.push((t, v));
    }
    out
}

/// `HH:MM` (or `MM-DD HH:MM` over more than a day) of a time in seconds.
fn label(t: f64, span: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let secs = t.floor() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days, for the month and day.
    let z = days + 719_468;
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    if span > 86_400.0 {
        format!("{month:02}-{day:02} {:02}:{:02}", sod / 3600, sod / 60 % 60)
    } else if span > 600.0 {
        format!("{:02}:{:02}", sod / 3600, sod / 60 % 60)
    } else {
        format!("{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60)
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    log: &Log,
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let t0 = log.times.first().copied().unwrap_or(0.0);
    let mut t1 = log.times.last().copied().unwrap_or(1.0);
    if t1 <= t0 {
        t1 = t0 + 1.0;
    }
    let ymax = log
        .series
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(1.0f64, f64::max)
        * 1.05;
    let span = t1 - t0;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(t0..t1, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|t| label(*t, span))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .x_desc("time (UTC)")
        .y_desc("per logging interval")
        .draw()
        .map_err(err)?;
    for (i, (name, points)) in log.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(log: &Log, svg: &str, title: &str, source: &Path) -> String {
    let mut rows = String::new();
    for (name, points) in &log.series {
        let total: f64 = points.iter().map(|p| p.1).sum();
        let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{total:.0}</td><td>{peak:.0}</td></tr>",
            html_escape(name)
        );
    }
    let span = match (log.times.first(), log.times.last()) {
        (Some(a), Some(b)) => format!("{} – {} UTC", label(*a, 90_000.0), label(*b, 90_000.0)),
        _ => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
         td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}</style></head><body>\
         <h1>{t}</h1><p>{src}: {n} lines, {span}</p>{svg}\
         <table><thead><tr><th>Statistic</th><th>Total</th><th>Peak per interval</th></tr></thead>\
         <tbody>{rows}</tbody></table></body></html>\n",
        t = html_escape(title),
        src = html_escape(&source.display().to_string()),
        n = log.times.len(),
    )
}

/// Draws the chart.
pub(crate) fn run(args: &ChartArgs) -> ExitCode {
    let fail = |what: String| {
        eprintln!("dlm: chart: {what}");
        ExitCode::from(1)
    };
    let log = match read_log(&args.log, &args.stats) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if log.times.is_empty() {
        return fail(format!(
            "{}: no statistics lines ({} other lines)",
            args.log.display(),
            log.skipped
        ));
    }
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let drawn = match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(&args.output, args.size).into_drawing_area();
            draw(&root, &log, &args.title)
        }
        Some("svg") => {
            let root = SVGBackend::new(&args.output, args.size).into_drawing_area();
            draw(&root, &log, &args.title)
        }
        Some("html") => {
            let mut svg = String::new();
            let r = {
                let root = SVGBackend::with_string(&mut svg, args.size).into_drawing_area();
                draw(&root, &log, &args.title)
            };
            r.and_then(|()| {
                std::fs::write(&args.output, html(&log, &svg, &args.title, &args.log))
                    .map_err(|e| format!("{}: {e}", args.output.display()))
            })
        }
        _ => return fail("the output must end in .png, .svg or .html".into()),
    };
    if let Err(e) = drawn {
        return fail(e);
    }
    eprintln!(
        "dlm: chart: {} lines, {} statistics{} -> {}",
        log.times.len(),
        log.series.len(),
        if log.skipped > 0 {
            format!(", {} other lines skipped", log.skipped)
        } else {
            String::new()
        },
        args.output.display()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_times_parse() {
        let (t, v) = parse_line("2026-11-26 00:00:01.500000 BadPayload: 1, Lock: 2").unwrap();
        assert!((t - 1_795_651_201.5).abs() < 1e-6);
        assert_eq!(v, [("BadPayload", 1), ("Lock", 2)]);
        assert_eq!(parse_time("1970-01-01", "00:00:00"), Some(0.0));
        assert_eq!(parse_time("2000-02-29", "12:34:56"), Some(951_827_696.0));
        for bad in [
            "",
            "hello world",
            "2026-13-01 00:00:00 Lock: 1",
            "2026-11-26 00:00:00 Lock 1",
            "2026-11-26 00:00:00 Lock: -1",
            "2026-11-26 00:00:00 <b>: 1",
        ] {
            assert!(parse_line(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn silent_intervals_drop_to_zero() {
        let times = [0.0, 2.0, 4.0, 20.0, 22.0];
        assert!((typical_gap(&times) - 2.0).abs() < 1e-9);
        let pts: Vec<(f64, f64)> = times.iter().map(|&t| (t, 5.0)).collect();
        let out = with_gaps(&pts, 2.0);
        assert_eq!(
            out,
            [
                (0.0, 5.0),
                (2.0, 5.0),
                (4.0, 5.0),
                (6.0, 0.0),
                (18.0, 0.0),
                (20.0, 5.0),
                (22.0, 5.0)
            ]
        );
    }

    #[test]
    fn labels_follow_the_span() {
        assert_eq!(label(3661.0, 100.0), "01:01:01");
        assert_eq!(label(3661.0, 3600.0), "01:01");
        assert_eq!(label(951_827_696.0, 200_000.0), "02-29 12:34");
    }
}
