//! The product data-point model as the simulator reads it: random valid values, factory
//! defaults, and applying `set` commands to a device's local state.
//!
//! This is deliberately a small private reading of the model file (unknown fields ignored,
//! nothing denied); the authoritative model and its validation live in `rampart-proto`.
//! It never decides what the cloud accepts; it only tries to stay inside the same bounds.

use std::path::Path;

use base64::Engine as _;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;

/// Default `max_len` of string and binary points, as the cloud's model uses.
const DEFAULT_MAX_LEN: u32 = 1024;
/// Generated strings and binaries stay short, whatever `max_len` allows.
const GENERATED_MAX_LEN: usize = 16;
/// Span of a numeric point whose model gives no bounds.
const DEFAULT_SPAN: f64 = 100.0;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Bool,
    Enum,
    Int,
    Float,
    String,
    Binary,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Point {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: Kind,
    #[serde(default)]
    pub(crate) min: Option<f64>,
    #[serde(default)]
    pub(crate) max: Option<f64>,
    #[serde(default)]
    pub(crate) step: Option<f64>,
    #[serde(default)]
    pub(crate) values: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) max_len: Option<u32>,
    #[serde(default)]
    pub(crate) writable: bool,
}

/// The points of one product model.
#[derive(Debug, Clone)]
pub(crate) struct SimModel {
    points: Vec<Point>,
}

impl SimModel {
    /// Parse a model document: `{"datapoints": [..], ..}` or a bare `[..]` of points.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<SimModel, Error> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("model: {e}")))?;
        let list = match doc {
            Value::Object(mut o) => o
                .remove("datapoints")
                .ok_or_else(|| Error::invalid("model: no `datapoints` list"))?,
            v @ Value::Array(_) => v,
            _ => return Err(Error::invalid("model: expected an object or a list")),
        };
        let points: Vec<Point> =
            serde_json::from_value(list).map_err(|e| Error::invalid(format!("model: {e}")))?;
        for (i, p) in points.iter().enumerate() {
            if p.name.is_empty() || points[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::invalid(format!(
                    "model: point names must be non-empty and distinct (`{}`)",
                    p.name
                )));
            }
        }
        Ok(SimModel { points })
    }

    pub(crate) fn load(path: &Path) -> Result<SimModel, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::invalid(format!("model file {}: {e}", path.display())))?;
        SimModel::from_json(&bytes)
    }

    /// The model used when none is given: a switch and a thermometer.
    pub(crate) fn builtin() -> SimModel {
        let doc = br#"{"datapoints": [
            {"name": "power", "type": "bool", "writable": true},
            {"name": "temp", "type": "float", "min": -20, "max": 50, "step": 0.5}
        ]}"#;
        match SimModel::from_json(doc) {
            Ok(m) => m,
            Err(e) => unreachable!("built-in model is valid: {e}"),
        }
    }

    #[cfg(test)]
    pub(crate) fn points(&self) -> &[Point] {
        &self.points
    }

    /// A fresh state: a random valid value for every point that has one.
    pub(crate) fn random_state(&self, rng: &mut impl Rng) -> Map<String, Value> {
        self.points
            .iter()
            .filter_map(|p| Some((p.name.clone(), random_value(p, rng)?)))
            .collect()
    }

    /// New readings for the read-only (sensor) points; writable points keep what was set.
    pub(crate) fn refresh_readings(&self, state: &mut Map<String, Value>, rng: &mut impl Rng) {
        for p in self.points.iter().filter(|p| !p.writable) {
            if let Some(v) = random_value(p, rng) {
                state.insert(p.name.clone(), v);
            }
        }
    }

    /// The state after a factory reset: writable points at their defaults, fresh readings.
    pub(crate) fn reset_state(&self, rng: &mut impl Rng) -> Map<String, Value> {
        self.points
            .iter()
            .filter_map(|p| {
                let v = if p.writable {
                    default_value(p)
                } else {
                    random_value(p, rng)
                };
                Some((p.name.clone(), v?))
            })
            .collect()
    }

    /// Apply a `set` command: all values are checked first, then all applied, or none.
    pub(crate) fn apply_set(
        &self,
        state: &mut Map<String, Value>,
        values: &Map<String, Value>,
    ) -> Result<(), String> {
        for (name, v) in values {
            let p = self
                .points
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| format!("unknown data point `{name}`"))?;
            if !p.writable {
                return Err(format!("data point `{name}` is not writable"));
            }
            check_value(p, v).map_err(|m| format!("data point `{name}`: {m}"))?;
        }
        for (name, v) in values {
            state.insert(name.clone(), v.clone());
        }
        Ok(())
    }
}

