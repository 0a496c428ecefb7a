//! cellmap-data's datasplit CSV: `split,raw_zarr_root,raw_ds_path,gt_zarr_root,gt_ds_path_with_[classes]`
//! (5 columns) or `split,raw_path,gt_path` (3 columns), no header, `#` comments and empty lines skipped.
//! Our extension: 7 columns, the 5 above then `shift,scale`, a dataset's own intensity normalization
//! (`scale` a number or `dtype`; either may be empty, and a row with both empty keeps the spec's
//! `normalize`). With full paths, leave the two root columns empty: `train,,/d/a.zarr/raw,,/d/a.zarr/[mito],0,dtype`.
//!
//! As in cellmap-data, a bracketed class the spec does not list is not loaded: it is dropped from the
//! row's class list with a warning, not an error. Splits are `train`, `validate` and `test` (CellMap's
//! datasplits hold `test` rows; they are read like validation rows).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::spec::{DatasetSpec, Split, TargetTemplate, ValueTransform};

/// Largest datasplit CSV accepted, in bytes.
const MAX_CSV_BYTES: u64 = 16 << 20;

/// What a datasplit needs from its spec.
pub(crate) struct DatasplitContext<'a> {
    /// Folder relative paths resolve against.
    pub(crate) base_dir: &'a Path,
    /// Known classes.
    pub(crate) classes: &'a [String],
    /// `file:line:column` of the spec's `csv:` value.
    pub(crate) origin: String,
}

/// Resolves a data path against the spec's folder; absolute paths and URLs are kept.
pub(crate) fn resolve_path(base_dir: &Path, path: &str) -> String {
    if path.contains("://") || Path::new(path).is_absolute() {
        return path.to_owned();
    }
    let joined = base_dir.join(path);
    std::path::absolute(&joined).unwrap_or(joined).display().to_string()
}

/// Splits a target path into a `{class}` template and its bracket class list, if any.
/// `crop1/[mito,er]` → (`crop1/{class}`, `[mito, er]`); `crop1/{class}` → (`crop1/{class}`, none).
pub(crate) fn bracket_template(path: &str) -> Result<(String, Option<Vec<String>>), String> {
    if let (Some(open), Some(close)) = (path.find('['), path.rfind(']'))
        && open < close
    {
        let inner = &path[open + 1..close];
        let classes: Vec<String> = inner.split(',').map(|s| s.trim().to_owned()).collect();
        if classes.iter().any(String::is_empty) {
            return Err(format!("empty class name in bracket list `[{inner}]`"));
        }
        return Ok((
            format!("{}{{class}}{}", &path[..open], &path[close + 1..]),
            Some(classes),
        ));
    }
    if path.contains("{class}") {
        return Ok((path.to_owned(), None));
    }
    Err(format!("target path `{path}` names no classes"))
}

/// Numbers datasets per split from 0: train, validate, then test, each split in file order.
pub(crate) fn number(mut datasets: Vec<DatasetSpec>) -> Vec<DatasetSpec> {
    datasets.sort_by_key(|d| d.split); // stable: keeps file order within a split
    let mut counts = [0usize; Split::ALL.len()];
    for d in &mut datasets {
        let slot = &mut counts[d.split as usize];
        d.index = *slot;
        *slot += 1;
    }
    datasets
}

