//! The evaluation report's pictures (`spae eval --report DIR`): PSNR and SSIM against the
//! number of layers decoded, the training curves from the runs' CSV logs, and a sheet of
//! held-out images with the words of their upper layers.

use std::sync::Once;

use anyhow::{anyhow, ensure, Result};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::eval::heldout::{Report, SheetRow};
use crate::image_io;
use crate::train::log::StepRecord;

const FONT: &str = "sans-serif";
/// One colour per model or run, in the order given.
const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(230, 120, 20), RGBColor(44, 160, 44), RGBColor(150, 60, 170)];
/// Steps averaged (trailing) in the training curves.
const SMOOTHING: usize = 50;
/// How much the sheet enlarges the model's pixels.
const SHEET_UPSCALE: u32 = 2;
/// Words of a teacher's top list: drawn in this colour in the sheet.
const HIT: RGBColor = RGBColor(0, 140, 60);

fn register_font() {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        // The egui default font, already compiled into the studio.
        if plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT).is_err() {
            panic!("the bundled font is a valid TrueType font");
        }
    });
}

/// Draws into a white `width x height` picture.
fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<RgbImage> {
    register_font();
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow!("drawing the report: {e}"))?;
    }
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| anyhow!("the picture buffer has the wrong size"))
}

fn plotting<T, E: std::fmt::Display>(result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|e| anyhow!("drawing the report: {e}"))
}

/// A run's points and name on one panel.
struct Line<'a> {
    name: &'a str,
    /// Index into [`COLOURS`]: a model's or run's own, so it keeps its colour in every
    /// panel, whichever lines a panel leaves out.
    colour: usize,
    points: Vec<(f64, f64)>,
}

/// One panel: lines with markers (`markers`) or plain, over the points' range.
fn panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    markers: bool,
) -> Result<()> {
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all.filter(|p| p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    ensure!(x0.is_finite() && y0.is_finite(), "nothing to draw in the panel \"{title}\"");
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let x_pad = if markers { 0.3 } else { 0.0 };
    let mut chart = plotting(
        ChartBuilder::on(area)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0 - x_pad..x1 + x_pad + 1e-9, y0 - pad..y1 + pad),
    )?;
    let whole = |x: &f64| format!("{x:.0}");
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&whole);
    if markers {
        // Whole layers only.
        mesh.x_labels((x1 - x0) as usize + 1);
    }
    plotting(mesh.draw())?;
    for line in lines {
        let colour = COLOURS[line.colour % COLOURS.len()];
        let points = line.points.iter().copied().filter(|p| p.1.is_finite());
        plotting(chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2))))?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        if markers {
            plotting(chart.draw_series(points.map(|p| Circle::new(p, 4, colour.filled()))))?;
        }
    }
    plotting(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw(),
    )?;
    Ok(())
}

/// PSNR and SSIM on the held-out split against the number of layers decoded, one line per
/// model.
pub fn layer_chart(models: &[(&str, &Report)]) -> Result<RgbImage> {
    render(1100, 420, |root| {
        plotting(root.fill(&WHITE))?;
        let halves = root.split_evenly((1, 2));
        let per_layer = |values: &dyn Fn(&Report) -> &Vec<f64>| -> Vec<Line> {
            models
                .iter()
                .enumerate()
                .map(|(colour, (name, report))| Line {
                    name,
                    colour,
                    points: values(report).iter().enumerate().map(|(l, &v)| ((l + 1) as f64, v)).collect(),
                })
                .collect()
        };
        panel(&halves[0], "Held-out PSNR", "layers decoded", "PSNR (dB)", &per_layer(&|r| &r.psnr_db), true)?;
        panel(&halves[1], "Held-out SSIM", "layers decoded", "SSIM", &per_layer(&|r| &r.ssim), true)
    })
}

