//! The report's charts, as SVG (plotters' SVG backend: text stays text, no fonts needed).
//!
//! Each chart is ns per packet (median of batch medians, with the range of batch medians
//! as a bar) against a table size on a logarithmic axis, one line per case, so that "flat
//! in the table size" reads at a glance.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One line of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (table size, median ns, lowest batch ns, highest batch ns).
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Writes a line chart of `series` (in ns per packet) to `path`.
pub fn line_chart(path: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<()> {
    chart(path, title, x_label, "ns per packet", series)
}

/// Writes a line chart of `series` to `path`, the y axis labelled `y_label`.
pub fn chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, 1.0f64, 1.0f64);
    for &(x, _, _, high) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(high);
    }
    if x_min == f64::MAX {
        return Ok(());
    }
    let draw = |error: &dyn std::fmt::Display| anyhow!("drawing {}: {error}", path.display());
    let root = SVGBackend::new(path, (860, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            ((x_min / 2.0)..(x_max * 2.0)).log_scale(),
            0.0..(y_max * 1.15),
        )
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format_count(*x))
        .draw()
        .map_err(|e| draw(&e))?;
    for (index, line) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                line.points.iter().map(|&(x, median, _, _)| (x, median)),
                color.stroke_width(2),
            ))
            .map_err(|e| draw(&e))?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart
            .draw_series(line.points.iter().map(|&(x, median, low, high)| {
                ErrorBar::new_vertical(x, low, median, high, color.filled(), 6)
            }))
            .map_err(|e| draw(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}

/// `10`, `1k`, `100k`, `1M`.
fn format_count(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", (x / 1e6).round())
    } else if x >= 1e3 {
        format!("{}k", (x / 1e3).round())
    } else {
        format!("{}", x.round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_short() {
        assert_eq!(format_count(10.0), "10");
        assert_eq!(format_count(1_000.0), "1k");
        assert_eq!(format_count(524_288.0), "524k");
        assert_eq!(format_count(1_000_000.0), "1M");
    }

    #[test]
    fn a_chart_is_written_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        line_chart(
            &path,
            "test",
            "rules",
            &[Series {
                name: "denied".into(),
                points: vec![(10.0, 240.0, 230.0, 250.0), (10_000.0, 245.0, 240.0, 260.0)],
            }],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("denied"));
    }
}