fn join(root: &str, path: &str) -> String {
    if root.is_empty() {
        return path.to_owned();
    }
    if path.is_empty() {
        return root.to_owned();
    }
    format!("{}/{}", root.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// Reads and checks a datasplit CSV named `written` in the spec: its datasets and warnings, or its errors.
/// Errors tied to the spec (not to a CSV line) have an empty `file`, for the caller to locate.
pub(crate) fn read(
    written: &str,
    ctx: &DatasplitContext<'_>,
) -> Result<(Vec<DatasetSpec>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let csv_path: PathBuf = if Path::new(written).is_absolute() {
        PathBuf::from(written)
    } else {
        ctx.base_dir.join(written)
    };
    let spec_error = |message: String| Diagnostic::error(PathBuf::new(), (1, 1), "/data/csv", message);
    let text = match read_limited(&csv_path) {
        Ok(t) => t,
        Err(message) => {
            return Err(vec![
                spec_error(format!("cannot read datasplit CSV `{written}`: {message}"))
                    .hint("relative paths resolve against the spec file's folder"),
            ]);
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let line_starts = line_starts(&text);
    let mut errors = Vec::new();
    let mut datasets = Vec::new();
    let named = format!("datasplit named at {}", ctx.origin);
    let csv_error = |line: usize, message: String| Diagnostic::error(&csv_path, (line, 1), "/data/csv", message);
    let mut warnings = Vec::new();
    let mut first = true;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(1, |p| usize::try_from(p.line()).unwrap_or(1));
                errors.push(csv_error(line, format!("malformed CSV: {e}")).hint(named.clone()));
                break;
            }
        };
        let line = record.position().map_or(1, |p| {
            record_line(&text, &line_starts, usize::try_from(p.byte()).unwrap_or(0))
        });
        let is_first = std::mem::replace(&mut first, false);
        let cols: Vec<&str> = record.iter().collect();
        if cols.iter().all(|c| c.is_empty()) {
            continue;
        }
        let row = Row {
            csv_path: &csv_path,
            line,
            named: &named,
        };
        let row_text = line_text(&text, &line_starts, line);
        match row_dataset(&cols, is_first, row_text, ctx, &row, &mut warnings) {
            Ok(d) => datasets.push(d),
            Err(d) => errors.push(*d),
        }
    }
    if errors.is_empty() && datasets.is_empty() {
        errors.push(spec_error(format!("datasplit CSV `{written}` lists no datasets")));
    }
    if errors.is_empty() {
        Ok((number(datasets), warnings))
    } else {
        Err(errors)
    }
}

/// The dataset of one non-empty row (`row_text` is its line, for the column of an error).
fn row_dataset(
    cols: &[&str],
    is_first: bool,
    row_text: &str,
    ctx: &DatasplitContext<'_>,
    row: &Row<'_>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<DatasetSpec, Box<Diagnostic>> {
    let split = row_split(cols, is_first, row)?;
    let (raw, gt, intensity) = match cols {
        [_, raw, gt] => (raw.to_string(), gt.to_string(), None),
        [_, raw_root, raw_ds, gt_root, gt_ds] => (join(raw_root, raw_ds), join(gt_root, gt_ds), None),
        [_, raw_root, raw_ds, gt_root, gt_ds, shift, scale] => {
            (join(raw_root, raw_ds), join(gt_root, gt_ds), Some([*shift, *scale]))
        }
        _ => {
            return Err(Box::new(
                row.error(format!("row has {} columns", cols.len()))
                    .expected("5 columns `split,raw_zarr_root,raw_ds_path,gt_zarr_root,gt_ds_path`, 3 columns `split,raw_path,gt_path`, or 7 columns: the 5 then `shift,scale`")
                    .hint(row.named.to_owned()),
            ));
        }
    };
    let normalize = intensity
        .map(|v| row_normalize(v, row_text, row))
        .transpose()?
        .flatten();
    if raw.is_empty() {
        return Err(Box::new(
            row.error("empty raw path".to_owned()).hint(row.named.to_owned()),
        ));
    }
    let targets = row_targets(&gt, ctx, row, warnings)?;
    Ok(DatasetSpec {
        split,
        index: 0,
        raw: resolve_path(ctx.base_dir, &raw),
        targets,
        origin: format!("{}:{}", row.csv_path.display(), row.line),
        normalize,
    })
}

/// Where a CSV row is, for its diagnostics.
struct Row<'a> {
    csv_path: &'a Path,
    line: usize,
    /// `datasplit named at FILE:LINE:COLUMN`, the hint that leads back to the spec.
    named: &'a str,
}

