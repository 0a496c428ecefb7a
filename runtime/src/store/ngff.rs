//! OME-NGFF group metadata: where a group's `multiscales` is (zarr v3 `zarr.json` or v2
//! `.zattrs`), its axes and each level's coordinate transformations.

use serde_json::Value;

use super::error::OpenError;
use super::location::Location;

/// An [`OpenError::InvalidMetadata`] for the group at `location`.
pub(super) fn invalid(location: &str, message: &str) -> OpenError {
    OpenError::InvalidMetadata {
        location: location.to_string(),
        message: message.to_string(),
    }
}

/// The group's zarr format and `multiscales`: from `zarr.json` (v3, preferred) or `.zattrs`
/// (v2); `expected` 2 looks at `.zattrs` first. `.zgroup` is read only to tell a group without
/// `.zattrs` from no group at all.
pub(super) fn read_multiscales(store: &Location, expected: Option<u8>) -> Result<(u8, Value), OpenError> {
    let location = &store.location;
    // Taken out of the parsed document, not cloned: a group is opened once per crop and class.
    let v2 = |attrs: &mut Option<Value>| attrs.as_mut().and_then(|a| take(a, "/multiscales"));
    let mut zattrs = None;
    if expected == Some(2) {
        let mut attrs = store.get_json(".zattrs")?;
        if let Some(ms) = v2(&mut attrs) {
            return Ok((2, ms));
        }
        zattrs = Some(attrs);
    }
    if let Some(mut meta) = store.get_json("zarr.json")? {
        let ms = take(&mut meta, "/attributes/ome/multiscales").or_else(|| take(&mut meta, "/attributes/multiscales"));
        return match ms {
            Some(ms) => Ok((3, ms)),
            None => Err(OpenError::NoMultiscales {
                location: location.clone(),
            }),
        };
    }
    let mut zattrs = match zattrs {
        Some(attrs) => attrs,
        None => store.get_json(".zattrs")?,
    };
    if let Some(ms) = v2(&mut zattrs) {
        return Ok((2, ms));
    }
    if zattrs.is_none() && store.get_json(".zgroup")?.is_none() {
        // A missing bucket or prefix, where the store can tell; else a folder without metadata.
        store.explain_missing()?;
        return Err(OpenError::NotAGroup {
            location: location.clone(),
        });
    }
    Err(OpenError::NoMultiscales {
        location: location.clone(),
    })
}

/// The value at JSON pointer `pointer` of `doc`, moved out (`null` left behind); `None` when
/// there is none.
fn take(doc: &mut Value, pointer: &str) -> Option<Value> {
    doc.pointer_mut(pointer).map(Value::take)
}

/// Axis names, validated to be `[c] z y x`.
pub(super) fn parse_axes(location: &str, axes: Option<&Value>) -> Result<Vec<String>, OpenError> {
    let Some(list) = axes.and_then(Value::as_array) else {
        // OME-NGFF < 0.4 had no axes; CellMap data is always z y x.
        return Ok(vec!["z".into(), "y".into(), "x".into()]);
    };
    let mut parsed = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let (name, kind) = match a {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(location, &format!("`axes[{i}].name` is missing")))?
                    .to_string(),
                o.get("type").and_then(Value::as_str).map(str::to_string),
            ),
            _ => {
                return Err(invalid(location, &format!("`axes[{i}]` must be a string or an object")));
            }
        };
        parsed.push((name, kind));
    }
    let names: Vec<String> = parsed.iter().map(|(n, _)| n.clone()).collect();
    let is_spatial = |(name, kind): &(String, Option<String>)| match kind.as_deref() {
        Some(k) => k == "space",
        None => matches!(name.as_str(), "z" | "y" | "x"),
    };
    let is_channel =
        |(name, kind): &(String, Option<String>)| kind.as_deref() == Some("channel") || (kind.is_none() && name == "c");
    for (i, ax) in parsed.iter().enumerate() {
        if !(is_spatial(ax) || (i == 0 && is_channel(ax))) {
            return Err(OpenError::NonSpatialAxis {
                location: location.to_string(),
                axis: ax.0.clone(),
                index: i,
            });
        }
    }
    let n = parsed.len();
    let spatial_ok = n >= 3 && names[n - 3..] == ["z", "y", "x"];
    let lead_ok = n == 3 || (n == 4 && is_channel(&parsed[0]));
    if !spatial_ok || !lead_ok {
        return Err(OpenError::UnsupportedAxes {
            location: location.to_string(),
            axes: names,
        });
    }
    Ok(names)
}

/// The level's spatial scale and translation (last three entries).
pub(super) fn parse_transforms(
    location: &str,
    index: usize,
    dataset: &Value,
    n_axes: usize,
) -> Result<([f64; 3], [f64; 3]), OpenError> {
    let transforms = dataset
        .get("coordinateTransformations")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            invalid(
                location,
                &format!("`datasets[{index}].coordinateTransformations` is missing"),
            )
        })?;
    let mut scale = None;
    let mut translation = [0.0; 3];
    for t in transforms {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "scale" && kind != "translation" {
            continue;
        }
        let values: Option<Vec<f64>> = t
            .get(kind)
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_f64).collect());
        let values = values.filter(|v| v.len() == n_axes).ok_or_else(|| {
            invalid(
                location,
                &format!("`datasets[{index}]` {kind} must be a list of {n_axes} numbers"),
            )
        })?;
        let last3 = [values[n_axes - 3], values[n_axes - 2], values[n_axes - 1]];
        if kind == "scale" {
            if last3.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(invalid(
                    location,
                    &format!("`datasets[{index}]` scale {last3:?} must be positive"),
                ));
            }
            scale = Some(last3);
        } else {
            translation = last3;
        }
    }
    let scale = scale.ok_or_else(|| {
        invalid(
            location,
            &format!("`datasets[{index}]` has no `scale` coordinate transformation"),
        )
    })?;
    Ok((scale, translation))
}