/// Bounds of a numeric point, with defaults for a model that gives none.
fn bounds(p: &Point) -> (f64, f64) {
    let lo = p.min.unwrap_or(0.0);
    let hi = p.max.unwrap_or(lo + DEFAULT_SPAN);
    (lo, hi)
}

/// Number of decimals (at most 9) needed to write `x` exactly enough.
fn decimals(x: f64) -> i32 {
    (0..9)
        .find(|&d| {
            let s = x * 10f64.powi(d);
            (s - s.round()).abs() < 1e-6
        })
        .unwrap_or(9)
}

fn round_to(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}

/// A random valid value of `p`; `None` when the point admits none (empty enum, min > max).
pub(crate) fn random_value(p: &Point, rng: &mut impl Rng) -> Option<Value> {
    Some(match p.kind {
        Kind::Bool => Value::Bool(rng.gen()),
        Kind::Enum => {
            let values = p.values.as_deref().unwrap_or_default();
            if values.is_empty() {
                return None;
            }
            Value::String(values[rng.gen_range(0..values.len())].clone())
        }
        Kind::Int => {
            let (lo, hi) = bounds(p);
            let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
            if lo > hi {
                return None;
            }
            let step = p.step.map_or(1, |s| (s.round() as i64).max(1));
            let k = rng.gen_range(0..=(hi - lo) / step);
            Value::from(lo + k * step)
        }
        Kind::Float => {
            let (lo, hi) = bounds(p);
            if !(lo.is_finite() && hi.is_finite()) || lo > hi {
                return None;
            }
            let v = match p.step.filter(|s| s.is_finite() && *s > 0.0) {
                Some(step) => {
                    let n = ((hi - lo) / step + 1e-9).floor().min(u32::MAX as f64) as u64;
                    let k = rng.gen_range(0..=n);
                    round_to(lo + k as f64 * step, decimals(step).max(decimals(lo)))
                }
                None if lo == hi => lo,
                None => round_to(rng.gen_range(lo..=hi), 2),
            };
            Value::from(v.clamp(lo, hi))
        }
        Kind::String => {
            let max = p.max_len.unwrap_or(DEFAULT_MAX_LEN) as usize;
            let len = random_len(max, rng);
            Value::String(
                (0..len)
                    .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
                    .collect(),
            )
        }
        Kind::Binary => {
            let max = p.max_len.unwrap_or(DEFAULT_MAX_LEN) as usize;
            let len = random_len(max, rng);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            Value::String(B64.encode(bytes))
        }
    })
}

fn random_len(max: usize, rng: &mut impl Rng) -> usize {
    match max.min(GENERATED_MAX_LEN) {
        0 => 0,
        m => rng.gen_range(1..=m),
    }
}

/// The factory default of a writable point: false, the first enum value, the minimum, empty.
fn default_value(p: &Point) -> Option<Value> {
    Some(match p.kind {
        Kind::Bool => Value::Bool(false),
        Kind::Enum => Value::String(p.values.as_deref().unwrap_or_default().first()?.clone()),
        Kind::Int => {
            let (lo, hi) = bounds(p);
            if lo.ceil() > hi.floor() {
                return None;
            }
            Value::from(lo.ceil() as i64)
        }
        Kind::Float => {
            let (lo, hi) = bounds(p);
            if lo > hi || !lo.is_finite() {
                return None;
            }
            Value::from(lo)
        }
        Kind::String | Kind::Binary => Value::String(String::new()),
    })
}