impl Row<'_> {
    fn error(&self, message: String) -> Diagnostic {
        self.error_at(1, message)
    }

    fn error_at(&self, column: usize, message: String) -> Diagnostic {
        Diagnostic::error(self.csv_path, (self.line, column), "/data/csv", message)
    }
}

/// The dataset normalization of a 7-column row's `shift,scale` (columns 6 and 7; `row_text` is the
/// row's line, for the column of an error): none when both are empty.
fn row_normalize(
    [shift, scale]: [&str; 2],
    row_text: &str,
    row: &Row<'_>,
) -> Result<Option<ValueTransform>, Box<Diagnostic>> {
    if shift.is_empty() && scale.is_empty() {
        return Ok(None);
    }
    let bad = |index: usize, name: &str, given: &str, expected: &str| {
        let column = field_column(row_text, index);
        Box::new(
            row.error_at(
                column,
                format!("column {} (`{name}`) is `{given}`, not {expected}", index + 1),
            )
            .expected(format!("{expected}, or empty to keep the spec's `normalize`"))
            .hint(format!(
                "column 6 is the shift subtracted, column 7 the scale divided by (a number or `dtype`) ({})",
                row.named
            )),
        )
    };
    let number = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite());
    let shift = match shift {
        "" => None,
        v => Some(number(v).ok_or_else(|| bad(5, "shift", v, "a finite number"))?),
    };
    Ok(Some(match scale {
        "dtype" => ValueTransform::NormalizeDtype { shift },
        v => {
            let scale = match v {
                "" => 1.0,
                v => number(v)
                    .filter(|x| *x != 0.0)
                    .ok_or_else(|| bad(6, "scale", v, "a non-zero finite number or `dtype`"))?,
            };
            ValueTransform::Normalize {
                shift: shift.unwrap_or(0.0),
                scale,
            }
        }
    }))
}

/// The column (from 1, in characters) where field `index` (from 0) of a CSV line starts; commas inside
/// double quotes do not separate fields.
fn field_column(line: &str, index: usize) -> usize {
    let (mut field, mut quoted) = (0, false);
    for (column, ch) in line.chars().enumerate() {
        if field == index {
            return column + 1;
        }
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => field += 1,
            _ => {}
        }
    }
    line.chars().count() + 1
}

/// The split in a row's first column; a header row or an unknown name is an error.
fn row_split(cols: &[&str], is_first: bool, row: &Row<'_>) -> Result<Split, Box<Diagnostic>> {
    let given = cols.first().copied().unwrap_or("");
    if let Some(split) = Split::from_name(given) {
        return Ok(split);
    }
    let named = row.named;
    Err(Box::new(
        if is_first && matches!(given.to_ascii_lowercase().as_str(), "split" | "set" | "subset" | "name") {
            row.error("datasplit CSV has a header row".to_owned()).hint(format!(
                "cellmap-data datasplits have no header; delete this line ({named})"
            ))
        } else {
            row.error(format!("unknown split `{given}`"))
                .expected("`train`, `validate` or `test` (also `training`, `val`, `validation`, `testing`)")
                .hint(match did_you_mean(given, ["train", "validate", "test"]) {
                    Some(h) => format!("{h} ({named})"),
                    None => named.to_owned(),
                })
        },
    ))
}

