//! `--plot out.svg`: open sessions per backend over the arrival period, one
//! panel per simulated strategy, with each scripted event as a labelled
//! vertical line. Drawn with `plotters` (SVG backend only, no font or system
//! libraries: text is laid out with its built-in estimate).

use std::path::Path;

use plotters::prelude::*;

use super::outcome::RunOutcome;
use super::script::ScriptedEvent;

const WIDTH: u32 = 1000;
const PANEL_HEIGHT: u32 = 360;

/// Writes the plot of `runs` to `path` as SVG.
pub fn write(
    path: &Path,
    backends: &[String],
    events: &[ScriptedEvent<usize>],
    runs: &[RunOutcome],
) -> Result<(), String> {
    let height = PANEL_HEIGHT * runs.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((runs.len().max(1), 1));
        for (panel, run) in panels.iter().zip(runs) {
            draw_panel(panel, backends, events, run).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    std::fs::write(path, svg).map_err(|e| format!("{}: cannot write the plot: {e}", path.display()))
}

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel(
    panel: &Panel<'_>,
    backends: &[String],
    events: &[ScriptedEvent<usize>],
    run: &RunOutcome,
) -> Result<(), Box<dyn std::error::Error>> {
    let end = run
        .samples
        .last()
        .map_or(1.0, |(t, _)| t.as_secs_f64())
        .max(1e-3);
    let top = run
        .samples
        .iter()
        .flat_map(|(_, open)| open.iter())
        .max()
        .copied()
        .unwrap_or(0);
    let top = (top as f64 * 1.1).max(1.0);
    let mut chart = ChartBuilder::on(panel)
        .caption(
            format!("open sessions per backend: {}", run.strategy),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("sessions")
        .draw()?;
    for (i, address) in backends.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points = run
            .samples
            .iter()
            .map(|(t, open)| (t.as_secs_f64(), open.get(i).copied().unwrap_or(0) as f64));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(address.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    for event in events.iter().filter(|e| e.at.as_secs_f64() <= end) {
        let x = event.at.as_secs_f64();
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, top)],
            BLACK.stroke_width(1),
        )))?;
        let label = event.text.trim_start_matches("at ").to_string();
        chart.draw_series(std::iter::once(Text::new(
            label,
            (x, top * 0.97),
            ("sans-serif", 12),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
