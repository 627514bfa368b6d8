//! Results: one row per measured figure, printed as a table or as JSON lines.

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `embedded-sqlite`, `quic-postgres`, `floor`, ….
    pub mode: String,
    /// `W1`, `W2`, `W2-processes`, `W3`, `W4`, `W5`, `W1-history`, or the floor figure's name.
    pub workload: String,
    /// The figure.
    pub value: f64,
    /// Its unit (`ms_per_step`, `steps_per_s`, …).
    pub unit: String,
}

/// Collects rows and prints each as it comes (JSON) or all at the end (table).
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    json: bool,
}

impl Report {
    /// A report printing JSON lines when `json`.
    pub fn new(json: bool) -> Report {
        Report {
            rows: Vec::new(),
            json,
        }
    }

    /// Records a figure.
    pub fn add(&mut self, mode: &str, workload: &str, value: f64, unit: &str) {
        let row = Row {
            mode: mode.to_owned(),
            workload: workload.to_owned(),
            value,
            unit: unit.to_owned(),
        };
        if self.json {
            if let Ok(line) = serde_json::to_string(&row) {
                println!("{line}");
            }
        } else {
            eprintln!(
                "  {:<18} {:<14} {:>12} {}",
                row.mode,
                row.workload,
                format_value(value),
                row.unit
            );
        }
        self.rows.push(row);
    }

    /// The value recorded for `(mode, workload, unit)`.
    pub fn get(&self, mode: &str, workload: &str, unit: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.mode == mode && r.workload == workload && r.unit == unit)
            .map(|r| r.value)
    }

    /// Prints the markdown table (table mode only).
    pub fn finish(&self) {
        if self.json {
            return;
        }
        println!("| mode | workload | value | unit |");
        println!("|---|---|---:|---|");
        for row in &self.rows {
            println!(
                "| {} | {} | {} | {} |",
                row.mode,
                row.workload,
                format_value(row.value),
                row.unit
            );
        }
    }
}

fn format_value(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    percentile(values, 0.5)
}

/// The `p` quantile (0..=1) of `values` (sorted in place), nearest rank.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((values.len() as f64) * p).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