/// The targets of a row's ground-truth column (none when empty); classes the spec does not have
/// are dropped with a warning.
fn row_targets(
    gt: &str,
    ctx: &DatasplitContext<'_>,
    row: &Row<'_>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Option<TargetTemplate>, Box<Diagnostic>> {
    // A raw-only spec (no classes) reads no labels: the label columns are not its business.
    if gt.is_empty() || ctx.classes.is_empty() {
        return Ok(None);
    }
    let named = row.named;
    let parsed = bracket_template(gt).map_err(|message| {
        row.error(message)
            .expected("a `[mito,er]` bracket list or `{class}` in the path")
            .hint(named.to_owned())
    });
    let (template, mut annotated) = parsed.map_err(Box::new)?;
    if let Some(list) = &mut annotated {
        let (known, unknown): (Vec<String>, Vec<String>) = list.drain(..).partition(|c| ctx.classes.contains(c));
        for class in &unknown {
            let hint = match did_you_mean(class, ctx.classes.iter().map(String::as_str)) {
                Some(h) => format!("{h} ({named})"),
                None => format!("add it to `classes` to load it ({named})"),
            };
            warnings.push(
                row.error(format!(
                    "class `{class}` is not among the spec's classes; it is ignored"
                ))
                .warning()
                .expected(format!("one of the spec's classes: {}", ctx.classes.join(", ")))
                .hint(hint),
            );
        }
        if known.is_empty() && !unknown.is_empty() {
            warnings.push(
                row.error("this crop annotates none of the spec's classes; its targets are unknown (NaN)".to_owned())
                    .warning()
                    .hint(named.to_owned()),
            );
        }
        *list = known;
    }
    Ok(Some(TargetTemplate {
        template: resolve_path(ctx.base_dir, &template),
        annotated,
    }))
}

/// The byte offset of each line's start: a row's line and text are looked up, not counted from
/// the top of the file for every row (quadratic in the rows: milliseconds for 300 crops, seconds
/// for tens of thousands).
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The line (from 1) of the record whose read starts at `byte`. The csv crate's own line is where the read
/// started, before the comments and empty lines it skips on the way to the record.
fn record_line(text: &str, starts: &[usize], byte: usize) -> usize {
    let mut start = byte.min(text.len());
    while let Some(rest) = text.get(start..) {
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        if end == 0 || !(line.trim().is_empty() || line.starts_with('#')) {
            break;
        }
        start += end;
    }
    starts.partition_point(|&s| s <= start).max(1)
}

/// Line `line` (from 1) of `text` without its line ending, as [`str::lines`] gives it.
fn line_text<'t>(text: &'t str, starts: &[usize], line: usize) -> &'t str {
    let Some(&start) = starts.get(line.saturating_sub(1)) else {
        return "";
    };
    let end = starts.get(line).map_or(text.len(), |&next| next - 1);
    let row = &text[start..end.max(start)];
    row.strip_suffix('\r').unwrap_or(row)
}

fn read_limited(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_owned(),
        _ => e.to_string(),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CSV_BYTES {
        return Err(format!("over the limit of {MAX_CSV_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets() {
        assert_eq!(
            bracket_template("a.zarr/crop1/[mito, er]").unwrap(),
            (
                "a.zarr/crop1/{class}".to_owned(),
                Some(vec!["mito".to_owned(), "er".to_owned()])
            )
        );
        assert_eq!(bracket_template("x/{class}").unwrap(), ("x/{class}".to_owned(), None));
        assert!(bracket_template("x/mito").is_err());
        assert_eq!(join("/d/a.zarr/", "/recon-1/em"), "/d/a.zarr/recon-1/em");
    }

    #[test]
    fn record_lines_skip_comments_and_empty_lines() {
        let text = "a,b\n# c\n\n  \nd,e\n";
        let starts = line_starts(text);
        assert_eq!(record_line(text, &starts, 0), 1);
        assert_eq!(record_line(text, &starts, 4), 5);
        assert_eq!(record_line(text, &starts, text.len()), 6);
    }

    #[test]
    fn line_texts_are_those_of_str_lines() {
        for text in ["a,b\r\n# c\n\n  \nd,e", "a\n\nb\n", "", "\n", "x"] {
            let starts = line_starts(text);
            let lines: Vec<&str> = text.lines().collect();
            for line in 1..=lines.len() + 2 {
                assert_eq!(
                    line_text(text, &starts, line),
                    lines.get(line - 1).copied().unwrap_or(""),
                    "{text:?} line {line}"
                );
            }
        }
    }

    #[test]
    fn field_columns_skip_quoted_commas() {
        assert_eq!(field_column("a,b,c", 0), 1);
        assert_eq!(field_column("a,\"b,x\",c", 2), 9);
        assert_eq!(field_column("a,b", 5), 4);
    }
}