/// Trailing mean over `SMOOTHING` steps of one column of a log.
fn smoothed(log: &[StepRecord], value: impl Fn(&StepRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut window: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let mut sum = 0.0;
    let mut out = Vec::new();
    for record in log {
        let Some(v) = value(record).filter(|v| v.is_finite()) else { continue };
        window.push_back(v);
        sum += v;
        if window.len() > SMOOTHING {
            sum -= window.pop_front().expect("window is not empty");
        }
        out.push((record.step as f64, sum / window.len() as f64));
    }
    out
}

/// The runs' training curves: PSNR of the training batches, the pixel MSE, the commitment
/// term and the weighted semantic term, each a trailing mean over 50 steps.
pub fn training_curves(runs: &[(&str, &[StepRecord])]) -> Result<RgbImage> {
    ensure!(runs.iter().any(|(_, log)| !log.is_empty()), "the training logs are empty");
    render(1100, 760, |root| {
        plotting(root.fill(&WHITE))?;
        let panels = root.split_evenly((2, 2));
        let lines = |value: &dyn Fn(&StepRecord) -> Option<f64>| -> Vec<Line> {
            runs.iter()
                .enumerate()
                .map(|(colour, (name, log))| Line { name, colour, points: smoothed(log, value) })
                .filter(|l| !l.points.is_empty())
                .collect()
        };
        panel(&panels[0], "PSNR of training batches", "step", "PSNR (dB)", &lines(&|r| Some(r.psnr_db)), false)?;
        panel(&panels[1], "Pixel MSE (pixels in -1..1)", "step", "MSE", &lines(&|r| Some(r.pixel_mse)), false)?;
        panel(
            &panels[2],
            "Commitment term",
            "step",
            "relative to the codebook's power",
            // A run without the term (the decoder stage) logs 0: no line.
            &lines(&|r| Some(r.commitment).filter(|&c| c != 0.0)),
            false,
        )?;
        let semantic = lines(&|r| r.semantic);
        if semantic.is_empty() {
            plotting(panels[3].draw(&Text::new("no run with semantic guidance", (120, 180), (FONT, 18))))?;
            Ok(())
        } else {
            panel(&panels[3], "Semantic guidance (weighted)", "step", "weighted cross-entropy", &semantic, false)
        }
    })
}

/// Held-out images beside their reconstruction, the teacher's top words and each model's
/// upper-layer words (words the teacher ranks among its top ones in green).
pub fn word_sheet(rows: &[SheetRow]) -> Result<RgbImage> {
    ensure!(!rows.is_empty(), "no images for the sheet");
    let side = rows[0].original.width() * SHEET_UPSCALE;
    let text_lines = 2 + 2 * rows[0].models.len() as u32;
    let row_height = (side + 16).max(text_lines * 19 + 16);
    let (width, text_x) = (1400u32, 2 * side + 36);
    render(width, row_height * rows.len() as u32 + 8, |root| {
        plotting(root.fill(&WHITE))?;
        for (i, row) in rows.iter().enumerate() {
            let top = i as u32 * row_height + 8;
            for (j, picture) in [&row.original, &row.decoded].into_iter().enumerate() {
                let big = image_io::upscale(picture, SHEET_UPSCALE);
                let x0 = 12 + j as u32 * (side + 8);
                for (x, y, p) in big.enumerate_pixels() {
                    plotting(root.draw_pixel(((x0 + x) as i32, (top + y) as i32), &RGBColor(p[0], p[1], p[2])))?;
                }
            }
            let mut y = top as i32;
            let mut line =
                |label: &str, words: &[(String, bool)], root: &DrawingArea<BitMapBackend, Shift>| -> Result<()> {
                    let mut x = text_x as i32;
                    plotting(root.draw(&Text::new(label.to_string(), (x, y), (FONT, 15).into_font().color(&BLACK))))?;
                    x += 120;
                    for (word, hit) in words {
                        let style = (FONT, 15).into_font().color(if *hit { &HIT } else { &RGBColor(90, 90, 90) });
                        let (w, _) = plotting(root.estimate_text_size(word, &style))?;
                        if x + w as i32 > width as i32 - 10 {
                            y += 19;
                            x = text_x as i32 + 120;
                        }
                        plotting(root.draw(&Text::new(word.clone(), (x, y), style)))?;
                        x += w as i32 + 7;
                    }
                    y += 19;
                    Ok(())
                };
            let plain = |words: &[String]| words.iter().map(|w| (w.clone(), true)).collect::<Vec<_>>();
            line("text", &[(row.text.clone(), false)], root)?;
            line("teacher", &plain(&row.teacher), root)?;
            for model in &row.models {
                line(&model.model, &model.words, root)?;
            }
            let rule = (i as u32 + 1) * row_height + 2;
            plotting(root.draw(&PathElement::new(
                vec![(0, rule as i32), (width as i32, rule as i32)],
                RGBColor(220, 220, 220),
            )))?;
        }
        Ok(())
    })
}
