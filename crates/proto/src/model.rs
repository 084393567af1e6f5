//! The product data-point model and validation of reports and commands against it.
//!
//! A model is a list of typed data points. Reports arrive as a JSON object (`{"power": true}`) or in
//! the compact binary encoding defined here; both are validated into the same [`Values`] form, a map
//! of point name to JSON value (enum values as their string, binary as base64).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Maximum number of data points in one product model.
pub const MAX_POINTS: usize = 255;
/// Maximum length of a string or binary point when the model gives none.
pub const DEFAULT_MAX_LEN: u32 = 1024;
/// Hard cap on `max_len`.
pub const MAX_MAX_LEN: u32 = 65_536;

/// How sensitive a point's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    #[default]
    Public,
    Internal,
    Sensitive,
}

/// A bool point that signals a condition: the operator event stream announces it when a report
/// raises it (`true`) or clears it (`false`) as `device_attr_alert` or `device_attr_fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointClass {
    Alert,
    Fault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointType {
    Bool,
    Enum,
    Int,
    Float,
    String,
    Binary,
}

/// One data point as written in the model JSON. Unused fields for a type must be absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPoint {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PointType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u32>,
    #[serde(default)]
    pub writable: bool,
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// `alert` or `fault` (bool points only); absent for an ordinary point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<PointClass>,
}

/// A validated product model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Model {
    points: Vec<DataPoint>,
}

/// A validated set of point values.
pub type Values = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model: {0}")]
    Model(String),
    #[error("unknown data point `{0}`")]
    UnknownPoint(String),
    #[error("data point `{point}`: {problem}")]
    BadValue { point: String, problem: String },
    #[error("data point `{0}` is not writable")]
    NotWritable(String),
    #[error("payload is not a JSON object or binary report: {0}")]
    Payload(String),
    #[error("a raw payload is at most {0} bytes")]
    RawTooLarge(usize),
}