/// Whether `v` is a valid value of `p` (bounds and step only where the model gives them).
pub(crate) fn check_value(p: &Point, v: &Value) -> Result<(), String> {
    match p.kind {
        Kind::Bool => {
            v.as_bool().ok_or("expected a bool")?;
        }
        Kind::Enum => {
            let s = v.as_str().ok_or("expected an enum string")?;
            if !p
                .values
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == s)
            {
                return Err(format!("`{s}` is not one of the enum values"));
            }
        }
        Kind::Int => {
            let n = v.as_i64().ok_or("expected an integer")?;
            let f = n as f64;
            if p.min.is_some_and(|m| f < m) || p.max.is_some_and(|m| f > m) {
                return Err(format!("{n} is out of range"));
            }
            if let Some(step) = p.step.map(|s| s as i64).filter(|s| *s > 1) {
                let base = p.min.unwrap_or(0.0) as i64;
                if (n - base) % step != 0 {
                    return Err(format!("{n} is not on a step of {step}"));
                }
            }
        }
        Kind::Float => {
            let f = v.as_f64().ok_or("expected a number")?;
            if p.min.is_some_and(|m| f < m) || p.max.is_some_and(|m| f > m) {
                return Err(format!("{f} is out of range"));
            }
            if let Some(step) = p.step.filter(|s| s.is_finite() && *s > 0.0) {
                let k = (f - p.min.unwrap_or(0.0)) / step;
                if (k - k.round()).abs() > 1e-6 {
                    return Err(format!("{f} is not on a step of {step}"));
                }
            }
        }
        Kind::String => {
            let s = v.as_str().ok_or("expected a string")?;
            if s.len() > p.max_len.unwrap_or(DEFAULT_MAX_LEN) as usize {
                return Err("too long".into());
            }
        }
        Kind::Binary => {
            let s = v.as_str().ok_or("expected base64 data")?;
            let b = B64.decode(s).map_err(|_| "invalid base64")?;
            if b.len() > p.max_len.unwrap_or(DEFAULT_MAX_LEN) as usize {
                return Err("too long".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    const MODEL: &str = r#"{
        "product_key": "pk1",
        "datapoints": [
            {"name": "power", "type": "bool", "writable": true},
            {"name": "mode", "type": "enum", "values": ["auto", "cool", "heat"], "writable": true},
            {"name": "target", "type": "int", "min": 16, "max": 30, "step": 2, "writable": true},
            {"name": "level", "type": "int", "min": -5, "max": 5},
            {"name": "temp", "type": "float", "min": -40, "max": 85, "step": 0.5},
            {"name": "ratio", "type": "float", "min": 0.1, "max": 0.9, "step": 0.1},
            {"name": "humidity", "type": "float", "min": 0, "max": 1},
            {"name": "label", "type": "string", "max_len": 3, "sensitivity": "internal"},
            {"name": "blob", "type": "binary", "max_len": 4},
            {"name": "note", "type": "string"}
        ]
    }"#;

    fn model() -> SimModel {
        SimModel::from_json(MODEL.as_bytes()).unwrap()
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn reads_wrapped_and_bare_models() {
        assert_eq!(model().points().len(), 10);
        let bare = SimModel::from_json(br#"[{"name":"x","type":"bool","unknown":1}]"#).unwrap();
        assert_eq!(bare.points()[0].kind, Kind::Bool);
        assert!(SimModel::from_json(br#"{"points":[]}"#).is_err());
        assert!(SimModel::from_json(br#"[{"name":"x","type":"colour"}]"#).is_err());
        assert!(
            SimModel::from_json(br#"[{"name":"x","type":"bool"},{"name":"x","type":"int"}]"#)
                .is_err()
        );
        assert!(SimModel::from_json(b"42").is_err());
        assert_eq!(SimModel::builtin().points().len(), 2);
    }

    #[test]
    fn generated_values_respect_the_model() {
        let m = model();
        let mut r = rng();
        let mut seen_targets = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let state = m.random_state(&mut r);
            assert_eq!(state.len(), 10);
            for p in m.points() {
                let v = &state[&p.name];
                check_value(p, v).unwrap_or_else(|e| panic!("{}: {v}: {e}", p.name));
            }
            let t = state["target"].as_i64().unwrap();
            assert!((16..=30).contains(&t) && t % 2 == 0, "{t}");
            seen_targets.insert(t);
            let temp = state["temp"].as_f64().unwrap();
            assert!((-40.0..=85.0).contains(&temp) && (temp * 2.0).fract() == 0.0);
            let ratio = state["ratio"].as_f64().unwrap();
            assert!((0.1..=0.9).contains(&ratio));
            // Rounded to the step's decimals: no 0.30000000000000004.
            assert!(ratio.to_string().len() <= 3, "{ratio}");
            assert!(["auto", "cool", "heat"].contains(&state["mode"].as_str().unwrap()));
            assert!(state["label"].as_str().unwrap().len() <= 3);
            let blob = B64.decode(state["blob"].as_str().unwrap()).unwrap();
            assert!(blob.len() <= 4);
            assert!(state["note"].as_str().unwrap().len() <= GENERATED_MAX_LEN);
        }
        // Every step of 16..=30 is reachable.
        assert_eq!(seen_targets.len(), 8);
    }

    #[test]
    fn generated_values_pass_the_cloud_validator() {
        let points: Vec<rampart_proto::model::DataPoint> = serde_json::from_value(json!([
            {"name": "power", "type": "bool", "writable": true},
            {"name": "mode", "type": "enum", "values": ["auto", "cool"], "writable": true},
            {"name": "target", "type": "int", "min": 16, "max": 30, "step": 2},
            {"name": "temp", "type": "float", "min": -40, "max": 85, "step": 0.1},
            {"name": "hum", "type": "float", "min": 0, "max": 1},
            {"name": "label", "type": "string", "max_len": 3},
            {"name": "blob", "type": "binary", "max_len": 4}
        ]))
        .unwrap();
        let doc = serde_json::to_vec(&json!({ "datapoints": points })).unwrap();
        let cloud = rampart_proto::model::Model::new(points).unwrap();
        let sim = SimModel::from_json(&doc).unwrap();
        let mut r = rng();
        for _ in 0..1000 {
            let state = sim.random_state(&mut r);
            cloud.validate(&state, false).unwrap();
        }
    }

    #[test]
    fn degenerate_points() {
        let m = SimModel::from_json(
            br#"[{"name":"e","type":"enum","values":[]},
                {"name":"i","type":"int","min":3,"max":2},
                {"name":"one","type":"int","min":4,"max":4,"step":10},
                {"name":"f","type":"float","min":1.5,"max":1.5},
                {"name":"s","type":"string","max_len":0},
                {"name":"free","type":"int"}]"#,
        )
        .unwrap();
        let mut r = rng();
        let s = m.random_state(&mut r);
        assert!(!s.contains_key("e") && !s.contains_key("i"));
        assert_eq!(s["one"], json!(4));
        assert_eq!(s["f"], json!(1.5));
        assert_eq!(s["s"], json!(""));
        assert!((0..=100).contains(&s["free"].as_i64().unwrap()));
    }

    #[test]
    fn set_and_reset() {
        let m = model();
        let mut r = rng();
        let mut state = m.random_state(&mut r);
        let set = |v: Value| v.as_object().unwrap().clone();

        m.apply_set(
            &mut state,
            &set(json!({"power": false, "mode": "heat", "target": 20})),
        )
        .unwrap();
        assert_eq!(state["power"], json!(false));
        assert_eq!(state["mode"], json!("heat"));
        assert_eq!(state["target"], json!(20));

        // All or nothing.
        let before = state.clone();
        for bad in [
            json!({"power": true, "nope": 1}),
            json!({"power": true, "temp": 20.0}),
            json!({"power": 1}),
            json!({"mode": "dry"}),
            json!({"target": 21}),
            json!({"target": 40}),
            json!({"target": 20.5}),
        ] {
            assert!(m.apply_set(&mut state, &set(bad.clone())).is_err(), "{bad}");
            assert_eq!(state, before);
        }

        m.refresh_readings(&mut state, &mut r);
        assert_eq!(state["mode"], json!("heat"));

        let reset = m.reset_state(&mut r);
        assert_eq!(reset["power"], json!(false));
        assert_eq!(reset["mode"], json!("auto"));
        assert_eq!(reset["target"], json!(16));
        assert_eq!(reset.len(), 10);
    }
}