fn bad(point: &str, problem: impl Into<String>) -> ModelError {
    ModelError::BadValue {
        point: point.to_owned(),
        problem: problem.into(),
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !n.as_bytes()[0].is_ascii_digit()
}

impl Model {
    /// Check a list of points and build a model.
    pub fn new(points: Vec<DataPoint>) -> Result<Model, ModelError> {
        let err = |m: String| Err(ModelError::Model(m));
        if points.len() > MAX_POINTS {
            return err(format!("at most {MAX_POINTS} data points"));
        }
        for (i, p) in points.iter().enumerate() {
            if !valid_name(&p.name) {
                return err(format!(
                    "point name `{}` must be 1-64 of [A-Za-z0-9_], not starting with a digit",
                    p.name
                ));
            }
            if points[..i].iter().any(|q| q.name == p.name) {
                return err(format!("duplicate point `{}`", p.name));
            }
            let numeric = matches!(p.kind, PointType::Int | PointType::Float);
            let sized = matches!(p.kind, PointType::String | PointType::Binary);
            if !numeric && (p.min.is_some() || p.max.is_some() || p.step.is_some()) {
                return err(format!(
                    "`{}`: min/max/step only apply to int and float",
                    p.name
                ));
            }
            if !sized && p.max_len.is_some() {
                return err(format!(
                    "`{}`: max_len only applies to string and binary",
                    p.name
                ));
            }
            if p.kind != PointType::Bool && p.class.is_some() {
                return err(format!(
                    "`{}`: class (alert, fault) only applies to bool",
                    p.name
                ));
            }
            if p.kind != PointType::Enum && p.values.is_some() {
                return err(format!("`{}`: values only apply to enum", p.name));
            }
            match p.kind {
                PointType::Int | PointType::Float => {
                    let (Some(min), Some(max)) = (p.min, p.max) else {
                        return err(format!("`{}`: int and float need min and max", p.name));
                    };
                    if !min.is_finite() || !max.is_finite() || min > max {
                        return err(format!("`{}`: need finite min <= max", p.name));
                    }
                    if let Some(step) = p.step {
                        if !(step.is_finite() && step > 0.0) {
                            return err(format!("`{}`: step must be positive", p.name));
                        }
                    }
                    if p.kind == PointType::Int
                        && [Some(min), Some(max), p.step]
                            .iter()
                            .flatten()
                            .any(|v| v.fract() != 0.0 || v.abs() > 9.0e15)
                    {
                        return err(format!(
                            "`{}`: int bounds and step must be integers",
                            p.name
                        ));
                    }
                }
                PointType::Enum => match &p.values {
                    Some(v) if !v.is_empty() && v.len() <= 255 => {
                        for (j, s) in v.iter().enumerate() {
                            if s.is_empty() || s.len() > 64 || v[..j].contains(s) {
                                return err(format!(
                                    "`{}`: enum values must be distinct, 1-64 bytes",
                                    p.name
                                ));
                            }
                        }
                    }
                    _ => return err(format!("`{}`: enum needs 1-255 values", p.name)),
                },
                PointType::String | PointType::Binary => {
                    if p.max_len.is_some_and(|l| l == 0 || l > MAX_MAX_LEN) {
                        return err(format!("`{}`: max_len must be 1..={MAX_MAX_LEN}", p.name));
                    }
                }
                PointType::Bool => {}
            }
        }
        Ok(Model { points })
    }

    pub fn points(&self) -> &[DataPoint] {
        &self.points
    }

    pub fn point(&self, name: &str) -> Option<&DataPoint> {
        self.points.iter().find(|p| p.name == name)
    }

    /// Validate a report payload (JSON object or binary encoding) into values.
    pub fn parse_report(&self, payload: &[u8]) -> Result<Values, ModelError> {
        match payload.first() {
            Some(&BINARY_VERSION) => self.decode_binary(payload),
            _ => {
                let v: Value = serde_json::from_slice(payload)
                    .map_err(|e| ModelError::Payload(e.to_string()))?;
                let Value::Object(map) = v else {
                    return Err(ModelError::Payload("expected a JSON object".into()));
                };
                self.validate(&map, false)?;
                Ok(map)
            }
        }
    }

    /// Validate a set of values; with `command`, every point must also be writable.
    pub fn validate(&self, values: &Values, command: bool) -> Result<(), ModelError> {
        for (name, v) in values {
            let p = self
                .point(name)
                .ok_or_else(|| ModelError::UnknownPoint(name.clone()))?;
            if command && !p.writable {
                return Err(ModelError::NotWritable(name.clone()));
            }
            check_value(p, v)?;
        }
        Ok(())
    }

    /// Encode values (already valid) in the binary report form.
    pub fn encode_binary(&self, values: &Values) -> Result<Vec<u8>, ModelError> {
        let mut out = vec![BINARY_VERSION];
        for (name, v) in values {
            let (idx, p) = self
                .points
                .iter()
                .enumerate()
                .find(|(_, p)| &p.name == name)
                .ok_or_else(|| ModelError::UnknownPoint(name.clone()))?;
            check_value(p, v)?;
            out.push(idx as u8);
            match (p.kind, v) {
                (PointType::Bool, Value::Bool(b)) => out.push(*b as u8),
                (PointType::Enum, Value::String(s)) => {
                    let values = p.values.as_deref().unwrap_or_default();
                    let i = values.iter().position(|x| x == s).unwrap_or_default();
                    out.push(i as u8);
                }
                (PointType::Int, v) => {
                    let n = v.as_i64().unwrap_or_default();
                    put_varint(&mut out, ((n << 1) ^ (n >> 63)) as u64);
                }
                (PointType::Float, v) => {
                    out.extend_from_slice(&v.as_f64().unwrap_or_default().to_le_bytes())
                }
                (PointType::String, Value::String(s)) => {
                    put_varint(&mut out, s.len() as u64);
                    out.extend_from_slice(s.as_bytes());
                }
                (PointType::Binary, Value::String(s)) => {
                    let b = B64.decode(s).unwrap_or_default();
                    put_varint(&mut out, b.len() as u64);
                    out.extend_from_slice(&b);
                }
                _ => return Err(bad(name, "type mismatch")),
            }
        }
        Ok(out)
    }

    fn decode_binary(&self, payload: &[u8]) -> Result<Values, ModelError> {
        let perr = |m: &str| ModelError::Payload(format!("binary report: {m}"));
        let mut r = &payload[1..];
        let mut out = Values::new();
        while let Some((&idx, rest)) = r.split_first() {
            r = rest;
            let p = self
                .points
                .get(idx as usize)
                .ok_or_else(|| perr("point index out of range"))?;
            let v = match p.kind {
                PointType::Bool => match take(&mut r, 1).ok_or_else(|| perr("truncated"))? {
                    [0] => Value::Bool(false),
                    [1] => Value::Bool(true),
                    _ => return Err(bad(&p.name, "bool must be 0 or 1")),
                },
                PointType::Enum => {
                    let i = take(&mut r, 1).ok_or_else(|| perr("truncated"))?[0];
                    let s = p
                        .values
                        .as_deref()
                        .unwrap_or_default()
                        .get(i as usize)
                        .ok_or_else(|| bad(&p.name, "enum index out of range"))?;
                    Value::String(s.clone())
                }
                PointType::Int => {
                    let z = get_varint(&mut r).ok_or_else(|| perr("bad varint"))?;
                    Value::from(((z >> 1) as i64) ^ -((z & 1) as i64))
                }
                PointType::Float => {
                    let b = take(&mut r, 8).ok_or_else(|| perr("truncated"))?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let f = f64::from_le_bytes(a);
                    Value::from(
                        serde_json::Number::from_f64(f)
                            .ok_or_else(|| bad(&p.name, "not finite"))?,
                    )
                }
                PointType::String | PointType::Binary => {
                    let n = get_varint(&mut r).ok_or_else(|| perr("bad varint"))?;
                    let n = usize::try_from(n).map_err(|_| perr("length"))?;
                    let b = take(&mut r, n).ok_or_else(|| perr("truncated"))?;
                    if p.kind == PointType::String {
                        Value::String(
                            std::str::from_utf8(b)
                                .map_err(|_| bad(&p.name, "invalid UTF-8"))?
                                .to_owned(),
                        )
                    } else {
                        Value::String(B64.encode(b))
                    }
                }
            };
            check_value(p, &v)?;
            if out.insert(p.name.clone(), v).is_some() {
                return Err(bad(&p.name, "appears twice"));
            }
        }
        Ok(out)
    }
}

const BINARY_VERSION: u8 = 0x01;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Some(a)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = take(r, 1)?[0];
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn check_value(p: &DataPoint, v: &Value) -> Result<(), ModelError> {
    let name = &p.name;
    match p.kind {
        PointType::Bool => {
            if !v.is_boolean() {
                return Err(bad(name, "expected a bool"));
            }
        }
        PointType::Enum => {
            let s = v
                .as_str()
                .ok_or_else(|| bad(name, "expected an enum string"))?;
            if !p
                .values
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == s)
            {
                return Err(bad(name, format!("`{s}` is not one of the enum values")));
            }
        }
        PointType::Int => {
            let n = v.as_i64().ok_or_else(|| bad(name, "expected an integer"))?;
            let (min, max) = (p.min.unwrap_or(0.0) as i64, p.max.unwrap_or(0.0) as i64);
            if n < min || n > max {
                return Err(bad(name, format!("{n} is outside {min}..={max}")));
            }
            if let Some(step) = p.step {
                let step = step as i64;
                if step > 1 && (n - min) % step != 0 {
                    return Err(bad(
                        name,
                        format!("{n} is not on a step of {step} from {min}"),
                    ));
                }
            }
        }
        PointType::Float => {
            let f = v.as_f64().ok_or_else(|| bad(name, "expected a number"))?;
            let (min, max) = (p.min.unwrap_or(0.0), p.max.unwrap_or(0.0));
            if !(min..=max).contains(&f) {
                return Err(bad(name, format!("{f} is outside {min}..={max}")));
            }
            if let Some(step) = p.step {
                let k = (f - min) / step;
                if (k - k.round()).abs() > 1e-6 {
                    return Err(bad(
                        name,
                        format!("{f} is not on a step of {step} from {min}"),
                    ));
                }
            }
        }
        PointType::String => {
            let s = v.as_str().ok_or_else(|| bad(name, "expected a string"))?;
            let max = p.max_len.unwrap_or(DEFAULT_MAX_LEN) as usize;
            if s.len() > max {
                return Err(bad(name, format!("longer than {max} bytes")));
            }
        }
        PointType::Binary => {
            let s = v
                .as_str()
                .ok_or_else(|| bad(name, "expected base64 data"))?;
            let b = B64.decode(s).map_err(|_| bad(name, "invalid base64"))?;
            let max = p.max_len.unwrap_or(DEFAULT_MAX_LEN) as usize;
            if b.len() > max {
                return Err(bad(name, format!("longer than {max} bytes")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn model() -> Model {
        let points: Vec<DataPoint> = serde_json::from_value(json!([
            {"name": "power", "type": "bool", "writable": true},
            {"name": "mode", "type": "enum", "values": ["auto", "cool", "heat"], "writable": true},
            {"name": "target", "type": "int", "min": 16, "max": 30, "step": 1, "writable": true},
            {"name": "temp", "type": "float", "min": -40, "max": 85, "step": 0.5},
            {"name": "label", "type": "string", "max_len": 8},
            {"name": "blob", "type": "binary", "max_len": 4}
        ]))
        .unwrap();
        Model::new(points).unwrap()
    }

    #[test]
    fn json_reports() {
        let m = model();
        let ok = m
            .parse_report(br#"{"power":true,"mode":"cool","target":22,"temp":21.5,"label":"hi","blob":"AQID"}"#)
            .unwrap();
        assert_eq!(ok.len(), 6);
        for (payload, want) in [
            (&br#"{"nope":1}"#[..], "unknown data point `nope`"),
            (br#"{"power":1}"#, "expected a bool"),
            (br#"{"mode":"dry"}"#, "not one of"),
            (br#"{"target":31}"#, "outside 16..=30"),
            (br#"{"target":2.5}"#, "expected an integer"),
            (br#"{"temp":21.3}"#, "step of 0.5"),
            (br#"{"label":"123456789"}"#, "longer than 8"),
            (br#"{"blob":"AQIDBAU="}"#, "longer than 4"),
            (br#"[1]"#, "JSON object"),
            (b"\xff", "not a JSON"),
        ] {
            let e = m.parse_report(payload).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }

    #[test]
    fn alert_and_fault_classes_are_for_bool_points() {
        let points: Vec<DataPoint> = serde_json::from_value(json!([
            {"name": "overheat", "type": "bool", "class": "alert"},
            {"name": "motor", "type": "bool", "class": "fault"}
        ]))
        .unwrap();
        let m = Model::new(points).unwrap();
        assert_eq!(m.point("overheat").unwrap().class, Some(PointClass::Alert));
        assert_eq!(m.point("motor").unwrap().class, Some(PointClass::Fault));
        // Written back as given; an ordinary point has no `class` key.
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v[0]["class"], "alert");
        assert!(serde_json::to_value(model()).unwrap()[0]
            .get("class")
            .is_none());
        let points: Vec<DataPoint> = serde_json::from_value(
            json!([{"name": "t", "type": "int", "min": 0, "max": 9, "class": "alert"}]),
        )
        .unwrap();
        let e = Model::new(points).unwrap_err().to_string();
        assert!(
            e.contains("class (alert, fault) only applies to bool"),
            "{e}"
        );
        assert!(serde_json::from_value::<DataPoint>(
            json!({"name": "a", "type": "bool", "class": "warning"})
        )
        .is_err());
    }

    #[test]
    fn commands_need_writable() {
        let m = model();
        let mut v = Values::new();
        v.insert("temp".into(), json!(20.0));
        assert_eq!(
            m.validate(&v, true),
            Err(ModelError::NotWritable("temp".into()))
        );
        assert!(m.validate(&v, false).is_ok());
    }

    #[test]
    fn bad_models() {
        for pts in [
            json!([{"name": "a", "type": "int"}]),
            json!([{"name": "a", "type": "int", "min": 5, "max": 1}]),
            json!([{"name": "a", "type": "enum", "values": []}]),
            json!([{"name": "a", "type": "bool"}, {"name": "a", "type": "bool"}]),
            json!([{"name": "1a", "type": "bool"}]),
            json!([{"name": "a", "type": "bool", "max_len": 3}]),
            json!([{"name": "a", "type": "int", "min": 0.5, "max": 3}]),
        ] {
            let points: Vec<DataPoint> = serde_json::from_value(pts.clone()).unwrap();
            assert!(Model::new(points).is_err(), "{pts}");
        }
        assert!(
            serde_json::from_value::<DataPoint>(json!({"name":"a","type":"bool","x":1})).is_err()
        );
    }

    #[test]
    fn binary_known_bytes() {
        let m = model();
        // power is point 0 (bool 1), target point 2 (zigzag 17 = 34)
        let v = m.parse_report(br#"{"power":true,"target":17}"#).unwrap();
        let b = m.encode_binary(&v).unwrap();
        assert_eq!(b, vec![0x01, 0, 1, 2, 34]);
        assert_eq!(m.parse_report(&b).unwrap(), v);
        assert!(m.parse_report(&[0x01, 9, 0]).is_err());
        assert!(m.parse_report(&[0x01, 0]).is_err());
        assert!(m.parse_report(&[0x01, 0, 1, 0, 1]).is_err());
    }

    proptest! {
        #[test]
        fn binary_round_trip(power: bool, mode in 0usize..3, target in 16i64..=30, t in -80i32..=170,
                             label in "[a-z]{0,8}", blob in proptest::collection::vec(any::<u8>(), 0..=4)) {
            let m = model();
            let mut v = Values::new();
            v.insert("power".into(), json!(power));
            v.insert("mode".into(), json!(["auto", "cool", "heat"][mode]));
            v.insert("target".into(), json!(target));
            v.insert("temp".into(), json!(f64::from(t) / 2.0));
            v.insert("label".into(), json!(label));
            v.insert("blob".into(), json!(B64.encode(&blob)));
            let b = m.encode_binary(&v).unwrap();
            prop_assert_eq!(m.parse_report(&b).unwrap(), v);
        }

        #[test]
        fn binary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = vec![0x01];
            b.extend(bytes);
            let _ = model().parse_report(&b);
        }
    }
}
